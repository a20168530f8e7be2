"""flag-expiring-cards: set and clear Card.is_expiring by THE expiry rule, and warn each owner once."""
from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Date,
    DateTime,
    FromClause,
    Insert,
    Select,
    String,
    any_,
    cast,
    func,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy.orm import Session

from billing.expiry import expiring_clause
from billing.models import Card
from saas.core.db import utcnow
from saas.core.models import User
from saas.core.outbox import count_added, json_object, note_added, queue_from
from scheduled.ledger import RunContext
from scheduled.models import JobRun

KIND = "card-expiring"
# Flagged cards changed up to this long before the last run started are checked again: a card
# update whose transaction was still open when that run started was not visible to it.
RECHECK_MARGIN = timedelta(hours=1)


def _last_run_started(session: Session, ctx: RunContext) -> datetime | None:
    """When the newest finished real run of this job started (wall clock), or None."""
    started = session.scalar(select(func.max(JobRun.details["started"].astext)).where(
        JobRun.job == ctx.job, JobRun.status == "succeeded", JobRun.dry_run.is_(False)))
    return datetime.fromisoformat(started) if started else None


def flag_expiring_cards(session: Session, ctx: RunContext) -> None:
    """Four passes over small ranges of partial indexes, never a walk of the whole table.

    A card should be flagged when it is its owner's default card and expiring on ctx.today;
    every other card loses the flag. Each pass walks its index in order with its own keyset
    cursor in the run's details (a killed run resumes there; a dry run, which changes nothing,
    still moves on):
    1. clear the flagged cards that are no longer default, 2. or no longer expiring;
    3. recheck the flagged cards changed since the last run started (a card webhook recomputes
       the flag without an email, and an expiry can change in place) and warn those whose email
       is missing (the first run of all checks every flagged card);
    4. flag the unflagged default expiring cards, and warn them in the same transaction.
    """
    # The clock that stamps cards.updated_at (not the scheduler's), so the two compare.
    ctx.details.setdefault("started", utcnow().isoformat())
    expiring = expiring_clause(ctx.today, ctx.settings.card_expiring_days)
    _clear(session, ctx, "clear_not_default_cursor", Card.is_expiring, ~Card.is_default)
    _clear(session, ctx, "clear_not_expiring_cursor", Card.is_expiring, Card.is_default, ~expiring)
    _recheck(session, ctx, expiring)
    _flag(session, ctx, expiring)


def _pick(ctx: RunContext, cursor_name: str, keys: tuple, *where) -> Select:
    """The next batch of `where` in index order (`keys`, ending with Card.id), after the cursor."""
    pick = select(Card.id).where(*where).order_by(*keys).limit(ctx.batch_size)
    cursor = ctx.cursor(cursor_name, None)
    if cursor is not None:
        pick = pick.where(tuple_(*keys) > tuple_(*(_decode(key, value) for key, value in zip(keys, cursor, strict=True))))
    return pick


def _decode(key, value: Any) -> Any:
    if isinstance(key.type, Date):
        return date.fromisoformat(value)
    if isinstance(key.type, DateTime):
        return datetime.fromisoformat(value)
    return value


def _encode(values: tuple) -> list[Any]:
    return [v.isoformat() if isinstance(v, date) else v for v in values]


BY_EXPIRY = (Card.expires_on, Card.id)  # the order of ix_cards_to_flag and ix_cards_to_clear
BY_CHANGE = (Card.updated_at, Card.id)  # the order of ix_cards_flagged_updated_at


def _clear(session: Session, ctx: RunContext, cursor_name: str, *wrong) -> None:
    while True:
        cleared = session.execute(
            update(Card).where(Card.id == any_(func.array(_pick(ctx, cursor_name, BY_EXPIRY, *wrong).scalar_subquery())),
                               *wrong)
            .values(is_expiring=False, updated_at=Card.updated_at)  # our flag is not a card update
            .returning(*BY_EXPIRY)
            .execution_options(synchronize_session=False)
        ).all()
        if not cleared:
            return
        if ctx.dry_run:
            ctx.note("would_flag_or_clear", sorted(r.id for r in cleared))
        ctx.batch_done(session, name=cursor_name, cursor=_encode(max(tuple(r) for r in cleared)),
                       scanned=len(cleared), changed=len(cleared))


def _recheck(session: Session, ctx: RunContext, expiring) -> None:
    since = _last_run_started(session, ctx)
    changed_since = [] if since is None else [Card.updated_at >= since - RECHECK_MARGIN]
    while True:
        pick = _pick(ctx, "recheck_cursor", BY_CHANGE, Card.is_expiring, Card.is_default, expiring, *changed_since)
        candidates = session.execute(select(*BY_CHANGE).where(Card.id == any_(func.array(pick.scalar_subquery())))).all()
        if not candidates:
            return
        queued = _queue_warnings(ctx, Card.__table__, Card.id.in_([c.id for c in candidates])).cte("queued")
        emails = note_added(session, session.execute(select(count_added(queued))).scalar_one())
        ctx.batch_done(session, name="recheck_cursor", cursor=_encode(max(tuple(c) for c in candidates)),
                       scanned=len(candidates), emails=emails)


def _flag(session: Session, ctx: RunContext, expiring) -> None:
    to_flag = (~Card.is_expiring, Card.is_default, expiring)
    while True:
        flagged = (
            update(Card).where(Card.id == any_(func.array(_pick(ctx, "flag_cursor", BY_EXPIRY, *to_flag).scalar_subquery())),
                               *to_flag)
            .values(is_expiring=True, updated_at=Card.updated_at)
            .returning(Card.id, Card.brand, Card.last4, Card.exp_month, Card.exp_year, Card.expires_on, Card.user_id)
            .cte("flagged")
        )
        # One statement: the flag, and the emails of the cards flagged now (none where this expiry's
        # email exists: the card may have been warned, unflagged and flagged again).
        queued = _queue_warnings(ctx, flagged).cte("queued")
        rows = session.execute(select(flagged.c.id, flagged.c.expires_on, count_added(queued).label("emails"))).all()
        if not rows:
            return
        emails = note_added(session, rows[0].emails)
        if ctx.dry_run:
            ctx.note("would_flag_or_clear", sorted(r.id for r in rows))
        ctx.batch_done(session, name="flag_cursor", cursor=_encode(max((r.expires_on, r.id) for r in rows)),
                       scanned=len(rows), changed=len(rows), emails=emails)


def _queue_warnings(ctx: RunContext, cards: FromClause, *where) -> Insert:
    """Queue the card-expiring email of each card in `cards` (a table or a CTE with the cards'
    columns) whose owner is not purged; an email that exists for the card's expiry is kept."""
    c = cards.c
    key = (literal(f"{KIND}:") + cast(c.id, String) + ":" + cast(c.exp_year, String)
           + "-" + func.lpad(cast(c.exp_month, String), 2, "0"))
    context = json_object(name=User.name, brand=c.brand, last4=c.last4, exp_month=c.exp_month,
                          exp_year=c.exp_year, expires_on=c.expires_on,
                          update_url=literal(f"{ctx.settings.app_url}/billing/card"))  # billing.update_card
    return queue_from(KIND, "card_expiring", select(key, User.email, User.id, context)
                      .join_from(cards, User, User.id == c.user_id).where(*where, User.purged_at.is_(None)))
