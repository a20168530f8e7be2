"""remind-inactive-users: warn subscribers inactive for INACTIVE_AFTER_MONTHS and queue them for review."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import any_, func, or_, select, text, update
from sqlalchemy.orm import Session

from saas.models import User
from saas.outbox import queue_batch
from scheduled.ledger import RunContext

KIND = "inactive-warning"


def inactivity_cutoff(session: Session, ctx: RunContext) -> datetime:
    """Local midnight of (slot's local date - N calendar months), as an instant.

    PostgreSQL's month arithmetic clamps to the month's end (Aug 31 - 6 months = Feb 28/29).
    """
    return session.execute(
        text("SELECT ((CAST(:day AS date) - make_interval(months => :months))::timestamp) AT TIME ZONE :tz"),
        {"day": ctx.today, "months": ctx.settings.inactive_after_months, "tz": ctx.settings.app_timezone},
    ).scalar_one()


def warning_key(user_id: int, last_seen_at: datetime) -> str:
    return f"{KIND}:{user_id}:{last_seen_at.astimezone(timezone.utc).isoformat()}"


def remind_inactive_users(session: Session, ctx: RunContext) -> None:
    """Batches of one UPDATE ... RETURNING (warned, purge due) plus their emails, committed together."""
    settings = ctx.settings
    cutoff = ctx.details.get("cutoff")
    cutoff = datetime.fromisoformat(cutoff) if cutoff else inactivity_cutoff(session, ctx)
    ctx.details["cutoff"] = cutoff.isoformat()
    purge_due_at = ctx.now + timedelta(days=settings.purge_grace_days)
    due = (User.role == "subscriber", User.purged_at.is_(None), User.purge_exempt_reason.is_(None),
           User.last_seen_at < cutoff,
           or_(User.inactive_warned_at.is_(None), User.inactive_warned_at < User.last_seen_at))
    while True:
        batch = select(User.id).where(User.id > ctx.cursor(), *due).order_by(User.id).limit(ctx.batch_size)
        warned = session.execute(
            update(User)
            # The conditions again: PostgreSQL re-checks them if a sign-in raced the batch.
            # = ANY(ARRAY(...)): the batch's ids become a list to look up, where IN (subquery)
            # would be hash-joined against a second scan of the whole table.
            .where(User.id == any_(func.array(batch.scalar_subquery())), *due)
            .values(inactive_warned_at=ctx.now, purge_due_at=purge_due_at, purge_approved_at=None)
            .returning(User.id, User.email, User.name, User.last_seen_at)
            .execution_options(synchronize_session=False)
        ).all()
        if not warned:
            return
        due_local = purge_due_at.astimezone(ctx.tz)
        emails = queue_batch(session, kind=KIND, template="inactive_warning", rows=[{
            "key": warning_key(r.id, r.last_seen_at), "to": r.email, "user_id": r.id,
            "context": {"name": r.name, "last_seen_on": r.last_seen_at.astimezone(ctx.tz).date().isoformat(),
                        "purge_on": due_local.date().isoformat(), "login_url": f"{settings.app_url}/login"},
        } for r in warned])
        if ctx.dry_run:
            ctx.note("would_warn", sorted(r.id for r in warned))
        ctx.batch_done(session, cursor=max(r.id for r in warned), scanned=len(warned),
                       changed=len(warned), emails=emails)
