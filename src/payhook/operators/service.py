"""The operators' rules: pages with opaque cursors, timelines, replays only of FAILED ones."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import simplejson
import structlog

from payhook.errors import NotFound, NotReplayable
from payhook.observability.metrics import DatabaseSnapshot
from payhook.operators.repository import Action, AnyRow, History, Keyset, OperatorRepository
from payhook.operators.schemas import (
    BulkRetryIn,
    ConflictingDelivery,
    ConflictPage,
    ListQuery,
    RetryOut,
    Timeline,
    TimelineEvent,
    TransactionPage,
    TransactionSummary,
)
from payhook.operators.throttle import LoginThrottle

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TIMELINE_PAGE = 100

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Operator:
    """Who is acting: a name from X-Operator (or the CLI's --actor), for the audit log."""

    actor: str


class OperatorService:
    """What operators can see and do; `on_requeued` wakes the local scheduler after a replay."""

    def __init__(
        self,
        repository: OperatorRepository,
        on_requeued: Callable[[datetime], None] | None = None,
    ) -> None:
        self.repository = repository
        self._on_requeued = on_requeued
        self.login_throttle = LoginThrottle()

    async def page(self, query: ListQuery) -> TransactionPage:
        """One page, newest first; `next_cursor` is set when there may be more."""
        after = decode_cursor(query.cursor) if query.cursor else None
        rows = await self.repository.page(query, after, query.limit, datetime.now(UTC))
        items = [TransactionSummary.model_validate(row._mapping) for row in rows]
        last = items[-1] if len(items) == query.limit else None
        return TransactionPage(
            items=items,
            next_cursor=encode_cursor((last.created_at, last.transaction_id)) if last else None,
        )

    async def conflicts(self, before: int | None, limit: int) -> ConflictPage:
        """Conflicting deliveries, newest first; `next_before` is set when there may be more."""
        items = [_conflict(row) for row in await self.repository.conflicts(before, limit)]
        last = items[-1].delivery_id if len(items) == limit else None
        return ConflictPage(items=items, next_before=last)

    async def timeline(
        self,
        transaction_id: str,
        provider: str | None = None,
        *,
        raw: bool = False,
        limit: int = TIMELINE_PAGE,
        offset: int = 0,
    ) -> Timeline:
        """A page of the deliveries or provider events, attempts and operator actions of one
        transaction, in time order; `next_offset` is set when there are more."""
        history = await self.repository.history(transaction_id, provider, raw=raw)
        if history is None:
            raise NotFound(
                f"No transaction has id {transaction_id!r}.", transaction_id=transaction_id
            )
        events = sorted(_events(history, raw=raw), key=lambda event: event.at)
        return Timeline(
            transaction=TransactionSummary.model_validate(history.transaction._mapping),
            events=events[offset : offset + limit],
            next_offset=offset + limit if len(events) > offset + limit else None,
        )

    async def retry_one(
        self, transaction_id: str, provider: str | None, operator: Operator, reason: str | None
    ) -> RetryOut:
        """Replay one FAILED transaction; 404 if unknown, 409 if it is not FAILED."""
        action = Action("retry", operator.actor, reason, datetime.now(UTC))
        key = await self.repository.resolve(transaction_id, provider)
        if key is None:
            raise NotFound(f"No transaction has id {transaction_id!r}.")
        done = await self.repository.retry(self.repository.key_is(key), limit=1, action=action)
        if not done:
            status = await self.repository.status(transaction_id, provider)
            if status is None:
                raise NotFound(f"No transaction has id {transaction_id!r}.")
            raise NotReplayable(
                f"Only FAILED transactions can be replayed; {transaction_id!r} is {status}.",
                transaction_id=transaction_id,
                # Not `status`: in a problem that member is the HTTP status (RFC 9457).
                transaction_status=status,
            )
        return self._requeued(done, action)

    async def retry_many(self, body: BulkRetryIn, operator: Operator) -> RetryOut:
        """Replay up to `body.limit` FAILED transactions matching the filter (or the ids)."""
        now = datetime.now(UTC)
        where = body.filter.model_copy(update={"status": None})
        conditions = self.repository.conditions(where, now)
        if body.ids is not None:
            conditions += self.repository.id_in(body.ids)
        detail = {"filter": where.model_dump(mode="json", exclude_none=True), "ids": body.ids}
        action = Action("retry.bulk", operator.actor, body.reason, now)
        done = await self.repository.retry(conditions, body.limit, action, bulk_detail=detail)
        return self._requeued(done, action)

    def _requeued(self, done: list[str], action: Action) -> RetryOut:
        # At most a few ids in the log line; the audit table has them all.
        log.info(
            "operator.replayed",
            action=action.action,
            actor=action.actor,
            count=len(done),
            transaction_ids=done[:10],
        )
        if done and self._on_requeued is not None:
            self._on_requeued(action.at)
        return RetryOut(retried=len(done), transaction_ids=done)

    async def snapshot(self, pool: dict[str, int]) -> DatabaseSnapshot:
        """Stored state for the metrics gauges and the console's counts."""
        now = datetime.now(UTC)
        by_status = await self.repository.counts_by_status()
        backlog, oldest = await self.repository.due_backlog(now)
        age = (now - oldest).total_seconds() if oldest is not None else 0.0
        return DatabaseSnapshot(by_status, backlog, max(0.0, age), pool)


def encode_cursor(position: Keyset) -> str:
    """An opaque token for the keyset (created_at, transaction_id) of a page's last row:
    unpadded base64url of the instant (microseconds since 1970, 8 bytes, signed, big-endian)
    then the id in UTF-8. (A 255-character id of emoji takes 1,372 characters, within
    MAX_CURSOR_LENGTH.)"""
    micros = (position[0] - EPOCH) // timedelta(microseconds=1)
    raw = micros.to_bytes(8, "big", signed=True) + position[1].encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str) -> Keyset:
    """The keyset a cursor stands for. Every string of the documented shape (CURSOR_PATTERN)
    is one: an instant outside what can be stored is clamped to the first or last, and bytes
    that are not UTF-8 (or a NUL, which PostgreSQL refuses) read as U+FFFD. A cursor only says
    where a page starts, so a made-up one shows a page of what the filter allows anyway."""
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    micros = int.from_bytes(raw[:8], "big", signed=True)
    key = raw[8:].decode("utf-8", "replace").replace("\x00", "\ufffd")
    return _instant(micros), key


