"""Admin pages: what needs attention, dormant-account review, jobs, outbox, audit log. Every action is audited."""
from __future__ import annotations

from datetime import UTC, date, datetime
from urllib.parse import parse_qsl, urlsplit

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from jinja2 import TemplateError
from sqlalchemy import select, update
from werkzeug.datastructures import MultiDict

from saas.core.db import web_session
from saas.core.models import AuditLog, User
from saas.core.outbox import OutboxMessage, mark_outbox_dirty
from saas.core.outbox.delivery import build_message
from saas.core.queue import enqueue_after_commit
from saas.web.audit_words import describe
from saas.web.extensions import app_settings, app_today
from saas.web.login import role_required
from saas.web.views.attention import attention_items
from saas.web.views.auth import is_local_path
from scheduled.dormancy import (
    REVIEW_SORTS,
    ReviewFilter,
    protection_reason,
    review_queue,
    review_reason_expr,
    review_reasons,
)
from scheduled.tasks import purge_account

bp = Blueprint("admin", __name__, url_prefix="/admin")
RETRYABLE = ("failed", "pending")  # the outbox statuses Retry acts on (and the page offers it for)
PAGE = 100
BULK_ACTIONS = {"exempt": "Exempt from purge", "unexempt": "Remove the exemption", "approve": "Approve purge now"}


@bp.before_request
@role_required("admin")
def require_admin():
    """Every /admin page: anonymous -> sign in, other roles -> 403."""


def actor() -> str:
    return f"admin:{current_user.id}"


def audit(action: str, subject_type: str, subject_id: object | None, **details) -> None:
    """One audit row per admin action, in the action's transaction; never personal data."""
    web_session.add(AuditLog(actor=actor(), actor_id=current_user.id, action=action, subject_type=subject_type,
                             subject_id=None if subject_id is None else str(subject_id), details=details))


# ---- landing -----------------------------------------------------------------------------------

@bp.get("/")
@bp.get("")  # the canonical address (registered first: url_for builds it)
def index():
    """What needs attention, each with a count and a link to where it is handled."""
    return render_template("admin/index.html", items=attention_items(web_session, datetime.now(UTC)))


# ---- dormant accounts ---------------------------------------------------------------------------

class BulkError(Exception):
    """A bulk action that cannot go ahead: the queue is shown again with this message."""


def _date_arg(args: MultiDict, name: str) -> date | None:
    raw = args.get(name, "").strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        abort(400, f"{name} must be a date like 2025-01-31.")


def review_filter(args: MultiDict) -> ReviewFilter:
    """The queue's filters from a query string; 400 naming the one that is wrong."""
    protected = args.get("protected", "")
    if protected not in ("", "yes", "no"):
        abort(400, "protected must be yes or no.")
    sort = args.get("sort", "purge_due")
    if sort not in REVIEW_SORTS:
        abort(400, f"sort must be one of {', '.join(REVIEW_SORTS)}.")
    direction = args.get("dir", "asc")
    if direction not in ("asc", "desc"):
        abort(400, "dir must be asc or desc.")
    return ReviewFilter(seen_before=_date_arg(args, "seen_before"), warned_before=_date_arg(args, "warned_before"),
                        due_before=_date_arg(args, "due_before"), protected=None if not protected else protected == "yes",
                        why=args.get("why", "").strip(), sort=sort, descending=direction == "desc")


def _render_queue(args: MultiDict, error: str | None = None, selected: frozenset[int] = frozenset(),
                  action: str = "", reason: str = ""):
    """The queue as `args` filter it; after a failed bulk action, with its message and selection."""
    wanted = review_filter(args)
    rows = web_session.execute(review_queue(wanted, app_settings().tz)).all()
    page = render_template("admin/dormant.html", rows=rows, sort=wanted.sort,
                           direction="desc" if wanted.descending else "asc", reasons=review_reasons(web_session),
                           args=args, bulk_actions=BULK_ACTIONS, today=app_today(), error=error,
                           selected=selected, chosen_action=action, reason=reason,
                           back=_safe_back(request.form.get("back")) if error else request.full_path)
    return page, 400 if error else 200


@bp.get("/dormant")
def dormant():
    return _render_queue(request.args)


def _selected_ids() -> list[int]:
    try:
        ids = sorted({int(v) for v in request.form.getlist("ids") if v.strip()})
    except ValueError:
        raise BulkError("The selection is not valid.") from None
    if any(not 0 < i < 2**63 for i in ids):  # beyond PostgreSQL's bigint: no such account
        raise BulkError("The selection is not valid.")
    if not ids:
        raise BulkError("Select at least one account.")
    return ids


def _queue_args(back: str | None) -> MultiDict:
    """The filters of the queue page a form was posted from (its `back` path)."""
    return MultiDict(parse_qsl(urlsplit(_safe_back(back)).query))


@bp.post("/dormant/act")
def dormant_act():
    """Exempt, remove an exemption or approve the purge of one or more accounts.

    Without `confirm` the page asks for confirmation first and changes nothing. A request that
    cannot go ahead shows the queue again with the reason, the selection and the reason typed kept.
    """
    action = request.form.get("action", "")
    reason = request.form.get("reason", "").strip()
    raw_ids = frozenset(int(v) for v in request.form.getlist("ids") if v.strip().isdigit() and len(v) < 19)
    try:
        return _act(action, reason)
    except BulkError as exc:
        return _render_queue(_queue_args(request.form.get("back")), error=str(exc), selected=raw_ids,
                             action=action, reason=reason)


