from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import click
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from payhook.cli import _age
from payhook.observability.metrics import DatabaseSnapshot, Metrics
from payhook.operators.schemas import CURSOR_PATTERN, MAX_CURSOR_LENGTH
from payhook.operators.service import decode_cursor, encode_cursor
from payhook.transactions.models import DeliveryOutcome
from payhook.transactions.records import ClaimedTransaction, Outcome


@pytest.mark.parametrize(
    "at",
    [
        datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),  # before 1970: a signed count
        datetime(1, 1, 1, tzinfo=UTC),
    ],
)
def test_cursors_round_trip(at: datetime) -> None:
    position = (at, "txn/é 1")
    assert decode_cursor(encode_cursor(position)) == position


@given(st.from_regex(CURSOR_PATTERN, fullmatch=True))
def test_every_string_of_the_documented_shape_is_a_position(cursor: str) -> None:
    """Any such string decodes to a storable position (aware instant, no NUL in the key),
    and that position's own cursor is of the documented shape and stands for it again."""
    at, key = decode_cursor(cursor)
    assert at.tzinfo is not None
    assert "\x00" not in key
    again = encode_cursor((at, key))
    assert re.fullmatch(CURSOR_PATTERN, again)
    assert decode_cursor(again) == (at, key)


@pytest.mark.parametrize("key", ["\U0001f600" * 255, '"' * 255, "\\" * 255, "é" * 255])
def test_the_longest_ids_make_cursors_the_api_accepts(key: str) -> None:
    position = (datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=-9))), key)
    cursor = encode_cursor(position)
    assert len(cursor) <= MAX_CURSOR_LENGTH
    assert re.fullmatch(CURSOR_PATTERN, cursor)
    assert decode_cursor(cursor) == position


@pytest.mark.parametrize(
    ("given", "expected"), [("90d", timedelta(days=90)), ("36h", timedelta(hours=36))]
)
def test_retention_ages(given: str, expected: timedelta) -> None:
    assert _age(click.Context(click.Command("x")), click.Option(["--x"]), given) == expected


@pytest.mark.parametrize("bad", ["90", "d", "-1d", "1w", "1.5d"])
def test_bad_retention_ages_are_refused(bad: str) -> None:
    with pytest.raises(click.BadParameter):
        _age(click.Context(click.Command("x")), click.Option(["--x"]), bad)


def claimed(due_at: datetime) -> ClaimedTransaction:
    return ClaimedTransaction("t", "a", "b", Decimal(1), "INR", due_at, due_at, 1, "token", due_at)


def test_metrics_count_outcomes_and_lateness() -> None:
    """The exposition counts each outcome and the success's lateness, and the console's recent
    activity holds the one delivery and that lateness."""
    metrics = Metrics()
    due = datetime.now(UTC)
    metrics.delivery(DeliveryOutcome.ACCEPTED)
    metrics.rejected(422)
    metrics.attempt(Outcome(claimed(due), due + timedelta(seconds=3)))
    metrics.attempt(Outcome(claimed(due), due, error="boom"))
    text = metrics.render(DatabaseSnapshot({"FAILED": 2}, 1, 4.5, {})).decode()
    values = {
        (s.name, tuple(s.labels.values())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert values[("payhook_deliveries_total", ("accepted",))] == 1
    assert values[("payhook_deliveries_total", ("conflict",))] == 0
    assert values[("payhook_deliveries_rejected_total", ("422",))] == 1
    assert values[("payhook_lateness_seconds_sum", ())] == 3
    assert values[("payhook_transactions_failed_total", ())] == 1
    assert values[("payhook_transactions", ("FAILED",))] == 2
    assert values[("payhook_oldest_due_age_seconds", ())] == 4.5
    recent = metrics.recent.snapshot()
    # The one delivery is counted once, in this second or (if the clock ticked) the one before.
    assert sum(recent["ingest_per_second"][-2:]) == 1 == sum(recent["ingest_per_second"])
    assert recent["lateness_seconds"] == [3]
