"""Processing steps for tests, loaded by payhook processes through PROCESSING_STEP.

`record_and_script` appends one line per call to the file named by PAYHOOK_TEST_CALLS, so a
test can count calls per transaction across processes and restarts, and fails on purpose for ids
that ask for it: `fail-always-*` always, `fail-twice-*` on its first two attempts,
`fail-until-file-*` while the file named by PAYHOOK_TEST_FAIL_FLAG exists (so a test can let a
replay succeed; once it passes it first waits, at most 20 s, while the file named by
PAYHOOK_TEST_HOLD_FLAG exists, if that is set, so a test can see it PROCESSING),
and `slow-*` sleeps for PAYHOOK_TEST_SLOW_SECONDS after recording the call.
"""

from __future__ import annotations

import asyncio
import os
import time

from payhook.transactions.records import ClaimedTransaction


def record_call(transaction: ClaimedTransaction) -> None:
    fields = [
        transaction.transaction_id,
        transaction.attempt,
        os.getpid(),
        time.time(),
        transaction.idempotency_key,
    ]
    line = (" ".join(map(str, fields)) + "\n").encode()
    fd = os.open(os.environ["PAYHOOK_TEST_CALLS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line)  # one O_APPEND write: lines from many processes never interleave
    finally:
        os.close(fd)


async def record_and_script(transaction: ClaimedTransaction) -> None:
    key = transaction.transaction_id
    record_call(transaction)
    if key.startswith("slow-"):
        await asyncio.sleep(float(os.environ.get("PAYHOOK_TEST_SLOW_SECONDS", "2")))
    if key.startswith("fail-always-"):
        raise RuntimeError(f"scripted failure on attempt {transaction.attempt}")
    if key.startswith("fail-twice-") and transaction.attempt <= 2:
        raise RuntimeError(f"scripted failure on attempt {transaction.attempt}")
    if key.startswith("fail-until-file-") and _fail_flag_present():
        raise RuntimeError(f"scripted failure on attempt {transaction.attempt} (flag file present)")
    if key.startswith("fail-until-file-"):
        await _while_held(os.environ.get("PAYHOOK_TEST_HOLD_FLAG"), seconds=20)


async def _while_held(flag: str | None, seconds: float) -> None:
    """Until `flag` is gone; at most `seconds`, within the step's timeout (30 s by default)."""
    for _ in range(round(seconds / 0.05)):
        if not _present(flag):
            return
        await asyncio.sleep(0.05)


def _present(flag: str | None) -> bool:
    return flag is not None and os.path.exists(flag)


def _fail_flag_present() -> bool:
    return os.path.exists(os.environ["PAYHOOK_TEST_FAIL_FLAG"])


async def record_and_take_time(transaction: ClaimedTransaction) -> None:
    """A step taking PAYHOOK_TEST_STEP_SECONDS, like a real API call: a kill can land mid-step."""
    record_call(transaction)
    await asyncio.sleep(float(os.environ.get("PAYHOOK_TEST_STEP_SECONDS", "0.05")))


async def always_fail(transaction: ClaimedTransaction) -> None:
    """A broken deployment's step: every attempt fails (say, the external API refuses us)."""
    raise RuntimeError("the external API refused the call")


def read_keys(path: str | os.PathLike[str]) -> list[str]:
    """The idempotency key of every recorded call, in order."""
    if not os.path.exists(path):
        return []
    with open(path) as calls:
        return [line.split()[4] for line in calls]


def read_calls(path: str | os.PathLike[str]) -> list[tuple[str, int]]:
    """The (transaction_id, attempt) of every recorded call, in order."""
    if not os.path.exists(path):
        return []
    with open(path) as calls:
        return [(parts[0], int(parts[1])) for parts in (line.split() for line in calls)]
