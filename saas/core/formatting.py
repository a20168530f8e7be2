"""How values read to people, in pages and emails alike: the one definition of each.

The web app and the email renderer register these as template filters under the same names.
"""
from __future__ import annotations

from datetime import date, datetime, tzinfo

BRAND_NAMES = {"amex": "American Express", "diners": "Diners Club", "jcb": "JCB", "mastercard": "Mastercard",
               "unionpay": "UnionPay", "visa": "Visa", "discover": "Discover"}


def brand_name(brand: str | None) -> str:
    """Stripe's card brand code as people write it ("amex" -> "American Express")."""
    brand = brand or ""
    return BRAND_NAMES.get(brand.lower(), brand.title())


def money(cents: int | None, currency: str = "usd") -> str:
    """12345, "usd" -> "123.45 USD"."""
    return "" if cents is None else f"{cents / 100:,.2f} {currency.upper()}"


def plan_label(name: str, interval: str) -> str:
    """A plan as every page and email names it: "Pro" for the monthly plan, "Pro (yearly)" for the yearly one."""
    return f"{name} (yearly)" if interval == "year" else name


def long_date(value: date | datetime | str | None, tz: tzinfo | None = None) -> str:
    """The one date format of pages and emails: "2 December 2026". A datetime is read in `tz` (APP_TIMEZONE)
    when given; an ISO string (an email's JSON context) is parsed first."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        written = value
        try:
            value = datetime.fromisoformat(written) if "T" in written else date.fromisoformat(written)
        except ValueError:  # not a date after all (an old row's context): as it was written
            return written
    if isinstance(value, datetime) and tz is not None and value.tzinfo is not None:
        value = value.astimezone(tz)
    return f"{value.day} {value:%B %Y}"


FILTERS = {"brand": brand_name, "money": money, "plan_label": plan_label, "long_date": long_date}
