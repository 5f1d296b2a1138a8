"""Failed console logins, counted per client address, so guessing the token is slow and seen."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import structlog

from payhook.errors import TooManyRequests

log = structlog.get_logger(__name__)


@dataclass
class LoginThrottle:
    """Failed console logins, per client address, in a sliding window (in this process).

    After `per_client` failures within `window_seconds` that address is refused (429 with
    Retry-After) until the oldest failure leaves the window; after `overall` failures from all
    addresses together, everyone is. At most `max_clients` addresses are remembered.
    """

    per_client: int = 10
    overall: int = 100
    window_seconds: float = 60.0
    max_clients: int = 10_000
    _failures: OrderedDict[str, deque[float]] = field(default_factory=OrderedDict)
    _all: deque[float] = field(default_factory=deque)

    def check(self, client: str) -> None:
        """Raise TooManyRequests while `client` (or everyone) has failed too often."""
        now = time.monotonic()
        # Only a failure makes an entry: checking an address never grows the table.
        mine = self._failures.get(client, deque())
        for failures, limit in ((self._all, self.overall), (mine, self.per_client)):
            self._expire(failures, now)
            if len(failures) >= limit:
                wait = max(1, int(failures[0] + self.window_seconds - now) + 1)
                log.warning("console.login_throttled", client=client, retry_after=wait)
                raise TooManyRequests(
                    f"Too many failed logins. Try again in {wait} s.", retry_after_seconds=wait
                )

    def failed(self, client: str) -> int:
        """Record a failure; returns the client's failures within the window."""
        now = time.monotonic()
        failures = self._recent(client, now)
        failures.append(now)
        self._all.append(now)
        self._expire(self._all, now)
        self._failures.move_to_end(client)
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)
        return len(failures)

    def _recent(self, client: str, now: float) -> deque[float]:
        failures = self._failures.setdefault(client, deque())
        self._expire(failures, now)
        return failures

    def _expire(self, failures: deque[float], now: float) -> None:
        while failures and failures[0] <= now - self.window_seconds:
            failures.popleft()
