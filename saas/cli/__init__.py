"""The `saas` command line: Flask's own commands plus dev, db, seed, jobs and stripe."""
from __future__ import annotations

import sys
from datetime import UTC, datetime

import click

from saas.cli.errors import SaasGroup
from saas.cli.jobs import jobs_group
from saas.cli.settings import load_settings
from saas.cli.stripe import stripe_group
from saas.core.migrate import upgrade
from saas.dev.launcher import run_dev
from saas.dev.seed import DEV_PASSWORD
from saas.dev.seed import seed_demo as run_seed
from saas.web.app import create_app


def _create_app():
    return create_app(load_settings())


@click.group(cls=SaasGroup, create_app=_create_app, add_default_commands=True)
def cli() -> None:
    """The SaaS billing maintenance service.

    Each command reads only the settings it uses (docs/operations.md); a mistake prints one
    `Error: …` line and exits non-zero.
    """


@cli.command("dev", with_appcontext=False)
@click.option("--port", default=5000, show_default=True, help="Web port on 127.0.0.1.")
@click.option("--no-worker", is_flag=True, help="Do not start the Celery worker and beat.")
def dev_command(port: int, no_worker: bool) -> None:
    """Run every part on loopback (PostgreSQL, Redis, SMTP sink, Stripe emulator, web, worker, beat)."""
    sys.exit(run_dev(web_port=port, with_worker=not no_worker))


@cli.group("db", cls=click.Group)
def db_group() -> None:
    """Database schema."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply Alembic migrations up to REVISION."""
    upgrade(load_settings(needs={"DATABASE_URL"}).database_url, revision=revision)
    click.echo(f"Database upgraded to {revision}.")


@cli.group("seed", cls=click.Group)
def seed_group() -> None:
    """Demo data."""


@seed_group.command("demo")
@click.option("--today", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Date the personas' histories are relative to, at the current time of day (default: now).")
@click.option("--password", default=None, help="Set every persona's password (dev only).")
@click.option("--reset", is_flag=True, help="Put every persona back into its story: dates, warnings, exemptions, "
                                            "billing and password (dev only).")
def seed_demo(today, password: str | None, reset: bool) -> None:
    """Create the demo personas; running it again changes nothing (unless --reset)."""
    settings = load_settings()
    if settings.is_production:
        raise click.UsageError("demo personas are for dev and test only (SAAS_ENV=production refuses them)")
    now = datetime.now(settings.tz)
    if today:
        now = datetime.combine(today.date(), now.timetz())
    created = run_seed(settings, now.astimezone(UTC), password or DEV_PASSWORD, reset_password=bool(password),
                       reset=reset)
    click.echo(f"Demo personas {'reset' if reset else 'ready'} ({created} created).")


def main() -> None:
    cli()


cli.add_command(jobs_group)
cli.add_command(stripe_group)
