"""The SQL behind the guarantees, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import insert, literal, select

from payhook.config import Settings
from payhook.db import create_engine
from payhook.transactions.models import (
    DeliveryOutcome,
    TransactionStatus,
    deliveries,
    processing_attempts,
    transactions,
)
from payhook.transactions.records import AttemptReport, ClaimedTransaction, NewDelivery, Outcome
from payhook.transactions.repository import TransactionRepository
from payhook.transactions.schemas import TransactionIn

pytestmark = pytest.mark.anyio
LEASE = 60.0


def delivery(key: str, amount: str = "10.50", *, due_in: float = 0.0) -> NewDelivery:
    transaction = TransactionIn(
        transaction_id=key,
        source_account="src",
        destination_account="dst",
        amount=Decimal(amount),
        currency="EUR",
    )
    now = datetime.now(UTC)
    return NewDelivery(
        transaction, f"raw {key} {amount}".encode(), now, now + timedelta(seconds=due_in)
    )


async def test_new_duplicate_and_conflict_in_one_batch(repository: TransactionRepository) -> None:
    results = await repository.ingest(
        [delivery("a"), delivery("b"), delivery("a", "10.5"), delivery("a", "99")]
    )
    assert [r.outcome for r in results] == [
        DeliveryOutcome.ACCEPTED,
        DeliveryOutcome.ACCEPTED,
        DeliveryOutcome.DUPLICATE,
        DeliveryOutcome.CONFLICT,
    ]
    stored = await repository.get("a")
    assert stored is not None
    assert stored.amount == Decimal("10.50")
    assert str(stored.amount) == "10.50"


async def test_redelivery_in_a_later_batch_changes_nothing(
    repository: TransactionRepository,
) -> None:
    await repository.ingest([delivery("a")])
    before = await repository.get("a")
    results = await repository.ingest([delivery("a"), delivery("a", "1")])
    assert [r.outcome for r in results] == [DeliveryOutcome.DUPLICATE, DeliveryOutcome.CONFLICT]
    assert await repository.get("a") == before


async def test_every_distinct_body_is_kept_once_and_its_repeats_counted(
    repository: TransactionRepository,
) -> None:
    await repository.ingest([delivery("a"), delivery("a", "7"), delivery("a")])
    await repository.ingest([delivery("a")])
    async with repository._engine.connect() as conn:
        rows = (await conn.execute(select(deliveries).order_by(deliveries.c.id))).all()
    assert [(r.outcome, r.raw_body, r.repeats) for r in rows] == [
        ("accepted", b"raw a 10.50", 3),
        ("conflict", b"raw a 7", 1),
    ]


async def test_racing_writers_store_one_row(database_url: str) -> None:
    settings = Settings(_env_file=None, database_url=database_url)
    engines = [create_engine(settings) for _ in range(4)]
    try:
        repositories = [TransactionRepository(engine) for engine in engines]
        results = await asyncio.gather(
            *(repo.ingest([delivery("race")]) for repo in repositories for _ in range(5))
        )
    finally:
        for engine in engines:
            await engine.dispose()
    outcomes = [batch[0].outcome for batch in results]
    assert outcomes.count(DeliveryOutcome.ACCEPTED) == 1
    assert outcomes.count(DeliveryOutcome.DUPLICATE) == 19


async def claim(
    repository: TransactionRepository, token: str, at: datetime | None = None
) -> list[ClaimedTransaction]:
    now = at or datetime.now(UTC)
    return await repository.claim_due(now, limit=100, lease_seconds=LEASE, token=token)


async def test_nothing_is_claimed_before_it_is_due(repository: TransactionRepository) -> None:
    await repository.ingest([delivery("later", due_in=30)])
    assert await claim(repository, "t1") == []
    assert await repository.next_due_at(datetime.now(UTC)) is not None


async def test_a_claimed_row_is_leased_to_one_claimer(repository: TransactionRepository) -> None:
    await repository.ingest([delivery("a"), delivery("b")])
    first = await claim(repository, "t1")
    assert sorted(c.transaction_id for c in first) == ["a", "b"]
    assert all(c.attempt == 1 for c in first)
    assert await claim(repository, "t2") == []


async def test_an_expired_lease_is_reclaimed_and_the_old_claim_is_fenced_out(
    repository: TransactionRepository,
) -> None:
    await repository.ingest([delivery("a")])
    [stale] = await claim(repository, "t1")
    later = datetime.now(UTC) + timedelta(seconds=LEASE + 1)
    [fresh] = await claim(repository, "t2", at=later)
    assert fresh.attempt == 2
    assert await repository.record_outcomes([Outcome(stale, later)]) == [False]
    assert await repository.record_outcomes([Outcome(fresh, later)]) == [True]
    row = await repository.get("a")
    assert row is not None
    assert (row.status, row.processed_at, row.attempts) == ("PROCESSED", later, 2)


async def test_outcomes_processed_retry_and_failed(repository: TransactionRepository) -> None:
    await repository.ingest([delivery("ok"), delivery("retry"), delivery("dead")])
    claimed = {c.transaction_id: c for c in await claim(repository, "t1")}
    now = datetime.now(UTC)
    retry_at = now + timedelta(seconds=5)
    applied = await repository.record_outcomes(
        [
            Outcome(claimed["ok"], now),
            Outcome(claimed["retry"], now, error="boom", retry_at=retry_at),
            Outcome(claimed["dead"], now, error="gone"),
        ]
    )
    assert applied == [True, True, True]
    ok, retry, dead = [await repository.get(key) for key in ("ok", "retry", "dead")]
    assert ok is not None
    assert retry is not None
    assert dead is not None
    assert (ok.status, ok.processed_at) == (TransactionStatus.PROCESSED, now)
    assert (retry.status, retry.due_at, retry.last_error) == ("PROCESSING", retry_at, "boom")
    assert (dead.status, dead.processed_at, dead.last_error) == ("FAILED", None, "gone")
    assert await claim(repository, "t2") == []
    [again] = await claim(repository, "t2", at=retry_at)
    assert (again.transaction_id, again.attempt) == ("retry", 2)


async def add_provider_twin(database_url: str, key: str, provider: str) -> None:
    """A copy of the generic transaction `key` as `provider`'s: another transaction."""
    engine = create_engine(Settings(_env_file=None, database_url=database_url))
    try:
        async with engine.begin() as conn:
            columns = [column for column in transactions.c if column.name != "provider"]
            copied = select(*columns, literal(provider)).where(transactions.c.transaction_id == key)
            await conn.execute(
                insert(transactions).from_select([*columns, transactions.c.provider], copied)
            )
    finally:
        await engine.dispose()


