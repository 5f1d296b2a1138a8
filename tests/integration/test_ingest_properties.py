"""Property: any body is either stored exactly as sent (202) or refused with a 4xx, storing nothing.

Bodies are built as JSON text so that the amount's exact digits are the fuzzed value. A model of
what should be stored follows the examples, because one database serves them all: a repeated id
must then be a duplicate (202) or a conflict (409) that leaves the first delivery untouched.
"""

from __future__ import annotations

import json
import string
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, TypeGuard
from urllib.parse import quote

import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import payhook.migrate
from payhook.app import create_app
from payhook.config import Settings
from payhook.transactions.schemas import known_currencies

FIELDS = ("transaction_id", "source_account", "destination_account", "amount", "currency")
IDENTIFIERS = FIELDS[:3]
PROPERTY_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclass
class Service:
    """The in-process app on SQLite, reached from synchronous Hypothesis tests."""

    portal: BlockingPortal
    client: httpx.AsyncClient
    stored: dict[str, dict[str, Any]] = field(default_factory=dict)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response: httpx.Response = self.portal.call(
            lambda: self.client.request(method, url, **kwargs)
        )
        return response

    def post(self, raw: bytes) -> httpx.Response:
        headers = {"content-type": "application/json"}
        return self.request("POST", "/v1/webhooks/transactions", content=raw, headers=headers)

    def get(self, transaction_id: str) -> httpx.Response:
        # Dots are escaped too, or the client would collapse an id such as ".." out of the path.
        path = quote(transaction_id, safe="").replace(".", "%2E")
        return self.request("GET", f"/v1/transactions/{path}")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    url = f"sqlite:///{tmp_path_factory.mktemp('properties') / 'payhook.db'}"
    app_settings = Settings(_env_file=None, database_url=url, processing_delay_seconds=3600)
    with start_blocking_portal() as portal:
        portal.call(payhook.migrate.upgrade, app_settings)
        app = create_app(app_settings, run_executor=False)
        with portal.wrap_async_context_manager(app.router.lifespan_context(app)):
            transport = httpx.ASGITransport(app)
            client = httpx.AsyncClient(transport=transport, base_url="http://payhook.test")
            yield Service(portal, client)
            portal.call(client.aclose)


# --- strategies -------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
tricky_text = (
    st.text(max_size=40)
    | st.text(
        st.characters(codec=None, categories=["Cc", "Cf", "Cs", "Zs", "Zl", "Co"]), max_size=5
    )
    | st.integers(250, 260).map(lambda n: "é" * n)
    | st.sampled_from(["", " ", "..", "a/b", "%2F", "?x=1", "#f", "\u202eevil", "\u2067x", "null"])
)
identifiers = st.from_regex(r"[A-Za-z0-9_]{1,40}", fullmatch=True) | tricky_text | json_scalars
decimals = st.decimals(allow_nan=False, allow_infinity=False)
amount_texts = (
    decimals.map(str)
    | decimals.map(lambda d: f"{d:e}")
    | st.integers(-(10**45), 10**45).map(str)
    | st.floats(allow_nan=False, allow_infinity=False).map(repr)
    | st.builds(lambda i, f: f"{i}.{f}", st.integers(0, 10**21), st.integers(0, 10**20))
    | st.sampled_from(
        [
            "0",
            "-0",
            "0.0",
            "-1",
            "1e400",
            "1E-400",
            "1e19",
            "1e20",
            "99999999999999999999",
            "100000000000000000000",
            "0.000000000000000001",
            "0.0000000000000000001",
            '"100"',
            "true",
            "null",
            "[]",
            "{}",
        ]
    )
)
currencies = (
    st.sampled_from(sorted(known_currencies()))
    | st.from_regex(r"[A-Za-z]{3}", fullmatch=True)
    | st.text(max_size=5)
    | json_scalars
)


def _member(key: str, value: Any) -> str:
    text = value if key == "amount" else json.dumps(value)
    return f"{json.dumps(key)}:{text}"


valid_identifiers = st.from_regex(r"[A-Za-z0-9_]{1,40}", fullmatch=True) | st.text(
    st.characters(exclude_categories=["Cc", "Cs"]), min_size=1, max_size=255
)
valid_amounts = st.integers(1, 10**20 - 1).map(str) | st.builds(
    "{}.{}".format, st.integers(0, 10**20 - 1), st.from_regex(r"[0-9]{0,17}[1-9]", fullmatch=True)
)
FIELD_STRATEGIES = {
    "transaction_id": (valid_identifiers, identifiers),
    "source_account": (valid_identifiers, identifiers),
    "destination_account": (valid_identifiers, identifiers),
    "amount": (valid_amounts, amount_texts),
    "currency": (st.sampled_from(sorted(known_currencies())), currencies),
}


