"""The plan catalog (billing/plans.py) in a Stripe account: one product and one price per plan, the price
found by its `lookup_key` (the plan key), so no price id is configured anywhere. Products and prices are
named by the plan's label ("Pro (yearly)"), so Stripe's invoices, pages and PDFs name plans as ours do.

`sync_plans` makes the account match the catalog and is safe to run again: a plan whose price already has
the plan's amount, currency and interval changes nothing; a changed amount (prices are immutable) makes a
new price and moves the lookup_key to it (`transfer_lookup_key`). Subscriptions on the old price keep it.
"""
from __future__ import annotations

from collections.abc import Iterable

from billing import gateway
from billing.plans import Plan


class PlanUnavailable(gateway.GatewayError):
    """No active price in the account has the plan's lookup_key (run `saas stripe sync-plans`)."""


def product_id(plan: Plan) -> str:
    return "prod_" + plan.key.replace("-", "_")


def find_price(plan: Plan) -> dict:
    """The plan's active price, by lookup_key."""
    prices = gateway.find_prices([plan.key])
    if not prices:
        raise PlanUnavailable(f"no active price has the lookup_key {plan.key!r}")
    return prices[0]


def _matches(price: dict, plan: Plan) -> bool:
    recurring = price.get("recurring") or {}
    return (price.get("unit_amount"), price.get("currency"), recurring.get("interval"),
            recurring.get("interval_count", 1)) == (plan.amount_cents, plan.currency, plan.interval, 1)


def _ensure_product(plan: Plan, current: dict | str | None) -> tuple[str, list[str]]:
    """The product the plan's price belongs to, created or renamed as needed; and what was done."""
    if isinstance(current, dict):
        if current.get("name") == plan.label and current.get("active"):
            return current["id"], []
        gateway.update_product(current["id"], plan.label)
        return current["id"], [f"{plan.key}: product {current['id']} renamed to {plan.label!r}"]
    if isinstance(current, str):
        return current, []
    try:
        gateway.create_product(product_id(plan), plan.label)
        return product_id(plan), [f"{plan.key}: product {product_id(plan)} created"]
    except gateway.NotFound:
        raise
    except gateway.GatewayError:  # already there (an earlier run stopped before its price was made)
        gateway.update_product(product_id(plan), plan.label)
        return product_id(plan), []


def sync_plans(plans: Iterable[Plan]) -> list[str]:
    """Create or update the products and prices of `plans`; the changes made, one line each (none: in sync)."""
    plans = list(plans)
    found: dict[str, dict] = {}
    for start in range(0, len(plans), 10):  # Stripe takes at most 10 lookup_keys per list
        for listed in gateway.find_prices([p.key for p in plans[start:start + 10]]):
            found[listed["lookup_key"]] = listed
    changes: list[str] = []
    for plan in plans:
        price = found.get(plan.key)
        prod, done = _ensure_product(plan, price["product"] if price else None)
        changes += done
        if price is not None and _matches(price, plan):
            continue
        new = gateway.create_price(prod, plan.key, plan.amount_cents, plan.currency, plan.interval, plan.label,
                                   transfer=price is not None)
        changes.append(f"{plan.key}: price {new['id']} created ({plan.amount_cents} {plan.currency} per "
                       f"{plan.interval})" + (f", lookup_key moved from {price['id']}" if price else ""))
    return changes
