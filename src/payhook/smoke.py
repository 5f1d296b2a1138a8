"""`payhook check`: a smoke test of a running payhook, through its public HTTP API only.

Each check prints one PASS/FAIL line. It posts real deliveries (ids `txn_check_…`, accounts
`acc_check_source`/`acc_check_destination`, amount 0.01 in the chosen currency), which the
instance stores and processes like any other: point it at staging, or let your step skip them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal

import httpx

from payhook.jsonfmt import dumps
from payhook.webhooks.signatures import Verifier

WEBHOOK = "/v1/webhooks/transactions"
AMOUNT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Result:
    name: str
    passed: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.name:<14} {self.detail}"


@dataclass
class Smoke:
    """The checks against one instance, in order; `within` bounds the end-to-end wait."""

    client: httpx.Client
    signer: Verifier
    currency: str
    within: float
    max_seconds: float

    def __post_init__(self) -> None:
        self.transaction_id = f"txn_check_{uuid.uuid4().hex[:20]}"
        self.acknowledgements: list[float] = []

    def run(self) -> Iterator[Result]:
        checks: list[Callable[[], Result]] = [
            self.health,
            self.ready,
            self.accepted,
            self.duplicate,
            self.conflict,
            self.bad_input,
            self.unknown_id,
            self.response_time,
            self.processed,
        ]
        for check in checks:
            yield check()

    def health(self) -> Result:
        answer, seconds = self._timed("GET", "/")
        ok = answer.status_code == 200 and _json(answer).get("status") == "HEALTHY"
        return Result("health", ok, f"GET / answered {_said(answer)} in {_ms(seconds)}")

    def ready(self) -> Result:
        answer, _ = self._timed("GET", "/health/ready")
        return Result("ready", answer.status_code == 200, f"GET /health/ready: {_said(answer)}")

    def accepted(self) -> Result:
        answer = self._post(self.transaction_id, _body(self.transaction_id, AMOUNT, self.currency))
        ok = answer.status_code == 202 and _json(answer).get("duplicate") is False
        hint = " (signed? pass --scheme and --secret)" if answer.status_code == 401 else ""
        return Result("new", ok, f"{self.transaction_id}: {_said(answer)}{hint}")

    def duplicate(self) -> Result:
        answer = self._post(self.transaction_id, _body(self.transaction_id, AMOUNT, self.currency))
        ok = answer.status_code == 202 and _json(answer).get("duplicate") is True
        return Result("duplicate", ok, f"the same again: {_said(answer)}")

    def conflict(self) -> Result:
        changed = _body(self.transaction_id, AMOUNT * 2, self.currency)
        answer = self._post(f"{self.transaction_id}_conflict", changed)
        ok = answer.status_code == 409 and _is_problem(answer)
        return Result("conflict", ok, f"same id, other amount: {_said(answer)}")

    def bad_input(self) -> Result:
        bad_id = f"{self.transaction_id}_bad"
        answer = self._post(bad_id, _body(bad_id, Decimal(-1), self.currency))
        stored = self.client.get(f"/v1/transactions/{bad_id}").status_code
        ok = answer.status_code == 422 and _is_problem(answer) and stored == 404
        return Result("bad input", ok, f"amount -1: {_said(answer)}; stored after: {stored}")

    def unknown_id(self) -> Result:
        answer, _ = self._timed("GET", f"/v1/transactions/{self.transaction_id}_unknown")
        ok = answer.status_code == 404 and _is_problem(answer)
        return Result("unknown id", ok, f"GET of an id never sent: {_said(answer)}")

    def response_time(self) -> Result:
        slowest = max(self.acknowledgements, default=float("inf"))
        ok = slowest <= self.max_seconds
        limit = _ms(self.max_seconds)
        return Result("response time", ok, f"slowest webhook answer {_ms(slowest)} (≤ {limit})")

    def processed(self) -> Result:
        started = time.monotonic()
        status = "unknown"
        while time.monotonic() - started < self.within:
            answer = self.client.get(f"/v1/transactions/{self.transaction_id}")
            found = _json_list(answer)
            status = str(found[0].get("status")) if found else f"HTTP {answer.status_code}"
            if status in ("PROCESSED", "FAILED"):
                break
            time.sleep(min(1.0, self.within / 20))
        waited = time.monotonic() - started
        detail = f"{status} after {waited:.1f} s (limit {self.within:g} s)"
        return Result("processed", status == "PROCESSED", detail)

    def _post(self, msg_id: str, body: bytes) -> httpx.Response:
        headers = self.signer.sign(body, timestamp=int(time.time()), msg_id=f"msg_{msg_id}")
        headers["content-type"] = "application/json"
        started = time.perf_counter()
        answer = self.client.post(WEBHOOK, content=body, headers=headers)
        self.acknowledgements.append(time.perf_counter() - started)
        return answer

    def _timed(self, method: str, path: str) -> tuple[httpx.Response, float]:
        started = time.perf_counter()
        answer = self.client.request(method, path)
        return answer, time.perf_counter() - started


def _body(transaction_id: str, amount: Decimal, currency: str) -> bytes:
    document = {
        "transaction_id": transaction_id,
        "source_account": "acc_check_source",
        "destination_account": "acc_check_destination",
        "amount": amount,
        "currency": currency,
    }
    return dumps(document).encode()


def _json(answer: httpx.Response) -> dict[str, object]:
    try:
        found = answer.json()
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _json_list(answer: httpx.Response) -> list[dict[str, object]]:
    try:
        found = answer.json()
    except ValueError:
        return []
    return found if isinstance(found, list) and found and isinstance(found[0], dict) else []


def _is_problem(answer: httpx.Response) -> bool:
    content_type: str = answer.headers.get("content-type", "")
    return content_type.startswith("application/problem+json")


def _said(answer: httpx.Response) -> str:
    kind = answer.headers.get("content-type", "").split(";")[0] or "no content type"
    return f"{answer.status_code} {kind}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"
