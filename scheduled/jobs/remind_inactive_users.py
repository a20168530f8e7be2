"""remind-inactive-users: warn subscribers inactive for INACTIVE_AFTER_MONTHS and queue them for review."""
from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import ColumnElement, Date, String, any_, cast, func, literal, or_, select, text, update
from sqlalchemy.orm import Session

from saas.core.models import User
from saas.core.outbox import count_added, json_object, note_added, queue_from
from scheduled.ledger import RunContext

KIND = "inactive-warning"


def inactivity_cutoff(session: Session, today: date, months: int, tz_name: str) -> datetime:
    """Local midnight of (today - N calendar months) in APP_TIMEZONE, as an instant: users last
    seen before it are inactive.

    PostgreSQL's month arithmetic clamps to the month's end (Aug 31 - 6 months = Feb 28/29).
    """
    return session.execute(
        text("SELECT ((CAST(:day AS date) - make_interval(months => :months))::timestamp) AT TIME ZONE :tz"),
        {"day": today, "months": months, "tz": tz_name},
    ).scalar_one()


def warning_due(cutoff: datetime) -> tuple[ColumnElement[bool], ...]:
    """Subscribers inactive since before the cutoff, not purged or exempted, and not yet warned
    for this absence."""
    return (User.role == "subscriber", User.purged_at.is_(None), User.purge_exempt_reason.is_(None),
            User.last_seen_at < cutoff,
            or_(User.inactive_warned_at.is_(None), User.inactive_warned_at < User.last_seen_at))


def warning_key(user_id, last_seen_at) -> ColumnElement[str]:
    """inactive-warning:<user id>:<last seen, UTC, ISO 8601 with microseconds>, in SQL: one email
    per user and absence."""
    seen = func.to_char(func.timezone("UTC", last_seen_at), 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
    return literal(f"{KIND}:") + cast(user_id, String) + ":" + seen


def remind_inactive_users(session: Session, ctx: RunContext) -> None:
    """Batches of one statement (UPDATE ... RETURNING the warned users, INSERT their emails),
    committed with the run's cursor."""
    settings = ctx.settings
    cutoff = ctx.details.get("cutoff")
    cutoff = (datetime.fromisoformat(cutoff) if cutoff else
              inactivity_cutoff(session, ctx.today, settings.inactive_after_months, settings.app_timezone))
    ctx.details["cutoff"] = cutoff.isoformat()
    purge_due_at = ctx.now + timedelta(days=settings.purge_grace_days)
    due = warning_due(cutoff)
    while True:
        batch = select(User.id).where(User.id > ctx.cursor(), *due).order_by(User.id).limit(ctx.batch_size)
        warned = (
            update(User)
            # The conditions again: PostgreSQL re-checks them if a sign-in raced the batch.
            # = ANY(ARRAY(...)): the batch's ids become a list to look up, where IN (subquery)
            # would be hash-joined against a second scan of the whole table.
            .where(User.id == any_(func.array(batch.scalar_subquery())), *due)
            .values(inactive_warned_at=ctx.now, purge_due_at=purge_due_at, purge_approved_at=None)
            .returning(User.id, User.email, User.name, User.last_seen_at)
            .cte("warned")
        )
        w = warned.c
        context = json_object(name=w.name, last_seen_on=cast(func.timezone(settings.app_timezone, w.last_seen_at), Date),
                              purge_on=literal(purge_due_at.astimezone(ctx.tz).date().isoformat()),
                              login_url=literal(f"{settings.app_url}/login"))
        queued = queue_from(KIND, "inactive_warning",
                            select(warning_key(w.id, w.last_seen_at), w.email, w.id, context)).cte("queued")
        rows = session.execute(select(w.id, count_added(queued).label("emails"))).all()
        if not rows:
            return
        emails = note_added(session, rows[0].emails)
        if ctx.dry_run:
            ctx.note("would_warn", sorted(r.id for r in rows))
        ctx.batch_done(session, cursor=max(r.id for r in rows), scanned=len(rows), changed=len(rows), emails=emails)
