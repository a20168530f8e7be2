"""The `saas` command line: Flask's own commands plus dev, db, seed and jobs."""
from __future__ import annotations

import sys
from datetime import datetime, timezone

import click
from flask.cli import FlaskGroup

from saas.settings import SettingsError


def _create_app():
    from saas.app import create_app

    try:
        return create_app()
    except SettingsError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)


@click.group(cls=FlaskGroup, create_app=_create_app, add_default_commands=True)
def cli() -> None:
    """The SaaS billing maintenance service."""


@cli.command("dev", with_appcontext=False)
@click.option("--port", default=5000, show_default=True, help="Web port on 127.0.0.1.")
@click.option("--no-worker", is_flag=True, help="Do not start the Celery worker and beat.")
def dev_command(port: int, no_worker: bool) -> None:
    """Run every part on loopback (PostgreSQL, Redis, SMTP sink, Stripe emulator, web, worker, beat)."""
    from saas.dev import run_dev

    sys.exit(run_dev(web_port=port, with_worker=not no_worker))


@cli.group("db", cls=click.Group)
def db_group() -> None:
    """Database schema."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply Alembic migrations up to REVISION."""
    from saas.migrate import upgrade

    upgrade(revision=revision)
    click.echo(f"Database upgraded to {revision}.")


@cli.group("seed", cls=click.Group)
def seed_group() -> None:
    """Demo data."""


@seed_group.command("demo")
@click.option("--today", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Date the personas' histories are relative to, at the current time of day (default: now).")
@click.option("--password", default=None, help="Set every persona's password (dev only).")
def seed_demo(today, password: str | None) -> None:
    """Create the demo personas; running it again changes nothing."""
    from saas.seed import DEV_PASSWORD, seed_demo as run_seed
    from saas.settings import get_settings

    settings = get_settings()
    if settings.is_production:
        raise click.UsageError("demo personas are for dev and test only (SAAS_ENV=production refuses them)")
    now = datetime.now(settings.tz)
    if today:
        now = datetime.combine(today.date(), now.timetz())
    created = run_seed(now.astimezone(timezone.utc), password or DEV_PASSWORD, reset_password=bool(password))
    click.echo(f"Demo personas ready ({created} created).")


def main() -> None:
    cli()

from saas.cli_jobs import jobs_group; cli.add_command(jobs_group)  # noqa: E402
