"""The plan catalog: what a subscriber can buy and the Stripe price behind each plan."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, case
from sqlalchemy.orm import InstrumentedAttribute

from saas.core.formatting import plan_label


@dataclass(frozen=True)
class Plan:
    """One plan; `price_id` is the Stripe Price the subscription is created with."""

    key: str
    name: str
    price_id: str
    amount_cents: int
    currency: str
    interval: str  # "month" or "year"

    @property
    def label(self) -> str:
        """The plan's name as people read it everywhere ("Pro (yearly)")."""
        return plan_label(self.name, self.interval)


# The same ids exist in the Stripe account (and in the emulator, which reads this catalog).
PLANS: dict[str, Plan] = {
    plan.key: plan
    for plan in (
        Plan("starter", "Starter", "price_starter_monthly", 900, "usd", "month"),
        Plan("pro", "Pro", "price_pro_monthly", 2900, "usd", "month"),
        Plan("pro-yearly", "Pro", "price_pro_yearly", 29000, "usd", "year"),
    )
}


def monthly_cents(amount_cents: int, interval: str) -> int:
    """The MRR of a subscription or price, the one definition: a yearly amount is spread over
    twelve months, rounded to the nearest cent (half up), per subscription."""
    return (amount_cents + 6) // 12 if interval == "year" else amount_cents


def monthly_cents_sql(amount_cents: ColumnElement[int] | InstrumentedAttribute[int],
                      interval: ColumnElement[str] | InstrumentedAttribute[str]) -> ColumnElement[int]:
    """monthly_cents in SQL, for set-based sums (integer division, as above)."""
    return case((interval == "year", (amount_cents + 6) // 12), else_=amount_cents)


def plan_for_price(price_id: str) -> Plan | None:
    """The plan a Stripe price belongs to (webhooks name prices, not plans)."""
    return next((plan for plan in PLANS.values() if plan.price_id == price_id), None)


def label_for(plan_key: str) -> str:
    """The label of a subscription's plan key; a key the catalog no longer has (a price id) as it is."""
    plan = PLANS.get(plan_key)
    return plan.label if plan else plan_key