@st.composite
def near_valid_bodies(draw: st.DrawFn) -> tuple[dict[str, Any], bytes]:
    """A transaction object in which some fields are tricky values or left out."""
    fields = {}
    for key, (valid, tricky) in FIELD_STRATEGIES.items():
        # Mostly valid, so that a good share of the bodies is accepted and round-trips.
        kind = draw(st.sampled_from(["valid", "valid", "valid", "valid", "tricky", "missing"]))
        if kind != "missing":
            fields[key] = draw(valid if kind == "valid" else tricky)
    raw = "{" + ",".join(_member(key, value) for key, value in fields.items()) + "}"
    return fields, raw.encode()


# --- the oracle: what the documented contract accepts ----------------------------------------


# Control characters (Cc), lone surrogates, and the bidirectional formatting characters.
REFUSED_IN_IDS = frozenset(
    [*map(chr, range(0x20)), *map(chr, range(0x7F, 0xA0)), *map(chr, range(0xD800, 0xE000))]
    + ["\u061c", "\u200e", "\u200f", *map(chr, range(0x202A, 0x202F))]
    + [*map(chr, range(0x2066, 0x206A))]
)


# README: no look-alikes either: format characters, spaces other than U+0020, a space at either
# end, text not in Unicode NFC.
LOOK_ALIKE_CATEGORIES = frozenset({"Cf", "Zs", "Zl", "Zp"})


def _is_identifier(value: Any) -> TypeGuard[str]:
    return (
        isinstance(value, str)
        and 1 <= len(value) <= 255
        and not REFUSED_IN_IDS & set(value)
        and not any(c != " " and unicodedata.category(c) in LOOK_ALIKE_CATEGORIES for c in value)
        and value == value.strip(" ")
        and unicodedata.is_normalized("NFC", value)
    )


def _is_amount(text: Any) -> bool:
    if not isinstance(text, str) or not text or text[0] not in "-" + string.digits:
        return False
    try:
        amount = Decimal(text)
    except InvalidOperation:
        return False
    exponent = amount.as_tuple().exponent
    return (
        amount.is_finite()
        and amount > 0
        and isinstance(exponent, int)
        and exponent >= -18
        and amount.adjusted() < 20
    )


def acceptable(fields: dict[str, Any]) -> bool:
    """Whether the README's contract accepts these fields."""
    return (
        set(fields) == set(FIELDS)
        and all(_is_identifier(fields[key]) for key in IDENTIFIERS)
        and _is_amount(fields["amount"])
        and fields["currency"] in known_currencies()
    )


# --- the property -----------------------------------------------------------------------------


def _stored_view(service: Service, transaction_id: str) -> dict[str, Any] | None:
    response = service.get(transaction_id)
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    [view] = json.loads(response.text, parse_float=Decimal, parse_int=Decimal)
    return {key: view[key] for key in FIELDS}


def _expected_view(fields: dict[str, Any]) -> dict[str, Any]:
    return {**fields, "amount": Decimal(fields["amount"])}


def expected_status(service: Service, fields: dict[str, Any]) -> int | None:
    """The status the contract requires, or None for "some 4xx other than 409"."""
    if not acceptable(fields):
        return None
    before = service.stored.get(fields["transaction_id"])
    return 202 if before in (None, _expected_view(fields)) else 409


def check_answer(service: Service, fields: dict[str, Any], response: httpx.Response) -> None:
    """202 and stored exactly (or a duplicate of what is), or a 4xx that changed nothing."""
    transaction_id = fields.get("transaction_id")
    before = service.stored.get(transaction_id) if isinstance(transaction_id, str) else None
    event(f"status {response.status_code}")
    if response.status_code == 202:
        assert isinstance(transaction_id, str)
        expected = before or _expected_view(fields)
        assert response.json()["duplicate"] is (before is not None)
        assert _stored_view(service, transaction_id) == expected
        service.stored[transaction_id] = expected
        return
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/problem+json"
    if _is_identifier(transaction_id):
        assert _stored_view(service, transaction_id) == before


@PROPERTY_SETTINGS
@given(body=near_valid_bodies())
def test_near_valid_transactions_are_stored_exactly_or_refused(
    service: Service, body: tuple[dict[str, Any], bytes]
) -> None:
    fields, raw = body
    expected = expected_status(service, fields)
    response = service.post(raw)
    check_answer(service, fields, response)
    if expected is None:
        assert response.status_code in (400, 422), response.text
    else:
        assert response.status_code == expected, response.text


@PROPERTY_SETTINGS
@given(document=json_values | st.dictionaries(st.sampled_from(FIELDS), json_values))
def test_any_json_document_is_refused_unless_it_is_a_transaction(
    service: Service, document: Any
) -> None:
    fields = dict(document) if isinstance(document, dict) else {}
    if "amount" in fields:
        fields["amount"] = json.dumps(fields["amount"])
    expected = expected_status(service, fields)
    response = service.post(json.dumps(document).encode())
    check_answer(service, fields, response)
    if expected is None:
        assert response.status_code in (400, 422), response.text
    else:
        assert response.status_code == expected, response.text
