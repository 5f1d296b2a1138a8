"""Health: `GET /` says the process is up; `GET /health/ready` that its dependencies answer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from fastapi import APIRouter, Response
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import text

from payhook.db import STORAGE_ERRORS
from payhook.errors import ServiceUnavailable
from payhook.jsonfmt import json_response
from payhook.runtime import RuntimeDep
from payhook.transactions.schemas import Health, problem_response

router = APIRouter(tags=["health"])


@router.get("/", summary="Health check", response_model=Health)
async def health() -> Response:
    """Always 200 while the process serves requests."""
    return json_response(Health(status="HEALTHY", current_time=datetime.now(UTC)))


@router.get(
    "/health/ready",
    summary="Readiness: the database (and Redis, when configured) answer",
    responses={503: problem_response("The database or Redis does not answer.")},
)
async def ready(runtime: RuntimeDep) -> dict[str, str]:
    """200 when every dependency answers, 503 naming the one that does not."""
    try:
        async with asyncio.timeout(runtime.settings.database_timeout_seconds):
            async with runtime.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except STORAGE_ERRORS as exc:
        raise ServiceUnavailable("The database does not answer.") from exc
    checks = {"status": "READY", "database": "ok"}
    if runtime.settings.redis_url:
        await _ping_redis(runtime.settings.redis_url)
        checks["redis"] = "ok"
    return checks


async def _ping_redis(url: str) -> None:
    client = Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        raise ServiceUnavailable("Redis does not answer.") from exc
    finally:
        await client.aclose()
