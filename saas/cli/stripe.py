"""`saas stripe`: the Stripe account's side of the product (the catalog's products and prices)."""
from __future__ import annotations

import click

from billing.catalog import sync_plans
from billing.gateway import GatewayError
from billing.plans import PLANS
from saas.cli.settings import NO_SERVICES, load_settings


@click.group("stripe")
def stripe_group() -> None:
    """The Stripe account (STRIPE_SECRET_KEY, STRIPE_API_BASE)."""


@stripe_group.command("sync-plans")
def sync_plans_command() -> None:
    """Create or update a product and a price (lookup_key = plan key) for each plan; safe to run again."""
    load_settings(needs=NO_SERVICES)
    try:
        changes = sync_plans(PLANS.values())
    except GatewayError as exc:
        raise click.ClickException(f"Stripe refused or could not be reached: {exc}") from exc
    for line in changes:
        click.echo(line)
    click.echo(f"{len(PLANS)} plans in sync ({len(changes)} changes).")
