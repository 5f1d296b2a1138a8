"""UTC timestamps as ISO 8601 with a `Z` suffix, the form every payhook response uses."""

from __future__ import annotations

from datetime import UTC, datetime


def isoformat_z(moment: datetime, timespec: str = "microseconds") -> str:
    """`2024-01-15T10:30:00.000000Z` for an aware datetime, in UTC."""
    if moment.tzinfo is UTC:  # most are: one call, not three (a forwarded body writes three)
        return moment.isoformat(timespec=timespec)[:-6] + "Z"
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec=timespec) + "Z"