async def test_statements_over_claimed_rows_move_exactly_the_rows_they_name(
    repository: TransactionRepository, database_url: str
) -> None:
    """One id under two providers is two transactions: taking a dispatched batch over, handing
    claims back and recording outcomes each move only the (id, provider) rows they are given."""
    await repository.ingest([delivery("pi_1"), delivery("pi_2"), delivery("pi_3")])
    await add_provider_twin(database_url, "pi_1", "stripe")
    now = datetime.now(UTC)
    dispatched = await repository.claim_due(
        now, limit=100, lease_seconds=LEASE, token="dispatch", count_attempt=False
    )
    assert len(dispatched) == 4
    ids = ["pi_1", "pi_2", "pi_3"]
    started = await repository.start_dispatched(ids, "dispatch", now, lease_seconds=LEASE)
    run = {c.key: c for c in started}
    assert sorted(run) == [("pi_1", ""), ("pi_1", "stripe"), ("pi_2", ""), ("pi_3", "")]
    # The same message again (redelivered or duplicated) finds its token replaced.
    assert await repository.start_dispatched(ids, "dispatch", now, lease_seconds=LEASE) == []

    # Recorded while its twin is still held under the same token: the twin stays as it is.
    applied = await repository.record_outcomes(
        [Outcome(run[("pi_1", "")], now), Outcome(run[("pi_2", "")], now)]
    )
    assert applied == [True, True]
    generic, stripe = await repository.find("pi_1")
    assert (generic.status, generic.processed_at) == (TransactionStatus.PROCESSED, now)
    assert (stripe.status, stripe.claim_token) == (
        "PROCESSING",
        run[("pi_1", "stripe")].claim_token,
    )

    await repository.release([run[("pi_1", "stripe")]])
    retry_at = now + timedelta(seconds=5)
    failed = Outcome(run[("pi_3", "")], now, error="boom", retry_at=retry_at)
    assert await repository.record_outcomes([failed]) == [True]
    [generic, stripe] = await repository.find("pi_1")
    pi_3 = await repository.get("pi_3")
    assert pi_3 is not None
    assert generic.status == TransactionStatus.PROCESSED
    # Handing back takes no attempt back (it is for dispatches, which count none).
    assert (stripe.status, stripe.claim_token, stripe.attempts) == ("PROCESSING", None, 1)
    assert (pi_3.status, pi_3.due_at, pi_3.last_error) == ("PROCESSING", retry_at, "boom")


async def attempt_rows(database_url: str) -> list[Any]:
    engine = create_engine(Settings(_env_file=None, database_url=database_url))
    try:
        async with engine.connect() as conn:
            query = select(processing_attempts).order_by(processing_attempts.c.id)
            return list((await conn.execute(query)).all())
    finally:
        await engine.dispose()


