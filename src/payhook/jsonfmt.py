"""JSON as payhook writes it: amounts exact and in plain notation, times in UTC with `Z`.

Every JSON answer is its declared response model written by `json_response`, so the OpenAPI
document and the bytes cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
import simplejson
from pydantic import BaseModel
from starlette.responses import Response

from payhook.timefmt import isoformat_z


def plain_decimal(value: Decimal) -> str:
    """The number as a person writes it: 0.000000000000000001, not 1E-18; 150.50 stays 150.50."""
    return format(value, "f")


def dumps(value: Any) -> str:
    """JSON text in which a Decimal is the exact number it holds, and a datetime is `...Z`."""
    return _ENCODER.encode(value)


def dumps_bytes(value: Any) -> bytes:
    """The JSON `dumps` writes, by orjson, compact: for the hot paths (a forwarded body)."""
    return orjson.dumps(value, default=_orjson_default, option=orjson.OPT_PASSTHROUGH_DATETIME)


def json_response(
    content: BaseModel | Sequence[BaseModel],
    status_code: int = 200,
    *,
    media_type: str = "application/json",
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The model (or list of models) as a JSON response."""
    if isinstance(content, BaseModel):
        plain: Any = content.model_dump()
    else:
        plain = [item.model_dump() for item in content]
    return Response(dumps(plain), status_code=status_code, media_type=media_type, headers=headers)


class WrittenBody(Response):
    """A body written already (JSON, or Adyen's `[accepted]`), with only its Content-Length
    and Content-Type.

    The webhook endpoints answer with one under load: starlette's `Response` reads its
    arguments back through `init_headers` on every answer, here the two headers are built
    directly (the same bytes, in the same order).
    """

    def __init__(self, body: bytes, status_code: int, media_type: str = "application/json") -> None:
        self.status_code = status_code
        self.body = body
        self.media_type = media_type
        self.background = None
        self.raw_headers = [
            (b"content-length", b"%d" % len(body)),
            (b"content-type", media_type.encode("latin-1")),
        ]


def _writing_exactly(raw: Callable[[str], object]) -> Callable[[object], Any]:
    """An encoder's `default` by payhook's rules: `raw` marks text the encoder writes as is."""

    def default(value: object) -> Any:
        if isinstance(value, Decimal):
            return raw(plain_decimal(value))
        if isinstance(value, datetime):
            return isoformat_z(value)
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")

    return default


_default = _writing_exactly(simplejson.RawJSON)
_orjson_default = _writing_exactly(orjson.Fragment)


# Built once: `simplejson.dumps` with options builds a new encoder on every call.
# use_decimal off: simplejson would write str(Decimal), which is 1E-18 for tiny amounts.
_ENCODER = simplejson.JSONEncoder(use_decimal=False, default=_default)
