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


@pytest.mark.parametrize("moment", MOMENTS)
@pytest.mark.parametrize("timespec", ["microseconds", "seconds"])
def test_every_zone_is_written_as_utc_with_z(moment: datetime, timespec: str) -> None:
    expected = moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec=timespec) + "Z"
    assert isoformat_z(moment, timespec) == expected


def test_the_forms() -> None:
    assert isoformat_z(MOMENTS[1]) == "2024-01-15T10:30:00.000250Z"
    assert isoformat_z(MOMENTS[2]) == "2024-01-15T10:30:00.000250Z"
    assert isoformat_z(MOMENTS[0], "seconds") == "2024-01-15T10:30:00Z"
