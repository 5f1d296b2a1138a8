"""Minor units by each provider's rules, converted exactly.

Providers send amounts as integers in "the currency's smallest unit", but which unit that is
differs from ISO 4217 and between providers: Stripe keeps ISK, HUF, TWD and UGX two-decimal in
its API although ISO 4217 gives ISK and UGX none (an ISK amount of 500 is 5 krónur, a UGX
amount of 500 is 5 shillings), while Razorpay and Adyen count UGX in whole shillings as ISO
4217 does. So each provider has a table of the currencies
where it says so, and every other currency falls back to ISO 4217's exponent (the `iso4217`
package, the ISO table itself; CLDR data such as babel's disagrees with it for HUF and IDR).

`to_major` divides by a power of ten exactly (no float, no context rounding).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Context, Decimal
from types import MappingProxyType

import iso4217


class UnknownCurrency(ValueError):
    """Neither the provider's table nor ISO 4217 knows this code."""


def _table(**groups: tuple[str, ...]) -> Mapping[str, int]:
    exponents = {code: int(name[1:]) for name, codes in groups.items() for code in codes}
    return MappingProxyType(exponents)


# https://docs.stripe.com/currencies: "Zero-decimal currencies", "Three-decimal currencies"
# (their amounts end in 0) and "Special cases": ISK is whole krónur, but "backwards compatibility
# requires you to represent it as a two-decimal value" (an amount of 100 is 1 ISK), and so is
# UGX although the zero-decimal list names it too (to charge 5 UGX, the amount is 500); HUF and
# TWD charges are two-decimal (zero-decimal only for payouts).
STRIPE: Mapping[str, int] = _table(
    e0=(
        "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA",
        "PYG", "RWF", "VND", "VUV", "XAF", "XOF", "XPF",
    ),
    e2=("HUF", "ISK", "TWD", "UGX"),
    e3=("BHD", "JOD", "KWD", "OMR", "TND"),
)  # fmt: skip

# Razorpay's supported-currency table (razorpay.com/docs/payments/international-payments), all
# of it: "three decimal currencies, such as KWD, BHD and OMR" end in 0 like Stripe's.
RAZORPAY: Mapping[str, int] = _table(
    e0=(
        "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW",
        "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF",
    ),
    e2=(
        "AED", "ALL", "AMD", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN", "BMD", "BND",
        "BOB", "BRL", "BSD", "BTN", "BWP", "BZD", "CAD", "CHF", "CNY", "COP", "CRC", "CUP",
        "CVE", "CZK", "DKK", "DOP", "DZD", "EGP", "ETB", "EUR", "FJD", "GBP", "GHS", "GIP",
        "GMD", "GTQ", "GYD", "HKD", "HNL", "HRK", "HTG", "HUF", "IDR", "ILS", "INR", "JMD",
        "KES", "KGS", "KHR", "KYD", "KZT", "LAK", "LKR", "LRD", "LSL", "MAD", "MDL", "MGA",
        "MKD", "MMK", "MNT", "MOP", "MUR", "MVR", "MWK", "MXN", "MYR", "MZN", "NAD", "NGN",
        "NIO", "NOK", "NPR", "NZD", "PEN", "PGK", "PHP", "PKR", "PLN", "QAR", "RON", "RSD",
        "RUB", "SAR", "SCR", "SEK", "SGD", "SLL", "SOS", "SVC", "SZL", "THB", "TRY", "TTD",
        "TWD", "TZS", "UAH", "USD", "UYU", "UZS", "XCD", "YER", "ZAR", "ZMW",
    ),
    e3=("BHD", "IQD", "JOD", "KWD", "OMR", "TND"),
)  # fmt: skip

# https://docs.adyen.com/development-resources/currency-codes: CLP and ISK two decimals, CVE
# and IDR none ("differs from standard"), and the zero-, one- and three-decimal currencies
# Adyen lists (the same lists as its web library's currency-decimals table).
ADYEN: Mapping[str, int] = _table(
    e0=(
        "BYR", "CVE", "DJF", "GNF", "IDR", "JPY", "KMF", "KRW",
        "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF",
    ),
    e1=("MRO",),
    e2=("CLP", "ISK"),
    e3=("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"),
)  # fmt: skip

# PayPal's currency codes reference: HUF, JPY and TWD take no decimals ("decimal amounts cause
# an error"); the other currencies PayPal lists have two, as ISO 4217 gives them.
PAYPAL: Mapping[str, int] = _table(e0=("HUF", "JPY", "TWD"))

TABLES: Mapping[str, Mapping[str, int]] = MappingProxyType(
    {"stripe": STRIPE, "razorpay": RAZORPAY, "adyen": ADYEN, "paypal": PAYPAL}
)
"""Each provider's exceptions to ISO 4217, by provider name."""

# As the generic contract: at most 20 integer and 18 fractional digits.
_DECIMAL = re.compile(r"[0-9]{1,20}(?:\.[0-9]{1,18})?")
_EXACT = Context(prec=60)  # room for every digit the pattern admits, shifted: nothing rounds


def iso_exponent(currency: str) -> int:
    """ISO 4217's minor-unit exponent of an active currency code (upper case)."""
    try:
        exponent = iso4217.Currency(currency).exponent
    except ValueError:
        raise UnknownCurrency(f"{currency!r} is not an ISO 4217 currency code") from None
    if exponent is None:  # XAU, XDR and kin have no minor unit
        raise UnknownCurrency(f"{currency!r} has no minor unit in ISO 4217")
    return exponent


def exponent(provider: str, currency: str) -> int:
    """How many decimals `provider` puts in the integer amounts of `currency`."""
    code = currency.upper()
    table = TABLES.get(provider, {})
    return table[code] if code in table else iso_exponent(code)


def to_major(provider: str, minor: int, currency: str) -> Decimal:
    """`minor` units of `currency`, by `provider`'s rules, as an exact decimal in major units."""
    sign, digits, power = Decimal(minor).as_tuple()
    assert isinstance(power, int)  # an int's Decimal is always finite
    return Decimal((sign, digits, power - exponent(provider, currency)))


def parse_major(provider: str, value: str, currency: str) -> tuple[Decimal, int]:
    """A decimal string in major units (PayPal's `"10.99"`) as (exact Decimal, minor units).

    Raises ValueError for anything but plain non-negative digits, and for more fractional
    digits than the currency has (`"10.999"` USD is not an amount, and is not rounded).
    """
    if not _DECIMAL.fullmatch(value):
        raise ValueError(f"{value!r} is not a plain decimal amount")
    major = Decimal(value)
    scaled = major.scaleb(exponent(provider, currency), context=_EXACT)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{value!r} has more decimals than {currency.upper()} allows")
    return major, int(scaled)
