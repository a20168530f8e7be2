"""The admin jobs page: runs and their details, Run now, pause and resume, backfill of skipped slots.

Every action is audited; every run goes through the ledger, so nothing here can run a slot twice.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import abort, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user

from saas.core.cron_words import describe_schedule
from saas.core.db import web_session
from saas.core.queue import enqueue_after_commit
from saas.core.settings import JOB_NAMES
from saas.core.slots import latest_slot, slots_between
from saas.web.extensions import app_settings
from saas.web.views.admin import actor, audit, bp
from scheduled import backfill, ledger, pauses, run_status
from scheduled.models import JobRun
from scheduled.runner import job_overview
from scheduled.tasks import backfill_slots
from scheduled.tasks import run_job as run_job_task

RUNS_SHOWN = 10  # per job on the page
QUEUED_WATCH = timedelta(minutes=2)  # the page refreshes this long for a queued run to start


def _job_or_404(name: str) -> str:
    if name not in JOB_NAMES:
        abort(404)
    return name


def _watch() -> tuple[str | None, datetime | None]:
    """The job and moment of a "Run now" the page waits for (from its redirect), if still recent."""
    job, since = request.args.get("queued"), request.args.get("since", "")
    try:
        moment = datetime.fromisoformat(since)
    except ValueError:
        return None, None
    if job not in JOB_NAMES or moment.tzinfo is None or datetime.now(UTC) - moment > QUEUED_WATCH:
        return None, None
    return job, moment


def _state(now: datetime) -> dict:
    running = run_status.in_flight(web_session, now)
    job, since = _watch()
    waiting = job is not None and since is not None and not run_status.started_since(web_session, job, since)
    return {"in_flight": bool(running) or waiting, "running": [r.id for r in running], "waiting_for": job if waiting else None,
            "fingerprint": run_status.fingerprint(web_session)}


@bp.get("/jobs")
def jobs():
    settings = app_settings()
    now = datetime.now(UTC)
    overview = job_overview(web_session, settings, now, runs_per_job=RUNS_SHOWN)
    for job in overview:
        job["words"] = describe_schedule(job["cron"])
        job["skipped"] = sorted(r.slot for r in job["runs"] if r.status == "skipped" and not r.dry_run)
    already = request.args.get("already", type=int)
    already_run = web_session.get(JobRun, already) if already and 0 < already < 2**63 else None
    return render_template("admin/jobs.html", jobs=overview, tz=settings.tz, paused=pauses.paused_jobs(web_session),
                           state=_state(now), already=already_run, args=request.args)


@bp.get("/jobs/status.json")
def jobs_status():
    """What the page's script polls: reload when the fingerprint changes, stop when nothing is in flight."""
    return jsonify(_state(datetime.now(UTC)))


@bp.get("/jobs/runs/<int:run_id>")
def job_run(run_id: int):
    run = web_session.get(JobRun, run_id) if 0 < run_id < 2**63 else None
    if run is None:
        abort(404)
    return render_template("admin/job_run.html", run=run, state=_state(datetime.now(UTC)))


@bp.post("/jobs/<name>/run")
def run_job(name: str):
    """Enqueue the job's latest slot through the ledger. A slot that already ran is refused at once
    (with a link to its run); a dry run records what it would do and changes nothing. A paused job
    runs too (a person asked), and the answer says it stays paused."""
    _job_or_404(name)
    settings = app_settings()
    now = datetime.now(UTC)
    dry_run = request.form.get("dry_run") == "1"
    slot = latest_slot(settings.schedules[name], settings.tz, now)
    if slot is None:
        abort(400, f"{name} has no slot before now.")
    local = slot.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M")
    if not dry_run:
        existing = ledger.existing_run(web_session, name, slot)
        live = existing is not None and existing.status == "running" and existing.heartbeat_at >= now - ledger.STALE_AFTER
        if existing is not None and (existing.status == "succeeded" or live):
            return redirect(url_for("admin.jobs", already=existing.id))
    pause = pauses.pause_of(web_session, name)
    audit("job.dry-run" if dry_run else "job.run-now", "job", name, slot=slot.isoformat(),
          **({"paused": True} if pause else {}))
    enqueue_after_commit(web_session, run_job_task, job=name, slot_iso=slot.isoformat(), dry_run=dry_run,
                         explicit=True)
    web_session.commit()
    flash(f"{'Dry run' if dry_run else 'Run'} of {name} for the {local} slot queued. "
          "Its result appears below when it finishes.", "success")
    if pause is not None:
        flash(f"{name} is paused ({pauses.skip_reason(pause)}): this run goes ahead because you asked for it; "
              "beat still skips its slots until you resume it.", "info")
    return redirect(url_for("admin.jobs", queued=name, since=now.isoformat()))


