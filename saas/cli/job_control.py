"""`saas jobs pause | resume | backfill`: stop a job's slots from running, start them again, and
run a range of slots that never ran (see scheduled/pauses.py and scheduled/backfill.py)."""
from __future__ import annotations

import getpass
from datetime import datetime

import click
from sqlalchemy import select

from saas.cli.settings import DATABASE_ONLY, RUNS_JOBS, load_settings
from saas.core.db import session_scope
from saas.core.settings import Settings
from scheduled import backfill, clock, pauses
from scheduled.models import JobPause, JobRun
from scheduled.runner import UnknownJob, check_job


def cli_actor() -> str:
    """Who runs the command, for the audit log ("cli:alice")."""
    try:
        return f"cli:{getpass.getuser()}"[:100]
    except (KeyError, OSError):  # a container user with no passwd entry and no $USER
        return "cli"


def known_job(name: str, settings: Settings) -> None:
    try:
        check_job(name, settings)
    except UnknownJob as exc:
        raise click.ClickException(str(exc)) from None


def parse_moment(value: str, option: str, settings: Settings) -> datetime:
    """ISO-8601; a time without an offset is read in APP_TIMEZONE, a date alone is its midnight."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.ClickException(f"{option}: {value!r} is not an ISO-8601 date or time "
                                   "(e.g. 2025-03-09 or 2025-03-09T00:00)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=settings.tz)


def say_if_paused(name: str, settings: Settings) -> None:
    """A person's run of a paused job goes ahead; say that the job stays paused."""
    with session_scope() as session:
        pause = pauses.pause_of(session, name)
    if pause is not None:
        click.echo(f"Note: {name} is paused ({pauses.skip_reason(pause)}); this run goes ahead because you "
                   f"asked for it, and beat still sends none of its slots until `saas jobs resume {name}`.")


@click.command("pause")
@click.argument("name")
@click.option("--reason", default=None, help="Why (shown in the ledger on every slot skipped, and audited).")
def pause_job(name: str, reason: str | None) -> None:
    """Pause NAME: beat records each of its slots as skipped, with the reason, until it is resumed."""
    settings = load_settings(needs=DATABASE_ONLY)
    known_job(name, settings)
    if not (reason or "").strip():
        raise click.ClickException("a pause needs a reason (--reason)")
    with session_scope() as session:
        try:
            pause = pauses.pause(session, name, reason or "", cli_actor(), clock.now())
        except pauses.PauseError as exc:
            raise click.ClickException(str(exc)) from None
        session.commit()
        text = pauses.skip_reason(pause)
    click.echo(f"{name} paused ({text}). Its slots are recorded as skipped until `saas jobs resume {name}`.")


def _skipped_by(session, pause: JobPause) -> list[datetime]:
    """The slots this pause skipped (its reason is on each), oldest first."""
    return list(session.scalars(select(JobRun.slot).where(
        JobRun.job == pause.job, JobRun.dry_run.is_(False), JobRun.status == "skipped",
        JobRun.error == pauses.skip_reason(pause)).order_by(JobRun.slot)))


@click.command("resume")
@click.argument("name")
@click.option("--backfill", "run_skipped", is_flag=True,
              help="Also run, oldest first, the slots skipped while it was paused.")
def resume_job(name: str, run_skipped: bool) -> None:
    """Resume NAME. The slots skipped while it was paused stay skipped unless --backfill."""
    settings = load_settings(needs=RUNS_JOBS if run_skipped else DATABASE_ONLY)
    known_job(name, settings)
    with session_scope() as session:
        pause = pauses.pause_of(session, name)
        if pause is None:
            raise click.ClickException(f"{name} is not paused")
        skipped = _skipped_by(session, pause)
        if run_skipped and len(skipped) > backfill.MAX_BACKFILL_SLOTS:  # checked before resuming
            raise click.ClickException(
                f"the pause skipped {len(skipped)} slots; backfill at most {backfill.MAX_BACKFILL_SLOTS} at a time "
                f"(resume, then `saas jobs backfill {name} --from … --to …` in parts); {name} is still paused")
        pauses.resume(session, name, cli_actor(), clock.now())
        session.commit()
    click.echo(f"{name} resumed (it was paused by {pause.paused_by} since "
               f"{pause.paused_at.astimezone(settings.tz).isoformat(timespec='seconds')}: {pause.reason}).")
    if not run_skipped:
        if skipped:
            first = skipped[0].astimezone(settings.tz).isoformat(timespec="minutes")
            last = skipped[-1].astimezone(settings.tz).isoformat(timespec="minutes")
            click.echo(f"{len(skipped)} slot(s) were skipped while it was paused; they stay skipped. Run them with "
                       f"`saas jobs backfill {name} --from {first} --to {last}`.")
        return
    failed = _run_and_print(skipped, name, settings, dry_run=False)
    if failed:
        raise click.ClickException(f"slot {failed} failed; the backfill stopped there (later slots not run)")


def _run_and_print(slots: list[datetime], name: str, settings: Settings, dry_run: bool) -> str | None:
    """Run the slots oldest first, a line each; the local time of a failed slot, if one failed."""
    tz = settings.tz
    if not slots:
        click.echo("No slot to run.")
        return None
    failed: list[str] = []

    def show(result: backfill.SlotResult) -> None:
        local = result.plan.slot.astimezone(tz).isoformat()
        run = result.run
        if run is None:
            click.echo(f"{local}  taken by another run meanwhile; nothing done")
            return
        click.echo(f"{local}  run #{run.id}{' (dry run)' if dry_run else ''}: {run.status}; scanned {run.scanned}, "
                   f"changed {run.changed}, emails queued {run.emails_queued}{'  ' + run.error if run.error else ''}")
        if run.status == "failed":
            failed.append(local)

    backfill.run_backfill(name, settings, slots, dry_run=dry_run, on_result=show)
    return failed[0] if failed else None


@click.command("backfill")
@click.argument("name")
@click.option("--from", "start", required=False, default=None, help="ISO-8601; the first slot at or after it.")
@click.option("--to", "end", required=False, default=None, help="ISO-8601, not in the future; the last slot at or before it.")
@click.option("--dry-run", is_flag=True, help="Run each slot as a dry run: report what would change, change nothing.")
def backfill_job(name: str, start: str | None, end: str | None, dry_run: bool) -> None:
    """Run NAME's slots from --from to --to (both included) that have no run, or were skipped or
    failed, oldest first, once each (at most 100 slots in the range)."""
    settings = load_settings(needs=RUNS_JOBS)
    known_job(name, settings)
    if start is None or end is None:
        raise click.ClickException("a backfill needs --from and --to (ISO-8601)")
    first, last = parse_moment(start, "--from", settings), parse_moment(end, "--to", settings)
    with session_scope() as session:
        try:
            plans = backfill.plan_backfill(session, name, settings, first, last, clock.now())
        except backfill.BackfillError as exc:
            raise click.ClickException(str(exc)) from None
        session.expunge_all()
    tz = settings.tz
    wanted = [p.slot for p in plans if p.wanted]
    click.echo(f"{name}: {len(plans)} slot(s) in the range, {len(wanted)} to run"
               f"{' as dry runs' if dry_run else ''}, oldest first.")
    for p in plans:
        if not p.wanted:
            click.echo(f"{p.slot.astimezone(tz).isoformat()}  {p.describe()}; left alone")
    say_if_paused(name, settings)
    failed = _run_and_print(wanted, name, settings, dry_run)
    if failed:
        raise click.ClickException(f"slot {failed} failed; the backfill stopped there (later slots not run)")
