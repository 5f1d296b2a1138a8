"""JSON as payhook writes it: amounts exact and in plain notation, times in UTC with `Z`."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import simplejson

from payhook.timefmt import isoformat_z


def plain_decimal(value: Decimal) -> str:
    """The number as a person writes it: 0.000000000000000001, not 1E-18; 150.50 stays 150.50."""
    return format(value, "f")


def dumps(value: Any) -> str:
    """JSON text in which a Decimal is the exact number it holds, and a datetime is `...Z`."""
    # use_decimal off: simplejson would write str(Decimal), which is 1E-18 for tiny amounts.
    return simplejson.dumps(value, use_decimal=False, default=_default)


def _default(value: object) -> Any:
    if isinstance(value, Decimal):
        return simplejson.RawJSON(plain_decimal(value))
    if isinstance(value, datetime):
        return isoformat_z(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
