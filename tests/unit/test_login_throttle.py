"""The console's login throttle: per address and overall, in a sliding window, bounded."""

from __future__ import annotations

import pytest

from payhook.errors import TooManyRequests
from payhook.operators.throttle import LoginThrottle


def test_checking_an_address_remembers_nothing_only_a_failure_does() -> None:
    """Requests refused before any login is tried (a foreign Origin, say) check the throttle
    from any number of addresses: the table must not grow with them."""
    throttle = LoginThrottle(max_clients=3)
    for n in range(1_000):
        throttle.check(f"2001:db8::{n:x}")
    assert len(throttle._failures) == 0
    for n in range(5):
        throttle.failed(f"198.51.100.{n}")
    assert len(throttle._failures) == 3  # at most max_clients remembered


def test_an_address_is_refused_after_its_failures_and_others_are_not() -> None:
    throttle = LoginThrottle(per_client=2, overall=100)
    throttle.failed("198.51.100.1")
    throttle.check("198.51.100.1")
    throttle.failed("198.51.100.1")
    with pytest.raises(TooManyRequests):
        throttle.check("198.51.100.1")
    throttle.check("198.51.100.2")
