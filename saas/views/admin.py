"""Admin pages: dormant-account review, jobs, outbox, audit log. Every action is audited."""
from __future__ import annotations

from datetime import date, datetime, time, timezone

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import case, func, literal, select, update

from billing.records import local_today
from saas.auth import role_required
from saas.db import web_session
from saas.models import AuditLog, User
from saas.outbox import OutboxMessage, mark_outbox_dirty
from saas.settings import JOB_NAMES, get_settings

bp = Blueprint("admin", __name__, url_prefix="/admin")
RETRYABLE = ("failed", "pending")  # the outbox statuses Retry acts on (and the page offers it for)
PAGE = 100
SORTS = {"last_seen": User.last_seen_at, "warned": User.inactive_warned_at, "purge_due": User.purge_due_at,
         "email": User.email}
BULK_ACTIONS = {"exempt": "Exempt from purge", "unexempt": "Remove the exemption", "approve": "Approve purge now"}
PURGE_TASK = "scheduled.tasks.purge_account"
RUN_JOB_TASK = "scheduled.tasks.run_job"


@bp.before_request
@role_required("admin")
def require_admin():
    """Every /admin page: anonymous -> sign in, other roles -> 403."""


@bp.app_template_filter("localtime")
def localtime(moment: datetime) -> datetime:
    """A stored UTC time in APP_TIMEZONE, the zone every page and schedule uses."""
    return moment.astimezone(get_settings().tz)


def actor() -> str:
    return f"admin:{current_user.id}"


def audit(action: str, subject_type: str, subject_id: object | None, **details) -> None:
    """One audit row per admin action, in the action's transaction; never personal data."""
    web_session.add(AuditLog(actor=actor(), actor_id=current_user.id, action=action, subject_type=subject_type,
                             subject_id=None if subject_id is None else str(subject_id), details=details))


def send_task(name: str, **kwargs) -> None:
    from scheduled.celery_app import app as celery_app

    celery_app.send_task(name, kwargs=kwargs)


# ---- dormant accounts ---------------------------------------------------------------------------

def protection_reason_column():
    """Why an account is kept from purge (NULL when nothing keeps it), as one SQL expression:
    the purge job's own protections, then an admin's exemption."""
    from scheduled.jobs.purge_dormant_accounts import protection_reason_expr

    exempt = case((User.purge_exempt_reason.is_not(None), literal("exempted by an admin")), else_=None)
    return func.coalesce(protection_reason_expr(), exempt)


def _date_arg(name: str) -> date | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        abort(400, f"{name} must be a date like 2025-01-31.")


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=get_settings().tz)


def dormant_query():
    """The review queue (warned, not purged) with the request's filters and sort order."""
    reason = protection_reason_column()
    stmt = select(User, reason.label("why")).where(User.purge_due_at.is_not(None), User.purged_at.is_(None))
    for arg, column in (("seen_before", User.last_seen_at), ("warned_before", User.inactive_warned_at),
                        ("due_before", User.purge_due_at)):
        day = _date_arg(arg)
        if day is not None:
            stmt = stmt.where(column < _start_of(day))
    protected = request.args.get("protected", "")
    if protected not in ("", "yes", "no"):
        abort(400, "protected must be yes or no.")
    if protected:
        stmt = stmt.where(reason.is_not(None) if protected == "yes" else reason.is_(None))
    why = request.args.get("why", "").strip()
    if why:
        stmt = stmt.where(reason == why)
    sort = request.args.get("sort", "purge_due")
    if sort not in SORTS:
        abort(400, f"sort must be one of {', '.join(SORTS)}.")
    direction = request.args.get("dir", "asc")
    if direction not in ("asc", "desc"):
        abort(400, "dir must be asc or desc.")
    order = SORTS[sort].desc().nulls_last() if direction == "desc" else SORTS[sort].asc().nulls_first()
    return stmt.order_by(order, User.id).limit(500), sort, direction