def _instant(micros: int) -> datetime:
    lowest, highest = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
    clamped = min(
        max(micros, (lowest - EPOCH) // timedelta(microseconds=1)),
        (highest - EPOCH) // timedelta(microseconds=1),
    )
    return EPOCH + timedelta(microseconds=clamped)


COMPARED_FIELDS = ("source_account", "destination_account", "amount", "currency")


def _conflict(row: AnyRow) -> ConflictingDelivery:
    stored = TransactionSummary.model_validate(row._mapping)
    body: bytes | None = row.raw_body
    return ConflictingDelivery(
        delivery_id=row.id,
        received_at=row.received_at,
        signature=row.signature,
        body=body.decode("utf-8", "replace") if body is not None else None,
        differs=_differences(body, stored),
        stored=stored,
    )


def _differences(body: bytes | None, stored: TransactionSummary) -> list[str]:
    """The compared fields whose value in the refused body is not the stored one."""
    try:
        sent = simplejson.loads(body, use_decimal=True) if body is not None else None
    except ValueError:
        return []
    if not isinstance(sent, dict):
        return []
    return [name for name in COMPARED_FIELDS if sent.get(name) != getattr(stored, name)]


def _events(history: History, *, raw: bool) -> list[TimelineEvent]:
    actions = [_action(row) for row in history.actions]
    events = [_delivery(row, raw=raw) for row in history.deliveries]
    events += [_provider_event(row, raw=raw) for row in history.provider_events]
    events += [_attempt(row, _attempts_before(actions, row.started_at)) for row in history.attempts]
    return events + actions


def _attempts_before(actions: list[TimelineEvent], moment: datetime) -> int:
    """Attempts made before the replays preceding `moment`: a replay resets the stored count,
    and the timeline's numbering carries on from them (attempt 5 after four failed ones)."""
    return sum(
        int((action.detail or {}).get("previous_attempts", 0))
        for action in actions
        if action.action in ("retry", "retry.bulk") and action.at <= moment
    )


def _attempt(row: AnyRow, offset: int) -> TimelineEvent:
    return TimelineEvent(
        at=row.started_at,
        kind="attempt",
        attempt=row.attempt + offset,
        finished_at=row.finished_at,
        outcome=row.outcome,
        error=row.error,
        destination_status=row.destination_status,
        latency_ms=row.latency_ms,
        answer=row.answer,
    )


def _delivery(row: AnyRow, *, raw: bool) -> TimelineEvent:
    body: bytes | None = row.raw_body if raw else None
    return TimelineEvent(
        at=row.received_at,
        kind="delivery",
        outcome=row.outcome,
        signature=row.signature,
        raw_body=body.decode("utf-8", "replace") if body is not None else None,
        raw_body_purged=(body is None) if raw else bool(row.purged),
        repeats=row.repeats,
        last_received_at=row.last_received_at or row.received_at,
    )


def _provider_event(row: AnyRow, *, raw: bool) -> TimelineEvent:
    body: bytes | None = row.raw_body if raw else None
    return TimelineEvent(
        at=row.received_at,
        kind="provider_event",
        outcome=row.verdict,
        event_id=row.event_id,
        event_type=row.event_type,
        deliveries=row.deliveries,
        reason=row.reason,
        raw_body=body.decode("utf-8", "replace") if body is not None else None,
        raw_body_purged=(body is None) if raw else bool(row.purged),
    )


def _action(row: AnyRow) -> TimelineEvent:
    detail: dict[str, Any] | None = simplejson.loads(row.detail) if row.detail else None
    return TimelineEvent(
        at=row.at,
        kind="operator_action",
        action=row.action,
        actor=row.actor,
        reason=row.reason,
        detail=detail,
    )
