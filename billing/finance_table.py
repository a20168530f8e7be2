"""The finance summary as one table: each figure this period, the previous period and the change.

The /finance page and the summary email (HTML and text) both show these rows, so they read the
same. Amounts are money (saas.core.formatting.money); the CSV keeps cents.
"""
from __future__ import annotations

from typing import Any

from saas.core.formatting import money

# (key in a currency's figures, label, is money)
CURRENCY_FIGURES = (
    ("mrr_cents", "MRR", True),
    ("new_mrr_cents", "New MRR", True),
    ("expansion_mrr_cents", "Expansion MRR", True),
    ("contraction_mrr_cents", "Contraction MRR", True),
    ("churn_mrr_cents", "Churned MRR", True),
    ("reactivation_mrr_cents", "Reactivation MRR", True),
    ("failed_payments", "Failed payments", False),
    ("failed_amount_cents", "Failed payments, amount", True),
    ("recovered_payments", "Recovered payments", False),
    ("recovered_amount_cents", "Recovered payments, amount", True),
    ("expiring_cards_mrr_cents", "MRR on cards expiring in 30 days", True),
)
COUNTS = (
    ("active_subscriptions", "Active subscriptions"),
    ("trialing_subscriptions", "Trialing subscriptions"),
    ("new_subscriptions", "New subscriptions"),
    ("cancelled_subscriptions", "Cancelled subscriptions"),
    ("expiring_cards", "Cards expiring in 30 days"),
    ("reminders_sent", "Inactivity reminders sent"),
    ("accounts_purged", "Accounts purged"),
    ("purges_pending", "Purges pending"),
)


def _change(now: int | None, before: int | None, currency: str | None) -> str:
    if now is None or before is None:
        return "—"
    delta = now - before
    if delta == 0:
        return "no change"
    sign = "+" if delta > 0 else "−"
    return f"{sign}{money(abs(delta), currency)}" if currency else f"{sign}{abs(delta)}"


def _row(label: str, now: int | None, before: int | None, currency: str | None) -> dict[str, str]:
    def show(value: int | None) -> str:
        if value is None:
            return "—"
        return money(value, currency) if currency else str(value)

    return {"label": label, "value": show(now), "previous": show(before), "change": _change(now, before, currency)}


def summary_rows(figures: dict[str, Any], previous: dict[str, Any] | None) -> list[dict[str, str]]:
    """Rows of {"label", "value", "previous", "change"}, with {"section": title} rows between groups."""
    rows: list[dict[str, str]] = []
    before = previous or {}
    for currency, values in figures.get("currencies", {}).items():
        rows.append({"section": currency.upper()})
        old = before.get("currencies", {}).get(currency, {})
        for key, label, is_money in CURRENCY_FIGURES:
            rows.append(_row(label, values.get(key), old.get(key) if previous else None,
                             currency if is_money else None))
    rows.append({"section": "Subscriptions and accounts"})
    for key, label in COUNTS:
        rows.append(_row(label, figures.get(key), before.get(key) if previous else None, None))
    return rows