@bp.get("/dormant")
def dormant():
    stmt, sort, direction = dormant_query()
    rows = web_session.execute(stmt).all()
    reasons = web_session.scalars(
        select(protection_reason_column()).distinct()
        .where(User.purge_due_at.is_not(None), User.purged_at.is_(None), protection_reason_column().is_not(None))
    ).all()
    return render_template("admin/dormant.html", rows=rows, sort=sort, direction=direction, reasons=sorted(reasons),
                           args=request.args, bulk_actions=BULK_ACTIONS, today=local_today())


def _selected_ids() -> list[int]:
    try:
        ids = sorted({int(v) for v in request.form.getlist("ids") if v.strip()})
    except ValueError:
        abort(400, "The selection is not valid.")
    if any(not 0 < i < 2**63 for i in ids):  # beyond PostgreSQL's bigint: no such account
        abort(400, "The selection is not valid.")
    if not ids:
        abort(400, "Select at least one account.")
    return ids


@bp.post("/dormant/act")
def dormant_act():
    """Exempt, remove an exemption or approve the purge of one or more accounts.

    Without `confirm` the page asks for confirmation first and changes nothing.
    """
    action = request.form.get("action", "")
    if action not in BULK_ACTIONS:
        abort(400, "Choose what to do with the selected accounts.")
    ids = _selected_ids()
    reason = request.form.get("reason", "").strip()
    if action == "exempt" and not reason:
        abort(400, "An exemption needs a reason.")
    if len(reason) > 500:
        abort(400, "Keep the reason under 500 characters.")
    why = protection_reason_column().label("why")
    rows = web_session.execute(select(User, why).where(User.id.in_(ids), User.purged_at.is_(None))
                               .order_by(User.id)).all()
    if not rows:
        abort(404)
    if request.form.get("confirm") != "yes":
        return render_template("admin/confirm.html", rows=rows, action=action, label=BULK_ACTIONS[action],
                               reason=reason, back=request.form.get("back") or url_for("admin.dormant"))
    done, refused = _apply(action, rows, reason)
    web_session.commit()
    if action == "approve":
        for user_id in done:
            send_task(PURGE_TASK, user_id=user_id, actor=actor())
    message = f"{BULK_ACTIONS[action]}: {len(done)} account{'s' if len(done) != 1 else ''} done."
    if refused:
        message += f" {len(refused)} refused because they are protected ({', '.join(refused)})."
    flash(message, "error" if refused and not done else "success")
    return redirect(_safe_back(request.form.get("back")))


def _apply(action: str, rows, reason: str) -> tuple[list[int], list[str]]:
    """Change each account and audit it; approvals of protected accounts are refused (and audited)."""
    now = datetime.now(timezone.utc)
    done: list[int] = []
    refused: list[str] = []
    bulk = len(rows) > 1
    for user, why in rows:
        if action == "exempt":
            user.purge_exempt_reason, user.purge_exempt_at, user.purge_exempt_by_id = reason, now, current_user.id
            user.purge_approved_at = None
            audit("dormant.exempt", "user", user.id, bulk=bulk)
        elif action == "unexempt":
            user.purge_exempt_reason = user.purge_exempt_at = user.purge_exempt_by_id = None
            audit("dormant.unexempt", "user", user.id, bulk=bulk)
        else:
            reason_now = _protection_reason(user.id) or why
            if reason_now:
                refused.append(f"#{user.id}: {reason_now}")
                audit("dormant.approve-refused", "user", user.id, bulk=bulk, protected_by=reason_now)
                continue
            user.purge_approved_at = now
            audit("dormant.approve-purge", "user", user.id, bulk=bulk)
        done.append(user.id)
    return done, refused


def _protection_reason(user_id: int) -> str | None:
    """The purge job's own check, so an approval never overrides a protection."""
    from scheduled.jobs.purge_dormant_accounts import protection_reason

    return protection_reason(web_session, user_id)


def _safe_back(target: str | None) -> str:
    from saas.views.auth import is_local_path

    if is_local_path(target) and target.startswith("/admin/"):
        return target
    return url_for("admin.dormant")


