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
| a capture failed (CAPTURE_FAILED, same capture id) | uncounted: authorized, unless another is |
| refunds, with a captured base | amount_refunded >= amount: refunded; > 0: partially_refunded |
| amount_refunded | max(largest cumulative figure, sum of each non-failed refund id's amount) |
| a refund failed after a cumulative figure counted it | taken out of that figure |
| disputed | true once any dispute is seen opened (or closed), and stays true |
| amount | with captures naming their ids: the sum of each counted capture's amount |
| amount, currency, accounts | from the highest (state rank, occurred_at, event_id) having them |
| no base state observed yet | no snapshot: the payment's events are `waiting` |
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from payhook.providers.model import EventVerdict, Observed, PaymentState

RANK: dict[PaymentState, int] = {
    PaymentState.PENDING: 0,
    PaymentState.FAILED: 1,
    PaymentState.AUTHORIZED: 2,
    PaymentState.CANCELED: 3,
    PaymentState.CAPTURED: 4,
}
"""Base states by precedence; the refund states are derived, never observed."""

_EARLIEST = datetime.min.replace(tzinfo=UTC)


class PaymentSnapshot(NamedTuple):
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
    folding = _Folding()
    for item in observed:
        folding.add(item)
    return folding.snapshot()


class Judgement(NamedTuple):
    """What arriving events did: a verdict each, and the snapshot before and after them."""

    verdicts: list[EventVerdict]
    before: PaymentSnapshot | None
    after: PaymentSnapshot | None


def judge(stored: Sequence[Observed], arriving: Sequence[Observed]) -> Judgement:
    """Verdicts of `arriving` events, taken in order on top of `stored`, and the snapshots.

    An event is `applied` when it changes the snapshot, `stale` when it changes nothing and
    `waiting` while the payment has no snapshot yet.
    """
    folding = _Folding()
    for item in stored:
        folding.add(item)
    before = snapshot = folding.snapshot()
    verdicts = []
    for item in arriving:
        folding.add(item)
        after = folding.snapshot()
        verdicts.append(_verdict(snapshot, after))
        snapshot = after
    return Judgement(verdicts, before, snapshot)


_Order = tuple[int, datetime, str]
_BEST_OF = ("amount_minor", "currency", "source_account", "destination_account")
_BY_RANK = {rank: state for state, rank in RANK.items()}
_AUTHORIZED, _CAPTURED = RANK[PaymentState.AUTHORIZED], RANK[PaymentState.CAPTURED]


class _Folding:
    """The fold, one observation at a time (it runs for every event of every batch).

    Each field is taken from the highest (state rank, occurred_at, event_id) observation that
    has it, the first such on a tie.
    """

    __slots__ = (
        "base",
        "best",
        "captures",
        "created",
        "cumulatives",
        "disputed",
        "failed",
        "failed_captures",
        "refunds",
    )

    def __init__(self) -> None:
        self.base = -1
        self.best: dict[str, tuple[_Order, Any]] = {}
        # `captured` observations naming their capture: folded by `snapshot`, as a failure of
        # that capture may arrive after them.
        self.captures: list[Observed] = []
        self.failed_captures: set[str] = set()
        self.cumulatives: list[tuple[datetime | None, int]] = []  # (when said, the figure)
        self.refunds: dict[str, int] = {}  # the largest amount seen for each refund id
        self.created: dict[str, int] = {}  # when each refund was made, where an event said
        self.failed: dict[str, datetime | None] = {}  # the earliest failure seen, if timed
        self.disputed = False

    def add(self, item: Observed) -> None:
        observation = item.observation
        state = observation.state
        capture_id = observation.capture_id
        if capture_id is not None and observation.capture_failed:
            self.failed_captures.add(capture_id)
        if capture_id is not None and state is PaymentState.CAPTURED:
            self.captures.append(item)
        else:
            rank = RANK[state] if state is not None else -1
            self.base = max(self.base, rank)
            _take_best(self.best, item, rank, _BEST_OF)
        if observation.dispute_opened or observation.dispute_closed:
            self.disputed = True
        if observation.refunded_total_minor is not None:
            self.cumulatives.append((item.occurred_at, observation.refunded_total_minor))
        refund_id = observation.refund_id
        if refund_id is not None:
            if observation.refund_failed:
                self._failed(refund_id, item.occurred_at)
            if observation.refund_created_at is not None:
                self.created[refund_id] = min(
                    self.created.get(refund_id, observation.refund_created_at),
                    observation.refund_created_at,
                )
            if observation.refund_minor is not None:
                self.refunds[refund_id] = max(
                    self.refunds.get(refund_id, 0), observation.refund_minor
                )

    def _failed(self, refund_id: str, at: datetime | None) -> None:
        if refund_id not in self.failed:
            self.failed[refund_id] = at
        elif at is not None:
            known = self.failed[refund_id]
            self.failed[refund_id] = at if known is None else min(known, at)

    def _cumulative(self) -> int:
        """The largest cumulative figure, less the refunds it counted that failed later.

        A figure said at `t` counted a refund made at or before `t` that failed after `t`;
        where a time is unknown, the figure is taken as it was said.
        """
        largest = 0
        for said_at, total in self.cumulatives:
            counted_failures = 0
            if said_at is not None and self.failed:
                moment = said_at.timestamp()
                for refund_id, failed_at in self.failed.items():
                    made = self.created.get(refund_id)
                    if made is None or failed_at is None:
                        continue  # untimed: it may or may not be in the figure
                    if made <= moment < failed_at.timestamp():
                        counted_failures += self.refunds.get(refund_id, 0)
            largest = max(largest, total - counted_failures)
        return largest

    def snapshot(self) -> PaymentSnapshot | None:
        base, best = self.base, self.best
        captured: dict[str, int] = {}  # the largest amount seen for each capture that counts
        if self.captures:
            best = dict(best)
            for item in self.captures:
                capture_id = item.observation.capture_id
                if capture_id in self.failed_captures:
                    # Rejected by the scheme: no money, but Adyen took the capture request, so
                    # the payment was authorised. Its fields rank below any state's, so it
                    # gives the amount only while no other event does (a partial capture's
                    # amount is not the payment's).
                    base = max(base, _AUTHORIZED)
                    _take_best(best, item, -1, _BEST_OF)
                else:
                    base = max(base, _CAPTURED)
                    _take_best(best, item, _CAPTURED, _BEST_OF)
                    value = item.observation.amount_minor
                    if capture_id is not None and value is not None:
                        captured[capture_id] = max(captured.get(capture_id, 0), value)
        if base < 0:
            return None
        if captured:  # partial captures of one authorisation add up
            amount: int | None = sum(captured.values())
        else:
            amount = best["amount_minor"][1] if "amount_minor" in best else None
        summed = sum(v for k, v in self.refunds.items() if k not in self.failed)
        refunded = max(self._cumulative(), summed)
        return PaymentSnapshot(
            _with_refunds(_BY_RANK[base], amount, refunded),
            amount,
            best["currency"][1] if "currency" in best else None,
            refunded,
            self.disputed,
            best["source_account"][1] if "source_account" in best else None,
            best["destination_account"][1] if "destination_account" in best else None,
        )


def _take_best(
    best: dict[str, tuple[_Order, Any]], item: Observed, rank: int, names: Sequence[str]
) -> None:
    """Keep each of `names` that `item` says where its (rank, occurred_at, event_id) is higher."""
    order = (rank, item.occurred_at or _EARLIEST, item.event_id)
    observation = item.observation
    for name in names:
        value = getattr(observation, name)
        if value is not None and (name not in best or order > best[name][0]):
            best[name] = (order, value)


def _verdict(before: PaymentSnapshot | None, after: PaymentSnapshot | None) -> EventVerdict:
    if after is None:
        return EventVerdict.WAITING
    return EventVerdict.STALE if after == before else EventVerdict.APPLIED


def _with_refunds(base: PaymentState, amount: int | None, refunded: int) -> PaymentState:
    if base is not PaymentState.CAPTURED or refunded <= 0:
        return base
    if amount is not None and refunded >= amount:
        return PaymentState.REFUNDED
    return PaymentState.PARTIALLY_REFUNDED
