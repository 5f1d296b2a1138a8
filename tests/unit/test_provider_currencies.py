"""Minor units by each provider's table, ISO 4217 otherwise, converted exactly."""

from __future__ import annotations

from decimal import Decimal

import hypothesis.strategies as st
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings

from payhook.providers import currencies


@pytest.mark.parametrize(
    ("currency", "exponent", "minor", "major"),
    [
        ("USD", 2, 1099, "10.99"),
        ("JPY", 0, 500, "500"),
        ("KWD", 3, 5120, "5.120"),
        ("BHD", 3, 1000, "1.000"),
        # Stripe's special cases: two decimals where ISO 4217 gives ISK none...
        ("ISK", 2, 500, "5.00"),
        ("HUF", 2, 123450, "1234.50"),
        ("TWD", 2, 10000, "100.00"),
        # ...and UGX: whole shillings, but sent with two decimals for backwards compatibility
        # (Stripe's "Special cases": to charge 5 UGX, the amount is 500).
        ("UGX", 2, 500, "5.00"),
        ("UGX", 2, 500000, "5000.00"),
        # Not in Stripe's table: ISO 4217.
        ("INR", 2, 3000, "30.00"),
        ("CLF", 4, 12345, "1.2345"),
    ],
)
def test_stripe_amounts_by_stripes_rules(
    currency: str, exponent: int, minor: int, major: str
) -> None:
    assert currencies.exponent("stripe", currency) == exponent
    converted = currencies.to_major("stripe", minor, currency)
    assert str(converted) == major
    assert converted == Decimal(major)


def test_lowercase_codes_as_stripe_sends_them() -> None:
    assert currencies.to_major("stripe", 1099, "usd") == Decimal("10.99")


def test_the_tables_disagree_with_iso_where_the_providers_say_so() -> None:
    assert currencies.iso_exponent("ISK") == 0
    assert currencies.exponent("stripe", "ISK") == 2
    assert currencies.iso_exponent("UGX") == 0
    assert currencies.exponent("stripe", "UGX") == 2
    assert currencies.exponent("a-provider-without-a-table", "ISK") == 0


@pytest.mark.parametrize("code", ["ABC", "XAU", "US", ""])
def test_unknown_or_unit_less_currencies_are_refused(code: str) -> None:
    with pytest.raises(currencies.UnknownCurrency):
        currencies.exponent("stripe", code)


@hypothesis_settings(database=None, deadline=None, max_examples=300)
@given(
    minor=st.integers(min_value=0, max_value=10**30),
    currency=st.sampled_from(["JPY", "KWD", "HUF", "ISK", "TWD", "USD", "UGX", "CLF"]),
)
def test_minor_to_major_is_exact(minor: int, currency: str) -> None:
    exponent = currencies.exponent("stripe", currency)
    major = currencies.to_major("stripe", minor, currency)
    assert major.as_tuple().exponent == -exponent  # exactly the currency's decimals
    assert int(str(major).replace(".", "")) == minor  # the same digits, the point moved
    if minor < 10**18:  # within the 20 integer digits parse_major admits
        assert currencies.parse_major("stripe", str(major), currency) == (major, minor)


@pytest.mark.parametrize(
    ("value", "currency", "expected"),
    [("10.99", "USD", 1099), ("10.9", "USD", 1090), ("100", "JPY", 100), ("1.500", "KWD", 1500)],
)
def test_parse_major_gives_the_exact_minor_amount(value: str, currency: str, expected: int) -> None:
    assert currencies.parse_major("paypal", value, currency) == (Decimal(value), expected)


@pytest.mark.parametrize(
    ("value", "currency"),
    [("10.999", "USD"), ("1.5", "JPY"), ("-1.00", "USD"), ("1e3", "USD"), (" 1.00", "USD"),
     ("NaN", "USD"), ("1.", "USD"), ("", "USD")],
)  # fmt: skip
def test_parse_major_refuses_what_is_not_an_amount(value: str, currency: str) -> None:
    with pytest.raises(ValueError, match=r"decimal|decimals"):
        currencies.parse_major("paypal", value, currency)
