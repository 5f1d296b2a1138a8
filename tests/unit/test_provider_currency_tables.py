"""Razorpay's, Adyen's and PayPal's exponent tables: where they differ from ISO and each other."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payhook.providers import currencies, fields
from payhook.providers.fields import Unmappable

FIXTURES = Path(__file__).parents[1] / "fixtures"
PROVIDERS = ("razorpay", "adyen", "paypal")

# Provider -> currency -> exponent, as each provider documents it (ISO 4217 where silent). UGX
# is whole shillings for all three, as in ISO 4217: only Stripe sends it with two decimals.
EXPECTED = {
    "razorpay": {
        "JPY": 0, "KWD": 3, "CLP": 0, "ISK": 0, "HUF": 2, "INR": 2, "BHD": 3, "CVE": 2, "UGX": 0,
    },
    "adyen": {
        "JPY": 0, "KWD": 3, "CLP": 2, "ISK": 2, "HUF": 2, "CVE": 0, "IDR": 0, "EUR": 2, "UGX": 0,
    },
    "paypal": {
        "JPY": 0, "KWD": 3, "CLP": 0, "ISK": 0, "HUF": 0, "TWD": 0, "USD": 2, "EUR": 2, "UGX": 0,
    },
}  # fmt: skip


@pytest.mark.parametrize(
    ("provider", "currency", "places"),
    [(p, c, n) for p, codes in EXPECTED.items() for c, n in codes.items()],
)
def test_exponents_as_each_provider_documents_them(
    provider: str, currency: str, places: int
) -> None:
    assert currencies.exponent(provider, currency) == places


def test_the_razorpay_table_is_razorpays_published_one() -> None:
    published = {}
    for line in (FIXTURES / "razorpay" / "currencies.tsv").read_text().splitlines():
        code, places = line.split("\t")
        published[code] = int(places)
    assert dict(currencies.RAZORPAY) == published


@pytest.mark.parametrize(
    ("provider", "code"), [("adyen", "XXQ"), ("paypal", "XAU"), ("razorpay", "usd1")]
)
def test_a_currency_without_a_known_exponent_is_unmappable(provider: str, code: str) -> None:
    with pytest.raises(Unmappable):
        fields.known_currency(provider, code)


@pytest.mark.parametrize(
    ("provider", "minor", "currency", "major"),
    [
        ("razorpay", 50000, "INR", "500.00"),
        ("razorpay", 295990, "KWD", "295.990"),
        ("razorpay", 295, "JPY", "295"),
        ("adyen", 279000, "ISK", "2790.00"),
        ("adyen", 100, "CLP", "1.00"),
        ("adyen", 1000, "CVE", "1000"),
        ("paypal", 1500, "HUF", "1500"),
    ],
)
def test_minor_units_become_exact_major_amounts(
    provider: str, minor: int, currency: str, major: str
) -> None:
    exact = currencies.to_major(provider, minor, currency)
    assert exact == Decimal(major)
    assert str(exact) == major


listed = st.sampled_from(
    sorted(
        {(p, c) for p in PROVIDERS for c in currencies.TABLES[p]}
        | {(p, c) for p, codes in EXPECTED.items() for c in codes}
    )
)


@given(listed, st.integers(min_value=0, max_value=fields.MAX_MINOR))
def test_minor_to_major_and_back_is_exact_for_every_listed_currency(
    currency_of: tuple[str, str], minor: int
) -> None:
    provider, currency = currency_of
    major = currencies.to_major(provider, minor, currency)

    assert major.as_tuple().exponent == -currencies.exponent(provider, currency)
    assert fields.minor_of_major(provider, f"{major:f}", currency) == minor


@given(
    st.sampled_from(sorted({*currencies.PAYPAL, *EXPECTED["paypal"]})),
    st.integers(min_value=0, max_value=10**12),
    st.integers(min_value=1, max_value=9),
)
def test_a_paypal_amount_with_a_digit_beyond_the_currency_is_never_rounded(
    currency: str, minor: int, extra: int
) -> None:
    major = f"{currencies.to_major('paypal', minor, currency):f}"
    too_fine = major + ("" if "." in major else ".") + str(extra)
    with pytest.raises(Unmappable, match="decimals"):
        fields.minor_of_major("paypal", too_fine, currency)
