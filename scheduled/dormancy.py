"""The rules of dormant accounts: what protects an account from purge, which accounts are due,
the admins' review queue, and the purge itself.

The purge job, the admin's "approve purge now" task and the admin review pages all use these,
so an approval can never override a protection the job would honour.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time, tzinfo
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    case,
    cast,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import InstrumentedAttribute, Session

from billing.models import Card, Invoice, Subscription
from billing.tasks import delete_stripe_customer
from saas.core.models import AuditLog, User
from saas.core.outbox import PRERENDERED, OutboxMessage
from saas.core.queue import enqueue_after_commit

log = logging.getLogger(__name__)
PROTECTING_SUBSCRIPTIONS = ("active", "trialing", "past_due")
UNPAID_INVOICES = ("open", "uncollectible")
# What a purged account's emails become (sent ones stay listed, without their contents).
REMOVED = {"subject": "[removed]", "text": "[removed: account purged]", "html": "<p>[removed: account purged]</p>"}


def _protecting_subscription() -> tuple[ColumnElement[bool], ...]:
    return (Subscription.user_id == User.id, Subscription.status.in_(PROTECTING_SUBSCRIPTIONS))


def _unpaid_invoice() -> ColumnElement[bool]:
    return exists().where(Invoice.user_id == User.id, Invoice.status.in_(UNPAID_INVOICES))


def protection_reason_expr() -> ColumnElement[str | None]:
    """Why an account must not be purged, as SQL correlated with `users` (NULL when nothing does).

    The admin queue selects it beside each user; purge_user filters on it.
    """
    subscription = (
        select(literal("subscription ") + Subscription.status)
        .where(*_protecting_subscription())
        .order_by(Subscription.id).limit(1)
        .scalar_subquery()
    )
    return case(
        (subscription.is_not(None), subscription),
        (_unpaid_invoice(), literal("unpaid invoice")),
        (User.credit_balance_cents > 0, literal("credit balance")),
        else_=literal(None, String),
    )


def unprotected_clause() -> ColumnElement[bool]:
    """protection_reason_expr() IS NULL, from the same three rules, written as anti-joins.

    The job filters thousands of warned-but-protected accounts every night: PostgreSQL can hash
    NOT EXISTS against subscriptions and invoices once, where the CASE runs its subqueries per row.
    """
    return and_(~exists().where(*_protecting_subscription()), ~_unpaid_invoice(),
                or_(User.credit_balance_cents <= 0, User.credit_balance_cents.is_(None)))


def protection_reason(session: Session, user_id: int) -> str | None:
    """The reason one account is protected from purge, or None."""
    return session.scalar(select(protection_reason_expr()).where(User.id == user_id))


def purge_due(now: datetime) -> tuple[ColumnElement[bool], ...]:
    """Warned, still inactive since, not exempted, and due (or approved by an admin)."""
    return (
        User.role == "subscriber", User.purged_at.is_(None), User.inactive_warned_at.is_not(None),
        User.last_seen_at < User.inactive_warned_at, User.purge_exempt_reason.is_(None),
        or_(User.purge_due_at <= now, User.purge_approved_at.is_not(None)),
    )


def purge_ids(session: Session, ids: list[int], actor: str, now: datetime) -> list[int]:
    """Anonymise these accounts, set-based, in the caller's transaction; returns the purged ids.

    The Stripe customers are deleted by a retried task enqueued when the transaction commits.
    Invoices stay for accounting with their personal fields removed.
    """
    if not ids:
        return []
    reason = case((User.purge_approved_at.is_not(None), literal("purge approved by an admin")),
                  else_=literal("no sign-in within the grace period after the inactivity warning"))
    session.execute(insert(AuditLog).from_select(
        ["at", "actor", "action", "subject_type", "subject_id", "details"],
        select(literal(now), literal(actor), literal("account.purged"), literal("user"),
               cast(User.id, String),
               func.jsonb_build_object("reason", reason, "warned_at", User.inactive_warned_at,
                                       "purge_due_at", User.purge_due_at))
        .where(User.id.in_(ids)),
    ))
    session.execute(update(Invoice).where(Invoice.user_id.in_(ids))
                    .values(customer_email=None, customer_name=None)
                    .execution_options(synchronize_session=False))
    session.execute(delete(Card).where(Card.user_id.in_(ids)).execution_options(synchronize_session=False))
    tombstone = literal("purged-") + cast(OutboxMessage.user_id, String) + "@invalid"
    session.execute(
        update(OutboxMessage).where(OutboxMessage.user_id.in_(ids))
        .values(to_addr=tombstone, reply_to=None, template=PRERENDERED, context=REMOVED, attachments=[],
                status=case((OutboxMessage.status.in_(("pending", "sending")), literal("failed")),
                            else_=OutboxMessage.status),
                last_error=case((OutboxMessage.status.in_(("pending", "sending")), literal("account purged")),
                                else_=OutboxMessage.last_error))
        .execution_options(synchronize_session=False)
    )
    purged = session.execute(
        update(User).where(User.id.in_(ids), User.purged_at.is_(None))
        .values(name="", email=literal("purged-") + cast(User.id, String) + "@invalid", password_hash=None,
                # A fresh random token signs every session out.
                session_token=func.concat(func.replace(cast(func.gen_random_uuid(), String), "-", ""),
                                          func.replace(cast(func.gen_random_uuid(), String), "-", "")),
                purged_at=now, purge_due_at=None, purge_approved_at=None)
        .returning(User.id, User.stripe_customer_id)
        .execution_options(synchronize_session=False)
    ).all()
    for row in purged:  # slow and retried: a task after the commit (the customer id stays until it is done)
        if row.stripe_customer_id:
            enqueue_after_commit(session, delete_stripe_customer, customer_id=row.stripe_customer_id)
    return [r.id for r in purged]


def purge_user(session: Session, user_id: int, actor: str, now: datetime) -> bool:
    """Purge one account now (the admin's "approve purge now"); refuses protected or purged ones.

    Runs in the caller's transaction; the caller commits.
    """
    row = session.execute(
        select(User.id, protection_reason_expr().label("protected"))
        .where(User.id == user_id, User.purged_at.is_(None), User.role == "subscriber")
        .with_for_update(of=User)
    ).first()
    if row is None or row.protected is not None:
        return False
    return bool(purge_ids(session, [user_id], actor, now))


def purge_approved(session: Session, user_id: int, actor: str, now: datetime) -> bool:
    """Purge an account an admin approved, unless the approval was withdrawn while the task waited
    (a sign-in or an exemption clears it) or a protection arrived: then it goes back to the review
    queue, where the admin sees why. The caller commits."""
    still_approved = session.scalar(select(User.id).where(
        User.id == user_id, User.purge_approved_at.is_not(None), User.purge_exempt_reason.is_(None))
        .with_for_update())  # held until commit: a sign-in now waits for the purge, then finds it done
    if still_approved is None:
        return False
    if purge_user(session, user_id, actor, now):
        return True
    session.execute(update(User).where(User.id == user_id).values(purge_approved_at=None))
    return False


def review_reason_expr() -> ColumnElement[str | None]:
    """Why the review queue shows an account as kept (NULL when nothing keeps it): the purge
    protections, then an admin's exemption."""
    exempt = case((User.purge_exempt_reason.is_not(None), literal("exempted by an admin")), else_=None)
    return func.coalesce(protection_reason_expr(), exempt)


REVIEW_SORTS: dict[str, InstrumentedAttribute[Any]] = {"last_seen": User.last_seen_at, "warned": User.inactive_warned_at, "purge_due": User.purge_due_at,
                "email": User.email}
REVIEW_LIMIT = 500


@dataclass(frozen=True)
class ReviewFilter:
    """The admin queue's filters, already validated: dates are local days in APP_TIMEZONE."""

    seen_before: date | None = None
    warned_before: date | None = None
    due_before: date | None = None
    protected: bool | None = None
    why: str = ""
    sort: str = "purge_due"
    descending: bool = False


def in_review() -> tuple[ColumnElement[bool], ...]:
    """Warned accounts with a purge date, not purged yet and not approved for purge: the review
    queue (an approved account leaves it at once; purge_account puts it back if it refuses)."""
    return (User.purge_due_at.is_not(None), User.purged_at.is_(None), User.purge_approved_at.is_(None))


def purgeable() -> tuple[ColumnElement[bool], ...]:
    """Warned accounts the purge may take: not purged, not exempted, not protected (approved or not)."""
    return (User.role == "subscriber", User.purge_due_at.is_not(None), User.purged_at.is_(None),
            User.purge_exempt_reason.is_(None), unprotected_clause())


def pending_purges(session: Session) -> int:
    """How many accounts the purge may still take: finance's "purges pending"."""
    return session.scalar(select(func.count()).select_from(User).where(*purgeable())) or 0


def awaiting_review(session: Session) -> int:
    """Accounts in the review queue that nothing keeps and no admin has decided on yet."""
    return session.scalar(select(func.count()).select_from(User)
                          .where(*purgeable(), User.purge_approved_at.is_(None))) or 0


def review_queue(wanted: ReviewFilter, tz: tzinfo) -> Select:
    """The review queue's rows (User, why) filtered and sorted as asked."""
    reason = review_reason_expr()
    stmt = select(User, reason.label("why")).where(*in_review())
    for day, column in ((wanted.seen_before, User.last_seen_at), (wanted.warned_before, User.inactive_warned_at),
                        (wanted.due_before, User.purge_due_at)):
        if day is not None:
            stmt = stmt.where(column < datetime.combine(day, time(0), tzinfo=tz))
    if wanted.protected is not None:
        stmt = stmt.where(reason.is_not(None) if wanted.protected else reason.is_(None))
    if wanted.why:
        stmt = stmt.where(reason == wanted.why)
    column = REVIEW_SORTS[wanted.sort]
    order = column.desc().nulls_last() if wanted.descending else column.asc().nulls_first()
    return stmt.order_by(order, User.id).limit(REVIEW_LIMIT)


def review_reasons(session: Session) -> list[str]:
    """The distinct reasons that keep accounts of the queue, for the filter's choices."""
    reason = review_reason_expr()
    return sorted(session.scalars(select(reason).distinct().where(*in_review(), reason.is_not(None))))
