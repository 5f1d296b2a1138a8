"""Processing steps: the work done for a transaction once it falls due.

A step is `async def step(transaction: ClaimedTransaction) -> AttemptReport | None`; raising
means the attempt failed (`StepFailed` says how to treat the failure). Configure another with
PROCESSING_STEP="package.module:function", or set DESTINATION_URL for the built-in forwarding
step (`payhook.forwarding.step`). A step that calls an external API should send
`transaction.idempotency_key`, which is the same on every attempt, so a retry after a crash
cannot apply the effect twice.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable

from payhook.transactions.records import AttemptReport, ClaimedTransaction

# The report, when given, is shown in the transaction's timeline.
ProcessingStep = Callable[[ClaimedTransaction], Awaitable[AttemptReport | None]]


class StepFailed(Exception):
    """Raised by a step to say how its failed attempt is to be treated.

    - `retry=False`: give up now (`FAILED`), whatever attempts are left;
    - `retry_after`: try again that many seconds from now, instead of the backoff;
    - `counted=False`: the attempt is given back (the far side was down, or nothing was sent),
      so it cannot use up the transaction's attempts.
    """

    def __init__(
        self,
        error: str,
        *,
        retry: bool = True,
        retry_after: float | None = None,
        counted: bool = True,
        report: AttemptReport | None = None,
    ) -> None:
        super().__init__(error)
        self.error = error
        self.retry = retry
        self.retry_after = retry_after
        self.counted = counted
        self.report = report


async def simulated_external_call(transaction: ClaimedTransaction) -> None:
    """The default step: the external API call whose latency PROCESSING_DELAY_SECONDS simulates."""
    del transaction


class StepNotLoadable(ValueError):
    """PROCESSING_STEP names nothing that can run: the message says why, in one line."""


def load_step(path: str) -> ProcessingStep:
    """Import `module:function` and check it is a coroutine function."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise StepNotLoadable(
            f"PROCESSING_STEP must look like 'package.module:function', not {path!r}"
        )
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's module: any error in it means it cannot run
        raise StepNotLoadable(
            f"PROCESSING_STEP: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    step = getattr(module, attribute, None)
    if step is None:
        raise StepNotLoadable(f"PROCESSING_STEP: {module_name!r} has no {attribute!r}")
    if not asyncio.iscoroutinefunction(step):
        raise StepNotLoadable(f"PROCESSING_STEP {path!r} must be an async function")
    return step  # type: ignore[no-any-return]
