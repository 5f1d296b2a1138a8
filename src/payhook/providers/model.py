"""What a payment provider's webhook says, as plain values: no I/O, no provider specifics.

A provider module turns one verified request into `ProviderEvent`s; each carries an
`Observation` of its payment (or none: a type payhook does not use). `payhook.providers.state`
folds every observation of one payment into its `PaymentSnapshot`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

import orjson


class PaymentState(StrEnum):
    """Where a provider's payment stands; see `payhook.providers.state` for the precedence."""

    PENDING = "pending"
    AUTHORIZED = "authorized"
    CAPTURED = "captured"
    FAILED = "failed"
    CANCELED = "canceled"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


class EventVerdict(StrEnum):
    """What receiving one provider event did; every verdict is answered 2xx."""

    APPLIED = "applied"  # changed the payment's snapshot
    STALE = "stale"  # valid, changed nothing (a late `authorized` after `captured`)
    DUPLICATE = "duplicate"  # this event id again, same content
    CONFLICT = "conflict"  # this event id again, other content: kept for review
    IGNORED = "ignored"  # a type or shape payhook does not use
    WAITING = "waiting"  # its payment is not known yet; applied when it arrives


@dataclass(frozen=True, slots=True)
class Observation:
    """What one event says about its payment; a field left None says nothing.

    `state` is one of the base states (pending, authorized, captured, failed, canceled): the
    refund states are derived by the fold. Amounts are integers in the provider's minor unit
    (`payhook.providers.currencies` gives the exponent); `currency` is upper-case ISO 4217.
    """

    state: PaymentState | None = None
    amount_minor: int | None = None
    currency: str | None = None
    refund_id: str | None = None
    refund_minor: int | None = None
    refund_failed: bool = False
    # When the refund was made, in seconds since the epoch: with the failure's own time, it says
    # which cumulative figures counted a refund that failed later.
    refund_created_at: int | None = None
    refunded_total_minor: int | None = None  # a cumulative figure (Stripe's amount_refunded)
    # A capture's own id (Adyen's capture pspReference) on a `captured` observation, so that a
    # later failure of that capture (`capture_failed`, the same id) takes it back out.
    capture_id: str | None = None
    capture_failed: bool = False
    dispute_opened: bool = False
    dispute_closed: bool = False
    source_account: str | None = None
    destination_account: str | None = None

    def to_json(self) -> str:
        """Compact JSON of the fields that say something (the stored form), keys sorted."""
        said = {
            name: value
            for name in _OBSERVATION_FIELDS
            if (value := getattr(self, name)) is not None and value is not False
        }
        return orjson.dumps(said, option=orjson.OPT_SORT_KEYS).decode()

    @classmethod
    def from_json(cls, text: str) -> Observation:
        """The observation `to_json` wrote; unknown keys are refused."""
        values: dict[str, Any] = orjson.loads(text)
        unknown = values.keys() - _OBSERVATION_FIELDS
        if unknown:
            raise ValueError(f"unknown observation fields: {sorted(unknown)}")
        state = values.get("state")
        if state:
            values["state"] = PaymentState(state)
        return cls(**values)


# Read and written once per stored event by every batch: resolved once here, not per call.
_OBSERVATION_FIELDS = frozenset(Observation.__slots__)


class Observed(NamedTuple):
    """One stored observation with what orders it: the input of `state.fold`."""

    observation: Observation
    occurred_at: datetime | None
    event_id: str


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """One event of one provider, parsed from a verified request.

    `event_id` is the provider's dedupe key. `transaction_id` is the payment it belongs to;
    with `observation` None the event is recorded `ignored`, and `ignored_reason` says why.
    `raw` is the evidence kept: the whole body (for a batch, the item's JSON).
    """

    provider: str
    event_id: str
    event_type: str
    transaction_id: str | None
    occurred_at: datetime | None
    observation: Observation | None
    raw: bytes
    ignored_reason: str | None = None

    @property
    def ignored(self) -> bool:
        return self.observation is None or self.transaction_id is None

    def observed(self) -> Observed:
        """This event's observation with its ordering keys; only for a non-ignored event."""
        if self.observation is None:
            raise ValueError(f"event {self.event_id!r} carries no observation")
        return Observed(self.observation, self.occurred_at, self.event_id)


@dataclass(frozen=True, slots=True)
class EventReceipt:
    """The outcome of one received event, for the acknowledgement and the logs."""

    event_id: str
    event_type: str
    transaction_id: str | None
    verdict: EventVerdict
