"""What every payment-provider module offers; the HTTP endpoint and the ingest are shared.

A provider is a stateless object named after its endpoint, `POST /v1/webhooks/<name>`:

- `configured(settings)`: whether its secret is set; the endpoint answers 404 while it is not.
- `verifier(settings)`: built once at start-up; `await verify(headers, raw)` raises
  `payhook.errors.SignatureInvalid` before any byte is parsed (constant-time, fail closed).
  Asynchronous, so a provider whose check needs a call (PayPal's certificate) fits too.
- `parse(headers, raw)`: the verified body as `ProviderEvent`s (a batch yields one per item). A
  body that is not JSON raises `payhook.errors.InvalidRequest`; anything else that is verified
  (an unknown type, an unexpected shape) is an event recorded `ignored` with a reason, never a
  4xx: the provider would retry it for days and then disable the endpoint.
- `acknowledge(receipts)`: the 2xx answer once every event is committed (Adyen wants
  `[accepted]`).
- `sample_requests(settings, payments, rng)`: signed requests playing the provider, for
  `payhook send --provider`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import orjson

from payhook.config import Settings
from payhook.providers.model import EventReceipt, ProviderEvent

Headers = Mapping[str, str]
"""Request headers; lookups use lower-case names (Starlette's `Headers` ignores case anyway)."""


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """The 2xx a provider receives once its events are committed."""

    status_code: int
    body: bytes
    media_type: str


@dataclass(frozen=True, slots=True)
class SampleRequest:
    """One request as the provider would send it: headers (signature included) and body."""

    headers: dict[str, str]
    body: bytes


class ProviderVerifier(Protocol):
    """Checks that a request comes from the provider."""

    async def verify(self, headers: Headers, raw: bytes) -> None: ...


class Provider(Protocol):
    """One payment provider's webhooks; see the module docstring."""

    @property
    def name(self) -> str: ...

    def configured(self, settings: Settings) -> bool: ...

    def verifier(self, settings: Settings) -> ProviderVerifier: ...

    def parse(self, headers: Headers, raw: bytes) -> list[ProviderEvent]: ...

    def acknowledge(self, receipts: Sequence[EventReceipt]) -> Acknowledgement: ...

    def sample_requests(
        self, settings: Settings, payments: int, rng: random.Random
    ) -> list[SampleRequest]: ...


@dataclass(frozen=True, slots=True)
class ProviderEndpoint:
    """A configured provider with its verifier, built once at start-up."""

    provider: Provider
    verifier: ProviderVerifier


def webhook_path(provider: Provider) -> str:
    """Where `provider` posts its webhooks."""
    return f"/v1/webhooks/{provider.name}"


def receipts_acknowledgement(receipts: Sequence[EventReceipt]) -> Acknowledgement:
    """A JSON 200 naming each received event's id, payment and verdict."""
    events = [
        {"id": r.event_id, "transaction_id": r.transaction_id, "verdict": r.verdict.value}
        for r in receipts
    ]
    body = orjson.dumps({"received": True, "events": events})
    return Acknowledgement(200, body, "application/json")