async def test_an_attempt_given_back_is_not_counted(
    repository: TransactionRepository, database_url: str
) -> None:
    await repository.ingest([delivery("sent"), delivery("held")])
    claimed = {c.transaction_id: c for c in await claim(repository, "t1")}
    now = datetime.now(UTC)
    probe_at = now + timedelta(seconds=5)
    report = AttemptReport(status=503, latency_seconds=0.0123, answer="down for maintenance")
    applied = await repository.record_outcomes(
        [
            # Sent while the destination was down: in the timeline, but not counted.
            Outcome(claimed["sent"], now, "HTTP 503", probe_at, counted=False, report=report),
            # Held back unsent: neither counted nor in the timeline.
            Outcome(claimed["held"], now, "destination unavailable", probe_at, counted=False),
        ]
    )

    assert applied == [True, True]
    for key in ("sent", "held"):
        row = await repository.get(key)
        assert row is not None
        assert (row.status, row.attempts, row.due_at, row.claim_token) == (
            "PROCESSING",
            0,
            probe_at,
            None,
        )
    rows = await attempt_rows(database_url)
    assert [
        (r.transaction_id, r.attempt, r.outcome, r.destination_status, r.latency_ms, r.answer)
        for r in rows
    ] == [("sent", 1, "deferred", 503, 12.3, "down for maintenance")]
    again = await claim(repository, "t2", at=probe_at)
    assert [c.attempt for c in again] == [1, 1]  # the same attempt number comes round again


async def test_attempts_keep_what_the_step_reported(
    repository: TransactionRepository, database_url: str
) -> None:
    await repository.ingest([delivery("ok")])
    [claimed] = await claim(repository, "t1")
    report = AttemptReport(status=202, latency_seconds=0.005, answer='{"ok": true}')

    await repository.record_outcomes([Outcome(claimed, datetime.now(UTC), report=report)])

    [row] = await attempt_rows(database_url)
    assert (row.outcome, row.destination_status, row.latency_ms, row.answer) == (
        "succeeded",
        202,
        5.0,
        '{"ok": true}',
    )


async def test_a_nul_or_lone_surrogate_in_an_error_or_answer_is_stored_not_a_failed_batch(
    repository: TransactionRepository, database_url: str
) -> None:
    """The far side's text (an answer's first KB, a step's error) may hold a NUL, which
    PostgreSQL refuses in text, or a lone surrogate, which no UTF-8 holds: stored as U+FFFD,
    the outcomes written beside it are kept."""
    await repository.ingest([delivery("binary"), delivery("failing"), delivery("fine")])
    claimed = {c.transaction_id: c for c in await claim(repository, "t1")}
    now = datetime.now(UTC)
    answered = AttemptReport(status=200, latency_seconds=0.001, answer="ok\x00\ud800")

    applied = await repository.record_outcomes(
        [
            Outcome(claimed["binary"], now, report=answered),
            Outcome(claimed["failing"], now, error="boom\x00\udfff"),
            Outcome(claimed["fine"], now),
        ]
    )

    assert applied == [True, True, True]
    statuses = {key: (await repository.get(key)) for key in claimed}
    assert {key: row.status for key, row in statuses.items() if row} == {
        "binary": TransactionStatus.PROCESSED,
        "failing": TransactionStatus.FAILED,
        "fine": TransactionStatus.PROCESSED,
    }
    rows = {row.transaction_id: row for row in await attempt_rows(database_url)}
    assert rows["binary"].answer == "ok\ufffd\ufffd"
    assert rows["failing"].error == "boom\ufffd\ufffd"


async def test_a_dispatch_that_never_reaches_a_worker_spends_no_attempt(
    repository: TransactionRepository,
) -> None:
    """A batch dispatched to Celery whose message is lost (Redis flushed, a worker killed
    before it took the batch over) comes back when its lease lapses, again and again if need
    be: only a worker taking it over starts an attempt, so the step runs as attempt 1."""
    await repository.ingest([delivery("lost"), delivery("published")])
    at = datetime.now(UTC)
    for round_ in range(6):  # more lapses than MAX_RETRIES allows attempts
        lapsed = at + timedelta(seconds=2 * round_)
        dispatched = await repository.claim_due(
            lapsed, limit=100, lease_seconds=1, token=f"d{round_}", count_attempt=False
        )
        assert sorted(c.transaction_id for c in dispatched) == ["lost", "published"]
        assert {c.attempt for c in dispatched} == {0}
    last = at + timedelta(seconds=10)
    started = await repository.start_dispatched(["lost"], "d5", last, lease_seconds=LEASE)
    assert [(c.transaction_id, c.attempt) for c in started] == [("lost", 1)]

    # Publishing failed: the claim is handed back, due again at once, with nothing spent.
    await repository.release([c for c in dispatched if c.transaction_id == "published"])
    published = await repository.get("published")
    assert published is not None
    assert (published.claim_token, published.attempts) == (None, 0)
    again = await claim(repository, "embedded", at=last)
    assert [(c.transaction_id, c.attempt) for c in again] == [("published", 1)]
