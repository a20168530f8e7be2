"""purge-dormant-accounts: anonymise accounts past their purge date that nothing protects, with an audit row."""
from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import ColumnElement, String, and_, case, cast, delete, event, exists, func, insert, literal, or_, select, update
from sqlalchemy.orm import Session

from billing.models import Card, Invoice, Subscription
from saas.models import AuditLog, User
from saas.outbox import PRERENDERED, OutboxMessage
from scheduled.ledger import RunContext

log = logging.getLogger(__name__)
ACTOR = "job:purge-dormant-accounts"
PROTECTING_SUBSCRIPTIONS = ("active", "trialing", "past_due")
UNPAID_INVOICES = ("open", "uncollectible")
DELETE_CUSTOMER_TASK = "billing.tasks.delete_stripe_customer"
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
    session.info.setdefault("stripe_deletions", []).extend(r.stripe_customer_id for r in purged if r.stripe_customer_id)
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


def purge_dormant_accounts(session: Session, ctx: RunContext) -> None:
    """Batches of due, unprotected accounts; a dry run lists them in the run's details instead."""
    due = (*purge_due(ctx.now), unprotected_clause())
    while True:
        rows = session.execute(
            select(User.id, User.purge_due_at, User.purge_approved_at)
            .where(User.id > ctx.cursor(), *due)
            .order_by(User.id).limit(ctx.batch_size)
            .with_for_update(of=User)
        ).all()
        if not rows:
            return
        ids = [r.id for r in rows]
        if ctx.dry_run:
            ctx.note("would_purge", [{"user_id": r.id, "approved": r.purge_approved_at is not None,
                                      "purge_due_at": r.purge_due_at.isoformat() if r.purge_due_at else None}
                                     for r in rows])
            purged = ids
        else:
            purged = purge_ids(session, ids, ACTOR, ctx.now)
        ctx.batch_done(session, cursor=ids[-1], scanned=len(ids), changed=len(purged))


@event.listens_for(Session, "after_commit")
def _delete_stripe_customers(session: Session) -> None:
    """Enqueue the Stripe deletions of a committed purge (the task retries; Stripe calls are slow)."""
    customers = session.info.pop("stripe_deletions", None)
    if not customers:
        return
    from scheduled.celery_app import app as celery_app

    for customer_id in customers:
        try:
            celery_app.send_task(DELETE_CUSTOMER_TASK, args=[customer_id])
        except Exception:
            log.error("could not enqueue the Stripe deletion of customer %s", customer_id, exc_info=True)


@event.listens_for(Session, "after_rollback")
def _forget_stripe_customers(session: Session) -> None:
    session.info.pop("stripe_deletions", None)
