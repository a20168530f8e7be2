"""The naive version of each job: an ORM loop that fetches, changes and commits row by row.

Run on the first SAMPLE rows of the table the job walks, and extrapolated to the whole table.
Same rules (is_card_expiring, protection_reason, the templates via queue_email) so the work per
row is comparable; only the shape differs.
"""
from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text

from billing.expiry import is_card_expiring
from billing.models import Card, Invoice, MrrMovement, Subscription
from saas.core.db import session_scope
from saas.core.models import AuditLog, User
from saas.core.outbox import OutboxMessage, queue_email
from scheduled.dormancy import protection_reason

SAMPLE = 20_000


def _flag(session, today, settings, sample):
    for card in session.scalars(select(Card).order_by(Card.id).limit(sample)).all():
        should = card.is_default and is_card_expiring(card.exp_month, card.exp_year, today, settings.card_expiring_days)
        if card.is_expiring != should:
            card.is_expiring = should
            key = f"card-expiring:{card.id}:{card.exp_year}-{card.exp_month:02d}"
            user = session.get(User, card.user_id)
            if should and user.purged_at is None and session.scalar(
                    select(OutboxMessage.id).where(OutboxMessage.idempotency_key == key)) is None:
                queue_email(session, key=key, kind="card-expiring", to=user.email, template="card_expiring",
                            user_id=user.id, context={"name": user.name, "brand": card.brand, "last4": card.last4,
                                                      "exp_month": card.exp_month, "exp_year": card.exp_year,
                                                      "expires_on": card.expires_on.isoformat(),
                                                      "update_url": "https://example.com/billing/card/update"})
            session.commit()


def _remind(session, today, settings, sample):
    now = datetime.now(UTC)
    cutoff = now - timedelta(days=182)
    for user in session.scalars(select(User).order_by(User.id).limit(sample)).all():
        if (user.role == "subscriber" and user.purged_at is None and user.purge_exempt_reason is None
                and user.last_seen_at < cutoff
                and (user.inactive_warned_at is None or user.inactive_warned_at < user.last_seen_at)):
            user.inactive_warned_at, user.purge_due_at = now, now + timedelta(days=settings.purge_grace_days)
            queue_email(session, key=f"inactive-warning:{user.id}:{user.last_seen_at.astimezone(UTC).isoformat(timespec='microseconds')}",
                        kind="inactive-warning", to=user.email, template="inactive_warning", user_id=user.id,
                        context={"name": user.name, "last_seen_on": user.last_seen_at.date().isoformat(),
                                 "purge_on": user.purge_due_at.date().isoformat(),
                                 "login_url": "https://example.com/login"})
            session.commit()


def _purge(session, today, settings, sample):
    now = datetime.now(UTC)
    for user in session.scalars(select(User).order_by(User.id).limit(sample)).all():
        if not (user.role == "subscriber" and user.purged_at is None and user.inactive_warned_at is not None
                and user.last_seen_at < user.inactive_warned_at and user.purge_exempt_reason is None
                and user.purge_due_at is not None and user.purge_due_at <= now):
            continue
        if protection_reason(session, user.id) is not None:
            continue
        for card in session.scalars(select(Card).where(Card.user_id == user.id)):
            session.delete(card)
        for invoice in session.scalars(select(Invoice).where(Invoice.user_id == user.id)):
            invoice.customer_email = invoice.customer_name = None
        session.add(AuditLog(actor="job:purge-dormant-accounts", action="account.purged", subject_type="user",
                             subject_id=str(user.id), details={"reason": "no sign-in"}))
        user.name, user.email, user.password_hash = "", f"purged-{user.id}@invalid", None
        user.purged_at, user.purge_due_at = now, None
        session.commit()


def _finance(session, today, settings, sample):
    """Fetch every row it sums through the ORM and add in Python (the sample of each table)."""
    totals: dict[str, float] = {}
    for model in (Subscription, MrrMovement, Invoice, Card):
        for row in session.scalars(select(model).order_by(model.id).limit(sample)):
            totals[model.__name__] = totals.get(model.__name__, 0) + getattr(row, "amount_cents", 1)
    session.commit()


LOOPS = {"flag-expiring-cards": (_flag, "cards"), "remind-inactive-users": (_remind, "users"),
         "purge-dormant-accounts": (_purge, "users"), "finance-summary": (_finance, None)}


def run_naive(job: str, today, settings, sample: int = SAMPLE) -> tuple[float, float]:
    """(seconds on the sample, seconds extrapolated to the whole table)."""
    loop, table = LOOPS[job]
    with session_scope() as session:
        if table:
            total = session.scalar(text(f"SELECT count(*) FROM {table}"))
        else:  # finance walks four tables: scale by their total
            total = session.scalar(text("SELECT (SELECT count(*) FROM subscriptions) + (SELECT count(*) FROM "
                                        "mrr_movements) + (SELECT count(*) FROM invoices) + (SELECT count(*) FROM cards)"))
            sample_rows = session.scalar(text(
                "SELECT least(:n, (SELECT count(*) FROM subscriptions)) + least(:n, (SELECT count(*) FROM mrr_movements))"
                " + least(:n, (SELECT count(*) FROM invoices)) + least(:n, (SELECT count(*) FROM cards))"), {"n": sample})
        start = time.perf_counter()
        loop(session, today, settings, sample)
        elapsed = time.perf_counter() - start
    done = min(sample, total) if table else sample_rows
    return elapsed, elapsed * total / max(done, 1)
