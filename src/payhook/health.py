"""Health: `GET /` says the process is up; `GET /health/ready` that its storage answers."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Response
from simplejson import dumps
from sqlalchemy import text

from payhook.errors import ServiceUnavailable
from payhook.runtime import RuntimeDep
from payhook.timefmt import isoformat_z
from payhook.transactions.schemas import Health
from payhook.webhooks.ingest import STORAGE_ERRORS

router = APIRouter(tags=["health"])


@router.get("/", summary="Health check", response_model=Health)
async def health() -> Response:
    """Always 200 while the process serves requests."""
    body = {"status": "HEALTHY", "current_time": isoformat_z(datetime.now(UTC), "seconds")}
    return Response(dumps(body), media_type="application/json")


@router.get(
    "/health/ready",
    summary="Readiness: storage answers",
    responses={503: {"description": "The database does not answer."}},
)
async def ready(runtime: RuntimeDep) -> dict[str, str]:
    """200 when the database answers a query, 503 otherwise."""
    try:
        async with runtime.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except STORAGE_ERRORS as exc:
        raise ServiceUnavailable("The database does not answer.") from exc
    return {"status": "READY", "database": "ok"}
