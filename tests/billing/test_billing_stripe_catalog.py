"""The plan catalog in a Stripe account (the strict emulator): prices found by lookup_key, `saas stripe
sync-plans` creating products and prices once, changing nothing the second time, and a changed amount
making a new price that takes over the lookup_key."""
from __future__ import annotations

import uuid

import pytest

from billing import catalog, gateway
from billing.plans import PLANS, Plan
from saas.cli.stripe import stripe_group
from tests.helpers import emulator_settled, newest_emulator_event


@pytest.fixture(autouse=True)
def settled(stripe_emulator):
    """The product and price events each test causes are stored before the next test starts."""
    before = newest_emulator_event(stripe_emulator)
    yield
    emulator_settled(stripe_emulator, before)


def plans(suffix: str, pro_amount: int = 2900) -> list[Plan]:
    return [Plan(f"starter-{suffix}", "Starter", "unused", 900, "usd", "month"),
            Plan(f"pro-yearly-{suffix}", "Pro", "unused", pro_amount, "usd", "year")]


def test_sync_creates_then_changes_nothing_then_moves_the_lookup_key(stripe_emulator):
    suffix = uuid.uuid4().hex[:8]
    first = catalog.sync_plans(plans(suffix))
    assert len(first) == 4 and sum("product" in line for line in first) == 2
    assert catalog.sync_plans(plans(suffix)) == []
    old = catalog.find_price(plans(suffix)[1])
    assert (old["unit_amount"], old["recurring"]["interval"], old["product"]["name"]) == \
        (2900, "year", "Pro (yearly)")  # named in Stripe as on every page

    changed = catalog.sync_plans(plans(suffix, pro_amount=31000))
    assert len(changed) == 1 and f"lookup_key moved from {old['id']}" in changed[0]
    new = catalog.find_price(plans(suffix)[1])
    assert new["id"] != old["id"] and new["unit_amount"] == 31000 and new["product"]["id"] == old["product"]["id"]
    assert catalog.sync_plans(plans(suffix, pro_amount=31000)) == []


def test_a_renamed_plan_renames_its_product(stripe_emulator):
    suffix = uuid.uuid4().hex[:8]
    catalog.sync_plans(plans(suffix))
    renamed = [Plan(f"starter-{suffix}", "Starter (new)", "unused", 900, "usd", "month")]
    assert catalog.sync_plans(renamed) == [f"starter-{suffix}: product prod_starter_{suffix} renamed to "
                                           "'Starter (new)'"]
    assert catalog.sync_plans(renamed) == []


def test_a_plan_without_a_price_is_unavailable(stripe_emulator):
    with pytest.raises(catalog.PlanUnavailable):
        catalog.find_price(Plan(f"nothing-{uuid.uuid4().hex[:8]}", "N", "unused", 1, "usd", "month"))


def test_a_lookup_key_is_not_taken_without_transfer(stripe_emulator):
    suffix = uuid.uuid4().hex[:8]
    catalog.sync_plans(plans(suffix))
    with pytest.raises(gateway.GatewayError, match="already uses that lookup key"):
        gateway.create_price(f"prod_starter_{suffix}", f"starter-{suffix}", 1000, "usd", "month", "S", False)


def test_the_command_keeps_the_catalog_in_sync_and_a_second_run_changes_nothing(stripe_emulator, runner):
    first = runner.invoke(stripe_group, ["sync-plans"])
    assert first.exit_code == 0, first.output
    second = runner.invoke(stripe_group, ["sync-plans"])
    assert second.exit_code == 0 and second.output == f"{len(PLANS)} plans in sync (0 changes).\n"
    for plan in PLANS.values():
        price = catalog.find_price(plan)
        assert (price["unit_amount"], price["currency"], price["recurring"]["interval"]) == \
            (plan.amount_cents, plan.currency, plan.interval)
