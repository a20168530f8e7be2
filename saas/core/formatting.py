"""How values read to people, in pages and emails alike: the one definition of each.

The web app and the email renderer register these as template filters under the same names.
"""
from __future__ import annotations

BRAND_NAMES = {"amex": "American Express", "diners": "Diners Club", "jcb": "JCB", "mastercard": "Mastercard",
               "unionpay": "UnionPay", "visa": "Visa", "discover": "Discover"}


def brand_name(brand: str | None) -> str:
    """Stripe's card brand code as people write it ("amex" -> "American Express")."""
    brand = brand or ""
    return BRAND_NAMES.get(brand.lower(), brand.title())


def money(cents: int | None, currency: str = "usd") -> str:
    """12345, "usd" -> "123.45 USD"."""
    return "" if cents is None else f"{cents / 100:,.2f} {currency.upper()}"


FILTERS = {"brand": brand_name, "money": money}
