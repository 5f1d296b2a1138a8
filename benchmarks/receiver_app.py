"""The team's service for `make bench`: answers every forwarded delivery 200 after 5 ms.

A plain ASGI app (no framework), so that on a shared machine the receiver costs payhook as
little CPU as a remote service would. It reads the body and checks that the delivery is signed;
payhook's tests verify the signatures themselves (tests/support/receiver.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

ANSWER_SECONDS = 0.005
REQUIRED = (b"webhook-id", b"webhook-timestamp", b"webhook-signature")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    names = {name for name, _ in scope["headers"]}
    status = 200 if all(name in names for name in REQUIRED) else 400
    await asyncio.sleep(ANSWER_SECONDS)
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b""})