# ---- jobs ---------------------------------------------------------------------------------------

@bp.get("/jobs")
def jobs():
    from scheduled.runner import job_overview

    overview = job_overview(web_session, datetime.now(timezone.utc))
    return render_template("admin/jobs.html", jobs=overview, tz=get_settings().tz)


@bp.post("/jobs/<name>/run")
def run_job(name: str):
    """Enqueue the job's latest slot through the ledger: a slot that already ran is a logged no-op,
    a dry run records what it would do and changes nothing."""
    from scheduled.slots import latest_slot

    if name not in JOB_NAMES:
        abort(404)
    settings = get_settings()
    dry_run = request.form.get("dry_run") == "1"
    slot = latest_slot(settings.schedules[name], settings.tz, datetime.now(timezone.utc))
    if slot is None:
        abort(400, f"{name} has no slot before now.")
    audit("job.dry-run" if dry_run else "job.run-now", "job", name, slot=slot.isoformat())
    web_session.commit()
    send_task(RUN_JOB_TASK, job=name, slot_iso=slot.isoformat(), dry_run=dry_run, explicit=True)
    local = slot.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M")
    flash(f"{'Dry run' if dry_run else 'Run'} of {name} for the {local} slot queued. "
          "Its result appears below when it finishes.", "success")
    return redirect(url_for("admin.jobs"))


# ---- outbox -------------------------------------------------------------------------------------

@bp.get("/outbox")
def outbox():
    status = request.args.get("status", "")
    if status and status not in ("pending", "sending", "sent", "failed"):
        abort(400, "status must be pending, sending, sent or failed.")
    stmt = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(PAGE)
    if status:
        stmt = stmt.where(OutboxMessage.status == status)
    return render_template("admin/outbox.html", messages=web_session.scalars(stmt).all(), status=status,
                           retryable=RETRYABLE)


@bp.post("/outbox/<int:message_id>/retry")
def outbox_retry(message_id: int):
    """Send a failed (or waiting) email again now; delivery is enqueued when this commits.

    One conditional UPDATE decides: a row a worker holds (sending) or has sent is left alone, so
    the email cannot go out twice."""
    retried = web_session.execute(
        update(OutboxMessage).where(OutboxMessage.id == message_id, OutboxMessage.status.in_(RETRYABLE))
        .values(status="pending", next_attempt_at=datetime.now(timezone.utc), claimed_by=None)
        .returning(OutboxMessage.kind, OutboxMessage.attempts)).first()
    if retried is None:
        status = web_session.scalar(select(OutboxMessage.status).where(OutboxMessage.id == message_id))
        if status is None:
            abort(404)
        flash("That email was already sent." if status == "sent" else
              "That email is being sent right now: there is nothing to retry.", "error")
        return redirect(url_for("admin.outbox"))
    audit("outbox.retry", "outbox", message_id, kind=retried.kind, attempts=retried.attempts)
    mark_outbox_dirty(web_session)
    web_session.commit()
    flash(f"Email #{message_id} will be sent again now.", "success")
    return redirect(url_for("admin.outbox", status=request.form.get("status", "")))


# ---- audit log ----------------------------------------------------------------------------------

@bp.get("/audit")
def audit_log():
    stmt = select(AuditLog).order_by(AuditLog.id.desc()).limit(PAGE)
    action = request.args.get("action", "").strip()
    who = request.args.get("actor", "").strip()
    if action:
        stmt = stmt.where(AuditLog.action.startswith(action, autoescape=True))
    if who:
        stmt = stmt.where(AuditLog.actor.startswith(who, autoescape=True))
    before = request.args.get("before", type=int)
    if before is not None and not 0 < before < 2**63:  # beyond PostgreSQL's bigint
        abort(400, "before must be an audit entry's id.")
    if before:
        stmt = stmt.where(AuditLog.id < before)
    entries = web_session.scalars(stmt).all()
    return render_template("admin/audit.html", entries=entries, action=action, who=who,
                           older=entries[-1].id if len(entries) == PAGE else None)
