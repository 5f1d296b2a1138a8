"""isoformat_z: one form for every aware datetime, whichever zone it carries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from payhook.timefmt import isoformat_z

MOMENTS = [
    datetime(2024, 1, 15, 10, 30, 0, tzinfo=UTC),
    datetime(2024, 1, 15, 10, 30, 0, 250, tzinfo=UTC),
    datetime(2024, 1, 15, 16, 0, 0, 250, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    datetime(2024, 1, 15, 10, 30, 0, tzinfo=timezone.utc),  # noqa: UP017 (the same object as UTC)
    datetime(2024, 1, 15, 10, 30, 0, tzinfo=timezone(timedelta(0))),  # UTC, another object
]


# Each moment of MOMENTS as written with timespec "microseconds" and "seconds", worked out by
# hand (10:30 UTC is 16:00 at +05:30), not by the expression the code itself uses.
WRITTEN = [
    ("2024-01-15T10:30:00.000000Z", "2024-01-15T10:30:00Z"),
    ("2024-01-15T10:30:00.000250Z", "2024-01-15T10:30:00Z"),
    ("2024-01-15T10:30:00.000250Z", "2024-01-15T10:30:00Z"),
    ("2024-01-15T10:30:00.000000Z", "2024-01-15T10:30:00Z"),
    ("2024-01-15T10:30:00.000000Z", "2024-01-15T10:30:00Z"),
]


@pytest.mark.parametrize(("moment", "written"), list(zip(MOMENTS, WRITTEN, strict=True)))
def test_every_zone_is_written_as_utc_with_z(moment: datetime, written: tuple[str, str]) -> None:
    """UTC itself, another UTC object or +05:30: the instant is written in UTC with a Z, to the
    precision asked."""
    assert (isoformat_z(moment, "microseconds"), isoformat_z(moment, "seconds")) == written


def test_the_forms() -> None:
    assert isoformat_z(MOMENTS[1]) == "2024-01-15T10:30:00.000250Z"
    assert isoformat_z(MOMENTS[2]) == "2024-01-15T10:30:00.000250Z"
    assert isoformat_z(MOMENTS[0], "seconds") == "2024-01-15T10:30:00Z"
