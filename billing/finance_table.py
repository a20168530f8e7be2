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
    if "dunning" in figures:
        rows.extend(_dunning_rows(figures, before.get("dunning") if previous else None))
    return rows


DUNNING_COUNTS = (("opened", "Cases opened"), ("recovered", "Recovered"))
DUNNING_CAUSE_LABELS = (("pay_now", "Recovered by Pay now"), ("card_updated", "Recovered by a card update"),
                        ("automatic_retry", "Recovered by an automatic retry"),
                        ("authentication", "Recovered by authentication"))
DUNNING_ENDS = (("lost", "Lost (final action)"), ("written_off", "Written off"))


def _dunning_rows(figures: dict[str, Any], old: dict[str, Any] | None) -> list[dict[str, str]]:
    """The dunning funnel of the period (billing.finance.dunning_funnel). Its MRR is shown in the
    period's currency when it has one (the catalog sells in one); the rate in percent."""
    funnel, before = figures["dunning"], old or {}
    currencies = list(figures.get("currencies", {}))
    currency = currencies[0] if len(currencies) == 1 else None
    rows: list[dict[str, str]] = [{"section": "Dunning: failed renewals being won back"}]
    for key, label in DUNNING_COUNTS:
        rows.append(_row(label, funnel.get(key), before.get(key) if old else None, None))
    causes, old_causes = funnel.get("recovered_by_cause") or {}, before.get("recovered_by_cause") or {}
    for key, label in DUNNING_CAUSE_LABELS:
        rows.append(_row(label, causes.get(key, 0), old_causes.get(key, 0) if old else None, None))
    for key, label in DUNNING_ENDS:
        rows.append(_row(label, funnel.get(key), before.get(key) if old else None, None))
    mrr_row = _row("Recovered MRR", funnel.get("recovered_mrr_cents"), before.get("recovered_mrr_cents") if old else None,
                   currency)
    if currency is None:  # no single currency to name: cents, said so
        mrr_row["label"] = "Recovered MRR (cents)"
    rows.append(mrr_row)
    rows.append(_rate_row(funnel.get("recovery_rate"), before.get("recovery_rate") if old else None))
    return rows


def _rate_row(now: float | None, before: float | None) -> dict[str, str]:
    def show(rate: float | None) -> str:
        return "—" if rate is None else f"{rate * 100:.0f}%"

    if now is None or before is None:
        change = "—"
    else:
        points = round((now - before) * 100)
        change = "no change" if points == 0 else f"{'+' if points > 0 else '−'}{abs(points)} points"
    return {"label": "Recovery rate", "value": show(now), "previous": show(before), "change": change}
