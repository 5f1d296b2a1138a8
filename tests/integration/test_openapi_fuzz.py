"""Schemathesis against the app's own OpenAPI document, in process, with every check enabled.

Any 5xx, any status, content type or body the document does not describe, and any schema-valid
request the app refuses (or invalid one it accepts) fails the test. Every documented operation
is fuzzed, the operator API included (with its Bearer token).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st
from schemathesis import Case
from schemathesis.generation.modes import GenerationMode

from payhook.app import create_app
from payhook.config import Settings
from payhook.operators.schemas import CURSOR_FORMAT
from payhook.operators.service import encode_cursor
from payhook.providers.registry import PROVIDERS
from tests.support.operator_app import (
    ADMIN,
    add_failed_attempt,
    app_client,
    make_failed,
    operator_settings,
    post,
)

POSITIVE, NEGATIVE = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
WEBHOOK = ("POST", "/v1/webhooks/transactions")
LIST = ("GET", "/v1/transactions")
BULK_RETRY = ("POST", "/v1/transactions/retry")
OPERATIONS = [
    ("GET", "/"),
    ("GET", "/health/ready"),
    WEBHOOK,
    ("GET", "/v1/transactions/{transaction_id}"),
    LIST,
    ("GET", "/v1/transactions/{transaction_id}/timeline"),
    ("POST", "/v1/transactions/{transaction_id}/retry"),
    BULK_RETRY,
    ("GET", "/metrics"),
    # Provider endpoints: Stripe's is configured (random bodies are unsigned: 401), the
    # others are not (404). A signed random body is a 200: test_stripe_ingest.py.
    *(("POST", f"/v1/webhooks/{name}") for name in sorted(PROVIDERS)),
]
# Negative data needs a constraint to break: the webhook body, the list's query filters, the
# bulk replay body, and the transaction ids in the operator paths (length, no control
# characters) have them. The contract's GET takes any id: one that cannot be stored is a 404.
READ = ("GET", "/v1/transactions/{transaction_id}")
CONSTRAINED = [
    op for op in OPERATIONS if op in (WEBHOOK, LIST, BULK_RETRY) or ("{" in op[1] and op != READ)
]
RUNS = [(*operation, POSITIVE) for operation in OPERATIONS] + [
    (*operation, NEGATIVE) for operation in CONSTRAINED
]
EXAMPLES = 50
# Stored before fuzzing, so operations on one transaction also answer 200 (and 409), with
# deliveries, attempts and conflicts in their timelines, not only 404 for random ids.
SEEDED = ["fuzz-failed", "fuzz-processing", "fuzz-conflict", "fuzz/with slash"]

# The document says a cursor is an opaque `payhook-cursor` (a next_cursor), not any string: teach
# schemathesis the format, so positive data is every cursor the service could have issued
# (any instant, any offset, any transaction id). Strings that are not cursors get a 400.
_ids = st.text(st.characters(exclude_categories=["Cc", "Cs"]), min_size=1, max_size=255)
_offsets = st.builds(
    timezone, st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timedelta(minutes=m))
)
# A stored time: within years 1..9999 in UTC (a day off each end, for the offsets).
_instants = st.builds(
    lambda at, offset: at.replace(tzinfo=UTC).astimezone(offset),
    st.datetimes(datetime(1, 1, 2), datetime(9999, 12, 30)),
    _offsets,
)
schemathesis.openapi.format(CURSOR_FORMAT, st.builds(encode_cursor, st.tuples(_instants, _ids)))


@pytest.fixture
def app(database_url: str) -> FastAPI:
    settings = operator_settings(database_url, stripe_webhook_secret="whsec_fuzz")
    asyncio.run(_seed(settings))  # app_client migrates the database first
    return create_app(settings, run_executor=False)


async def _seed(settings: Settings) -> None:
    async with app_client(settings) as client:
        for transaction_id in SEEDED:
            assert (await post(client, transaction_id)).status_code == 202
        assert (await post(client, "fuzz-conflict", amount="9")).status_code == 409
    await make_failed(settings, "fuzz-failed")
    await add_failed_attempt(settings, "fuzz-failed", "gateway timeout")


def _seeded_ids(strategy: st.SearchStrategy[Case[Any]]) -> st.SearchStrategy[Case[Any]]:
    """Half the cases name a stored transaction instead of a random id."""

    def pin(case: Case[Any], transaction_id: str) -> Case[Any]:
        case.path_parameters = {**(case.path_parameters or {}), "transaction_id": transaction_id}
        return case

    return st.one_of(strategy, st.builds(pin, strategy, st.sampled_from(SEEDED)))


def test_every_operation_is_fuzzed(app: FastAPI) -> None:
    spec = app.openapi()
    documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    missing = documented - set(OPERATIONS)
    assert not missing, f"documented but not fuzzed: {sorted(missing)}"
    assert set(OPERATIONS) <= documented, "fuzzed but not documented"


def test_console_is_not_documented(app: FastAPI) -> None:
    assert not [path for path in app.openapi()["paths"] if path.startswith("/console")]


@pytest.mark.parametrize(("method", "path", "mode"), RUNS)
def test_operation_keeps_to_its_documentation(
    app: FastAPI, method: str, path: str, mode: GenerationMode
) -> None:
    # schemathesis runs the app's lifespan itself and ends it when the test tears down.
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operation = schema[path][method]
    strategy = operation.as_strategy(generation_mode=mode)
    if "{transaction_id}" in path and mode is POSITIVE:
        strategy = _seeded_ids(strategy)

    @given(case=strategy)
    @settings(max_examples=EXAMPLES, deadline=None, database=None)
    def call(case: Case[Any]) -> None:
        case.call_and_validate(headers=ADMIN)

    call()
