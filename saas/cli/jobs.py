"""`saas jobs`: list the nightly jobs, run a slot through the ledger, show the run history (pause,
resume and backfill are in saas/cli/job_control.py).

Crons use Celery's crontab fields (minute hour day-of-month month day-of-week). Celery ANDs
day-of-month and day-of-week, so "0 1 8-14 * tue" is the second Tuesday of each month at 01:00;
POSIX cron would OR them (every 8th-14th and every Tuesday).
"""
from __future__ import annotations

import sys
from datetime import UTC, datetime

import click

from saas.cli.job_control import backfill_job, pause_job, resume_job, say_if_paused
from saas.cli.settings import DATABASE_ONLY, NO_SERVICES, RUNS_JOBS, load_settings
from saas.core.db import session_scope
from saas.core.settings import Settings
from saas.core.slots import latest_slot, next_slot
from scheduled import clock, ledger
from scheduled.jobs import JOBS
from scheduled.runner import UnknownJob, check_job, recent_runs, run_job


@click.group("jobs")
def jobs_group() -> None:
    """The nightly jobs (cron strings in APP_TIMEZONE; see SCHEDULE_<JOB>)."""


@jobs_group.command("list")
def list_jobs() -> None:
    """Name, cron, time zone and next run of each job (from the settings alone)."""
    settings = load_settings(needs=NO_SERVICES)
    tz, now = settings.tz, datetime.now(UTC)
    for name in JOBS:
        cron = settings.schedules[name]
        upcoming = next_slot(cron, tz, now)
        nxt = upcoming.astimezone(tz).isoformat() if upcoming else "never"
        click.echo(f"{name:<24} {cron:<22} {settings.app_timezone:<20} next {nxt}")


def _parse_at(value: str | None, settings: Settings) -> datetime:
    """ISO-8601; a time without an offset is read in APP_TIMEZONE."""
    if value is None:
        return datetime.now(UTC)
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO-8601 date or time (e.g. 2025-03-09T00:00)",
                                 param_hint="--at") from None
    return at if at.tzinfo else at.replace(tzinfo=settings.tz)


@jobs_group.command("run")
@click.argument("name")
@click.option("--at", "at", default=None, help="ISO-8601 time; the slot at or before it runs (default: now).")
@click.option("--dry-run", is_flag=True, help="Report what would change; change nothing.")
@click.option("--force", is_flag=True, help="Run a slot that is still in the future.")
def run(name: str, at: str | None, dry_run: bool, force: bool) -> None:
    """Run NAME's slot at or before --at through the ledger (a second identical call does nothing)."""
    settings = load_settings(needs=RUNS_JOBS)
    try:
        cron = check_job(name, settings)
    except UnknownJob as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from None
    moment = _parse_at(at, settings)
    slot = latest_slot(cron, settings.tz, moment)
    if slot is None:
        raise click.ClickException(f"{name} has no slot at or before {moment.isoformat()}")
    local = slot.astimezone(settings.tz).isoformat()
    if slot > clock.now() and not (dry_run or force):
        raise click.BadParameter(f"{name}'s slot {local} is in the future; add --force to run it now "
                                 "(or --dry-run to see what it would do)", param_hint="--at")
    say_if_paused(name, settings)
    result = run_job(name, settings, slot, dry_run=dry_run, explicit=True)
    if result is None:
        with session_scope() as session:
            other = ledger.existing_run(session, name, slot)
        state = f"run #{other.id}, {other.status}" if other else "claimed elsewhere"
        click.echo(f"{name} slot {local} already has a run ({state}); nothing done.")
        return
    click.echo(f"{name} slot {local}{' (dry run)' if dry_run else ''}: {result.status}; "
               f"scanned {result.scanned}, changed {result.changed}, emails queued {result.emails_queued}.")
    if result.status == "failed":
        click.echo(f"Error: {result.error}", err=True)
        sys.exit(1)


@jobs_group.command("history")
@click.argument("name", required=False)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1), help="How many runs.")
def history(name: str | None, limit: int) -> None:
    """The newest runs, of one job or of all."""
    settings = load_settings(needs=DATABASE_ONLY)
    if name:
        try:
            check_job(name, settings)
        except UnknownJob as exc:
            raise click.BadParameter(str(exc), param_hint="NAME") from None
    tz = settings.tz
    with session_scope() as session:
        runs = recent_runs(session, name, limit)
    if not runs:
        click.echo("No runs yet.")
    for r in runs:
        click.echo(f"#{r.id:<5} {r.job:<24} {r.slot.astimezone(tz).isoformat():<26} {r.status:<9}"
                   f"{' dry-run' if r.dry_run else ''} attempts {r.attempts} scanned {r.scanned} "
                   f"changed {r.changed} emails {r.emails_queued}{'  ' + r.error if r.error else ''}")


jobs_group.add_command(pause_job)
jobs_group.add_command(resume_job)
jobs_group.add_command(backfill_job)