def _act(action: str, reason: str):
    if action not in BULK_ACTIONS:
        raise BulkError("Choose what to do with the selected accounts.")
    ids = _selected_ids()
    if action == "exempt" and not reason:
        raise BulkError("An exemption needs a reason.")
    if len(reason) > 500:
        raise BulkError("Keep the reason under 500 characters.")
    why = review_reason_expr().label("why")
    rows = web_session.execute(select(User, why).where(User.id.in_(ids), User.purged_at.is_(None))
                               .order_by(User.id)).all()
    if not rows:
        raise BulkError("None of the selected accounts is in the queue any more.")
    back = _safe_back(request.form.get("back"))
    if request.form.get("confirm") != "yes":
        kept = [(user, why) for user, why in rows if why] if action == "approve" else []
        rows = [(user, why) for user, why in rows if not why] if action == "approve" else rows
        if not rows:
            raise BulkError("Protected and exempted accounts cannot be approved for purge: "
                            + "; ".join(f"{user.email}: {why}" for user, why in kept) + ".")
        return render_template("admin/confirm.html", rows=rows, kept=kept, action=action,
                               label=BULK_ACTIONS[action], reason=reason, back=back)
    done, refused = _apply(action, rows, reason)
    if action == "approve":
        for user_id in done:
            enqueue_after_commit(web_session, purge_account, user_id=user_id, actor=actor())
    web_session.commit()
    message = f"{BULK_ACTIONS[action]}: {len(done)} account{'s' if len(done) != 1 else ''} done."
    if action == "approve" and done:
        message += " The purge runs in the background; approved accounts leave this list."
    if refused:
        message += f" {len(refused)} refused because they are protected ({', '.join(refused)})."
    flash(message, "error" if refused and not done else "success")
    return redirect(back)


def _apply(action: str, rows, reason: str) -> tuple[list[int], list[str]]:
    """Change each account and audit it; approvals of protected accounts are refused (and audited)."""
    now = datetime.now(UTC)
    done: list[int] = []
    refused: list[str] = []
    bulk = len(rows) > 1
    for user, why in rows:
        if action == "exempt":
            user.purge_exempt_reason, user.purge_exempt_at, user.purge_exempt_by_id = reason, now, current_user.id
            user.purge_approved_at = None
            audit("dormant.exempt", "user", user.id, bulk=bulk, reason=reason)
        elif action == "unexempt":
            user.purge_exempt_reason = user.purge_exempt_at = user.purge_exempt_by_id = None
            audit("dormant.unexempt", "user", user.id, bulk=bulk)
        else:
            reason_now = protection_reason(web_session, user.id) or why  # the job's own check
            if reason_now:
                refused.append(f"#{user.id}: {reason_now}")
                audit("dormant.approve-refused", "user", user.id, bulk=bulk, protected_by=reason_now)
                continue
            user.purge_approved_at = now
            audit("dormant.approve-purge", "user", user.id, bulk=bulk)
        done.append(user.id)
    return done, refused


def _safe_back(target: str | None) -> str:
    if is_local_path(target) and target.startswith("/admin/"):
        return target
    return url_for("admin.dormant")


# ---- jobs: saas/web/views/admin_jobs.py -------------------------------------------------------


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


@bp.get("/outbox/<int:message_id>")
def outbox_message(message_id: int):
    """One email as it is (or was) sent: its headers, text and HTML, rendered as delivery renders it."""
    message = web_session.get(OutboxMessage, message_id)
    if message is None:
        abort(404)
    try:
        mime = build_message(message, app_settings().mail_from)
    except TemplateError as exc:
        return render_template("admin/outbox_message.html", m=message, headers=[], text="", html="",
                               attachments=[], render_error=f"{type(exc).__name__}: {exc}", retryable=RETRYABLE)
    text = html = ""
    for part in mime.walk():
        if part.get_content_disposition() == "attachment":
            continue
        if part.get_content_type() == "text/plain":
            text = part.get_content()
        elif part.get_content_type() == "text/html":
            html = part.get_content()
    headers = [(name, mime[name]) for name in ("From", "To", "Reply-To", "Subject", "Date", "Message-ID") if mime[name]]
    attachments = [part.get_filename() for part in mime.iter_attachments()]
    return render_template("admin/outbox_message.html", m=message, headers=headers, text=text, html=html,
                           attachments=attachments, render_error=None, retryable=RETRYABLE)


@bp.post("/outbox/<int:message_id>/retry")
def outbox_retry(message_id: int):
    """Send a failed (or waiting) email again now; delivery is enqueued when this commits.

    One conditional UPDATE decides: a row a worker holds (sending) or has sent is left alone, so
    the email cannot go out twice."""
    retried = web_session.execute(
        update(OutboxMessage).where(OutboxMessage.id == message_id, OutboxMessage.status.in_(RETRYABLE))
        .values(status="pending", next_attempt_at=datetime.now(UTC), claimed_by=None)
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
    subject = request.args.get("subject", "").strip()
    if subject:
        subject_type, _, subject_id = subject.partition(":")
        stmt = stmt.where(AuditLog.subject_type == subject_type, AuditLog.subject_id == subject_id)
    before = request.args.get("before", type=int)
    if before is not None and not 0 < before < 2**63:  # beyond PostgreSQL's bigint
        abort(400, "before must be an audit entry's id.")
    if before:
        stmt = stmt.where(AuditLog.id < before)
    entries = web_session.scalars(stmt).all()
    return render_template("admin/audit.html", entries=describe(web_session, entries), action=action, who=who,
                           subject=subject, older=entries[-1].id if len(entries) == PAGE else None)