@bp.post("/jobs/<name>/pause")
def pause_job(name: str):
    _job_or_404(name)
    try:
        pauses.pause(web_session, name, request.form.get("reason", ""), actor(), datetime.now(UTC),
                     actor_id=current_user.id)
    except pauses.PauseError as exc:
        web_session.rollback()
        message = str(exc)
        abort(400, f"{message[:1].upper()}{message[1:]}.")
    web_session.commit()
    flash(f"{name} paused: beat records its slots as skipped until you resume it.", "success")
    return redirect(url_for("admin.jobs"))


@bp.post("/jobs/<name>/resume")
def resume_job(name: str):
    _job_or_404(name)
    try:
        pauses.resume(web_session, name, actor(), datetime.now(UTC), actor_id=current_user.id)
    except pauses.PauseError:
        web_session.rollback()
        flash(f"{name} is not paused.", "error")
        return redirect(url_for("admin.jobs"))
    web_session.commit()
    flash(f"{name} resumed. The slots skipped while it was paused stay skipped; run them with "
          "“Run this slot” or “Run the skipped slots shown”.", "success")
    return redirect(url_for("admin.jobs"))


def _slots_from_form(name: str) -> list[datetime]:
    """The slots posted: each a past slot of the job's schedule whose run never finished; 400 otherwise."""
    settings = app_settings()
    cron, now = settings.schedules[name], datetime.now(UTC)
    raw = [v.strip() for v in request.form.getlist("slot") if v.strip()]
    if not raw:
        abort(400, "Choose at least one skipped slot.")
    if len(raw) > backfill.MAX_BACKFILL_SLOTS:
        abort(400, f"Backfill at most {backfill.MAX_BACKFILL_SLOTS} slots at a time.")
    slots = []
    for value in raw:
        try:
            slot = datetime.fromisoformat(value)
        except ValueError:
            abort(400, "The slot is not a date and time.")
        if slot.tzinfo is None or slot > now or slots_between(cron, settings.tz, slot - timedelta(microseconds=1),
                                                              slot) != [slot]:
            abort(400, f"{value} is not a past slot of {name}.")
        slots.append(slot.astimezone(UTC))
    return sorted(set(slots))


@bp.post("/jobs/<name>/backfill")
def backfill_job(name: str):
    """Run the chosen skipped (or failed, or missing) slots, oldest first, in one task."""
    _job_or_404(name)
    now = datetime.now(UTC)
    slots = _slots_from_form(name)
    done = [s for s in slots if not backfill.SlotPlan(s, ledger.existing_run(web_session, name, s)).wanted]
    if done:
        return redirect(url_for("admin.jobs", already=ledger.existing_run(web_session, name, done[0]).id))
    audit("job.backfill", "job", name, slots=[s.isoformat() for s in slots])
    enqueue_after_commit(web_session, backfill_slots, job=name, slots_iso=[s.isoformat() for s in slots])
    web_session.commit()
    flash(f"Backfill of {len(slots)} slot{'s' if len(slots) != 1 else ''} of {name} queued, oldest first.", "success")
    return redirect(url_for("admin.jobs", queued=name, since=now.isoformat()))
