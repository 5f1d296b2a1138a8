"""The harness itself: the services it starts answer, and a missing one is never silent in CI."""

from __future__ import annotations

from tests.support.services import PostgresServer


def test_postgres_answers(postgres: PostgresServer) -> None:
    assert postgres.psql("SELECT 1") == "1"
    # As a number: compared as text, "90600" (9.6) would pass as >= "150000".
    assert int(postgres.psql("SHOW server_version_num")) >= 150000
