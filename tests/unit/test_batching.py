"""Group commit: concurrent submissions share one write; each caller gets its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from payhook.batching import GroupCommitter, OutcomeUnknown

pytestmark = pytest.mark.anyio


async def test_concurrent_submissions_are_batched_and_answered_in_order() -> None:
    batches: list[list[int]] = []

    async def write(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        await asyncio.sleep(0.01)
        return [item * 10 for item in items]

    committer: GroupCommitter[int, int] = GroupCommitter(write, max_batch=100, name="t")
    committer.start()
    results = await asyncio.gather(*(committer.submit(i) for i in range(50)))
    await committer.stop()
    assert results == [i * 10 for i in range(50)]
    assert len(batches) < 50
    assert sorted(i for batch in batches for i in batch) == list(range(50))


async def test_with_two_writers_the_next_batch_is_written_while_one_is_in_flight() -> None:
    in_flight = 0
    release, both_in_flight = asyncio.Event(), asyncio.Event()

    async def write(items: Sequence[int]) -> list[int]:
        nonlocal in_flight
        in_flight += 1
        if in_flight == 2:
            both_in_flight.set()
        await release.wait()
        in_flight -= 1
        return list(items)

    committer: GroupCommitter[int, int] = GroupCommitter(write, max_batch=100, name="t", writers=2)
    committer.start()
    first = asyncio.ensure_future(committer.submit(1))
    await asyncio.sleep(0.01)  # the first writer takes [1] and waits in `write`
    second = asyncio.ensure_future(committer.submit(2))
    async with asyncio.timeout(5):  # a hang bound: one writer alone would never get here
        await both_in_flight.wait()
    release.set()
    assert [await first, await second] == [1, 2]
    third = asyncio.ensure_future(committer.submit(3))
    await asyncio.sleep(0)  # queued as the writers stop: still written
    await committer.stop()
    assert await third == 3


async def test_batches_never_exceed_the_limit() -> None:
    sizes: list[int] = []

    async def write(items: Sequence[int]) -> list[int]:
        sizes.append(len(items))
        return list(items)

    committer: GroupCommitter[int, int] = GroupCommitter(write, max_batch=7, name="t")
    committer.start()
    await asyncio.gather(*(committer.submit(i) for i in range(30)))
    await committer.stop()
    assert max(sizes) <= 7
    assert sum(sizes) == 30


async def test_a_failed_write_fails_every_caller_of_that_batch_only() -> None:
    calls = 0

    async def write(items: Sequence[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("disk on fire")
        return list(items)

    committer: GroupCommitter[int, int] = GroupCommitter(write, max_batch=100, name="t")
    committer.start()
    first = await asyncio.gather(*(committer.submit(i) for i in range(5)), return_exceptions=True)
    second = await committer.submit(99)
    await committer.stop()
    assert all(isinstance(result, OSError) for result in first)
    assert second == 99


async def test_submit_after_stop_is_refused() -> None:
    async def write(items: Sequence[int]) -> list[int]:
        return list(items)

    committer: GroupCommitter[int, int] = GroupCommitter(write, max_batch=1, name="t")
    committer.start()
    await committer.stop()
    with pytest.raises(RuntimeError, match="not running"):
        await committer.submit(1)


async def test_a_hanging_write_is_abandoned_and_callers_who_gave_up_are_not_written() -> None:
    """A database that stops answering: the write in flight fails at its timeout, and items
    whose callers stopped waiting meanwhile are dropped, not written late."""
    hang = asyncio.Event()
    written: list[list[int]] = []

    async def write(items: Sequence[int]) -> list[int]:
        written.append(list(items))
        if not hang.is_set():
            await asyncio.sleep(3600)  # the first write never returns
        return list(items)

    committer: GroupCommitter[int, int] = GroupCommitter(
        write, max_batch=10, name="t", timeout_seconds=0.2
    )
    committer.start()
    first = asyncio.create_task(committer.submit(1))
    await asyncio.sleep(0.05)
    gave_up = asyncio.create_task(committer.submit(2))
    await asyncio.sleep(0.01)
    gave_up.cancel()  # its caller answered 503 at its own deadline
    with pytest.raises(TimeoutError):
        await first
    hang.set()
    assert await committer.submit(3) == 3
    await committer.stop()
    assert written == [[1], [3]]


async def test_a_caller_is_answered_at_its_deadline_even_while_the_write_unwinds() -> None:
    """The caller's own deadline answers it, not the end of an abandoned write: a write that
    takes long to give up (closing a connection to a database that stopped answering) does not
    hold the 503."""
    unwound = asyncio.Event()

    async def write(items: Sequence[int]) -> list[int]:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(1)  # slow clean-up after the write's own timeout cancelled it
            unwound.set()
        return list(items)

    committer: GroupCommitter[int, int] = GroupCommitter(
        write, max_batch=10, name="t", timeout_seconds=0.1
    )
    committer.start()
    with pytest.raises(TimeoutError):
        await committer.submit(1)
    assert not unwound.is_set()
    await committer.stop()
    assert unwound.is_set()


async def test_a_deadline_passing_during_its_write_says_the_outcome_is_unknown() -> None:
    """Queued behind a slow write, an item gets into the next write before its caller's
    deadline, which then passes while that write runs: the caller is answered at its deadline,
    not told "nothing stored" (a plain TimeoutError) for a row the write then commits, but
    OutcomeUnknown. Ordered by events, not sleeps: the first write ends 2 s after the second
    caller came (so the second write's own deadline falls 2 s after the caller's), and the
    second write ends only once its caller has been answered."""
    second_may_end = asyncio.Event()
    written: list[list[int]] = []

    async def write(items: Sequence[int]) -> list[int]:
        if items == [1]:
            await first_may_end.wait()
        else:
            await second_may_end.wait()
        written.append(list(items))
        return list(items)

    first_may_end = asyncio.Event()
    committer: GroupCommitter[int, int] = GroupCommitter(
        write, max_batch=1, name="t", timeout_seconds=4.0
    )
    committer.start()
    first = asyncio.create_task(committer.submit(1))
    second = asyncio.create_task(committer.submit(2))
    await asyncio.sleep(2.0)
    first_may_end.set()  # the second write starts now; its caller's deadline is in 2 s
    assert await first == 1
    with pytest.raises(OutcomeUnknown):
        await second
    second_may_end.set()  # the write its caller gave up on goes on, and stores it
    await committer.stop()
    assert written == [[1], [2]]  # stored after all: its retry will be a duplicate
