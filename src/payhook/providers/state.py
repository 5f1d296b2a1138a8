"""A payment's state as a pure function of the SET of its observations.

Providers deliver events out of order and more than once, so the state is never "the last event
received": it is folded from every observation kept for the payment, and any arrival order of
the same events gives the same snapshot (tests/unit/test_provider_state.py proves it with
Hypothesis). The precedence, also in docs/PROVIDERS.md:

| Rule | Result |
|---|---|
| base state | the highest-ranked observed: pending < failed < authorized < canceled < captured |
| `failed` then `captured` (a retried payment) | captured |
| `authorized` after `captured` (a late event) | captured: the late event is `stale` |
| refunds, with a captured base | amount_refunded >= amount: refunded; > 0: partially_refunded |
| amount_refunded | max(largest cumulative figure, sum of each non-failed refund id's amount) |
| disputed | true once any dispute is seen opened (or closed), and stays true |
| amount, currency, accounts | from the highest (state rank, occurred_at, event_id) having them |
| no base state observed yet | no snapshot: the payment's events are `waiting` |
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from payhook.providers.model import EventVerdict, Observation, Observed, PaymentState

RANK: dict[PaymentState, int] = {
    PaymentState.PENDING: 0,
    PaymentState.FAILED: 1,
    PaymentState.AUTHORIZED: 2,
    PaymentState.CANCELED: 3,
    PaymentState.CAPTURED: 4,
}
"""Base states by precedence; the refund states are derived, never observed."""

_EARLIEST = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class PaymentSnapshot:
    """Everything payhook keeps about one provider payment, folded from its observations."""

    payment_state: PaymentState
    amount_minor: int | None
    currency: str | None
    amount_refunded_minor: int
    disputed: bool
    source_account: str | None
    destination_account: str | None


def fold(observed: Iterable[Observed]) -> PaymentSnapshot | None:
    """The snapshot of a payment from all its observations; None while no base state is known."""
    items = list(observed)
    base = max((RANK[s] for s in _states(items)), default=None)
    if base is None:
        return None
    state = next(state for state, rank in RANK.items() if rank == base)
    amount = _best(items, lambda o: o.amount_minor is not None)
    currency = _best(items, lambda o: o.currency is not None)
    refunded = _amount_refunded(items)
    return PaymentSnapshot(
        payment_state=_with_refunds(state, amount.amount_minor if amount else None, refunded),
        amount_minor=amount.amount_minor if amount else None,
        currency=currency.currency if currency else None,
        amount_refunded_minor=refunded,
        disputed=any(o.observation.dispute_opened or o.observation.dispute_closed for o in items),
        source_account=_field(items, "source_account"),
        destination_account=_field(items, "destination_account"),
    )


def judge(
    stored: Sequence[Observed], arriving: Sequence[Observed]
) -> tuple[list[EventVerdict], PaymentSnapshot | None]:
    """Verdicts of `arriving` events, taken in order on top of `stored`, and the final snapshot.

    An event is `applied` when it changes the snapshot, `stale` when it changes nothing and
    `waiting` while the payment has no snapshot yet.
    """
    seen = list(stored)
    snapshot = fold(seen)
    verdicts = []
    for item in arriving:
        seen.append(item)
        after = fold(seen)
        verdicts.append(_verdict(snapshot, after))
        snapshot = after
    return verdicts, snapshot


def _verdict(before: PaymentSnapshot | None, after: PaymentSnapshot | None) -> EventVerdict:
    if after is None:
        return EventVerdict.WAITING
    return EventVerdict.STALE if after == before else EventVerdict.APPLIED


def _states(items: Iterable[Observed]) -> Iterable[PaymentState]:
    return (o.observation.state for o in items if o.observation.state is not None)


def _order(item: Observed) -> tuple[int, datetime, str]:
    state = item.observation.state
    return (RANK[state] if state else -1, item.occurred_at or _EARLIEST, item.event_id)


def _best(items: Iterable[Observed], has: Callable[[Observation], bool]) -> Observation | None:
    candidates = [item for item in items if has(item.observation)]
    return max(candidates, key=_order).observation if candidates else None


def _field(items: Iterable[Observed], name: str) -> str | None:
    best = _best(items, lambda o: getattr(o, name) is not None)
    value: str | None = getattr(best, name) if best else None
    return value


def _amount_refunded(items: Iterable[Observed]) -> int:
    cumulative = 0
    largest: dict[str, int] = {}
    failed: set[str] = set()
    for item in items:
        observation = item.observation
        if observation.refunded_total_minor is not None:
            cumulative = max(cumulative, observation.refunded_total_minor)
        refund_id = observation.refund_id
        if refund_id is None:
            continue
        if observation.refund_failed:
            failed.add(refund_id)
        if observation.refund_minor is not None:
            largest[refund_id] = max(largest.get(refund_id, 0), observation.refund_minor)
    summed = sum(amount for refund_id, amount in largest.items() if refund_id not in failed)
    return max(cumulative, summed)


def _with_refunds(base: PaymentState, amount: int | None, refunded: int) -> PaymentState:
    if base is not PaymentState.CAPTURED or refunded <= 0:
        return base
    if amount is not None and refunded >= amount:
        return PaymentState.REFUNDED
    return PaymentState.PARTIALLY_REFUNDED
