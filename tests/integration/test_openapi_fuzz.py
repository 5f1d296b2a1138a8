"""Schemathesis against the app's own OpenAPI document, in process, with every check enabled.

Any 5xx, any status, content type or body the document does not describe, and any schema-valid
request the app refuses (or invalid one it accepts) fails the test.
"""

from __future__ import annotations

import asyncio

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import given, settings
from schemathesis import Case
from schemathesis.generation.modes import GenerationMode

import payhook.schema
from payhook.app import create_app
from payhook.config import Settings

POSITIVE, NEGATIVE = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
WEBHOOK = ("POST", "/v1/webhooks/transactions")
OPERATIONS = [("GET", "/"), ("GET", "/health/ready"), WEBHOOK, ("GET", "/v1/transactions/{id}")]
# Negative data needs a constraint to break: only the webhook body has one. Every other
# operation takes at most a free-form string, so schemathesis cannot generate invalid input.
RUNS = [(*operation, POSITIVE) for operation in OPERATIONS] + [(*WEBHOOK, NEGATIVE)]
EXAMPLES = 60


@pytest.fixture
def app(database_url: str) -> FastAPI:
    settings = Settings(_env_file=None, database_url=database_url, processing_delay_seconds=3600)
    asyncio.run(payhook.schema.upgrade(settings))
    return create_app(settings, run_executor=False)


def test_every_operation_is_fuzzed(app: FastAPI) -> None:
    spec = app.openapi()
    documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert {(m, p.replace("{id}", "{transaction_id}")) for m, p in OPERATIONS} <= documented


@pytest.mark.parametrize(("method", "path", "mode"), RUNS)
def test_operation_keeps_to_its_documentation(
    app: FastAPI, method: str, path: str, mode: GenerationMode
) -> None:
    # schemathesis runs the app's lifespan itself and ends it when the test tears down.
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operation = schema[path.replace("{id}", "{transaction_id}")][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None)
    def call(case: Case) -> None:
        case.call_and_validate()

    call()
