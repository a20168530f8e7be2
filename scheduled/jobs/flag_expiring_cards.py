"""flag-expiring-cards: set and clear Card.is_expiring by THE expiry rule, and warn each owner once."""
from __future__ import annotations

from sqlalchemy import String, and_, cast, exists, func, literal, or_, select, update
from sqlalchemy.orm import Session

from billing.expiry import expiring_clause
from billing.models import Card
from saas.models import User
from saas.outbox import OutboxMessage
from scheduled.jobs.emails import queue_batch
from scheduled.ledger import RunContext

KIND = "card-expiring"


def _email_key():
    """The outbox key in SQL; the same text as the Python f-string below."""
    return (literal(f"{KIND}:") + cast(Card.id, String) + ":" + cast(Card.exp_year, String)
            + "-" + func.lpad(cast(Card.exp_month, String), 2, "0"))


def flag_expiring_cards(session: Session, ctx: RunContext) -> None:
    """Batches over the cards whose flag is wrong or whose warning is not queued yet.

    A card should be flagged when it is its owner's default card and expiring on ctx.today;
    every other card (replaced, updated, no longer default) loses the flag.
    """
    settings = ctx.settings
    should_flag = and_(Card.is_default, expiring_clause(ctx.today, settings.card_expiring_days))
    owner_active = exists().where(User.id == Card.user_id, User.purged_at.is_(None))
    not_warned = ~exists().where(OutboxMessage.idempotency_key == _email_key())
    update_url = f"{settings.app_url}/billing/card"  # billing.update_card
    while True:
        cursor = ctx.cursor()
        ids = list(session.scalars(
            select(Card.id)
            .where(Card.id > cursor,
                   or_(Card.is_expiring != should_flag, and_(should_flag, owner_active, not_warned)))
            .order_by(Card.id).limit(ctx.batch_size)
        ))
        if not ids:
            return
        changed = session.execute(
            update(Card)
            .where(Card.id.in_(ids), Card.is_expiring != should_flag)
            .values(is_expiring=should_flag, updated_at=Card.updated_at)  # our flag is not a card update
            .execution_options(synchronize_session=False)
        ).rowcount
        to_warn = session.execute(
            select(Card.id, Card.brand, Card.last4, Card.exp_month, Card.exp_year, Card.expires_on,
                   User.id.label("user_id"), User.email, User.name)
            .join(User, User.id == Card.user_id)
            .where(Card.id.in_(ids), should_flag, User.purged_at.is_(None), not_warned)
        ).all()
        emails = queue_batch(session, kind=KIND, template="card_expiring", rows=[{
            "key": f"{KIND}:{r.id}:{r.exp_year}-{r.exp_month:02d}", "to": r.email, "user_id": r.user_id,
            "context": {"name": r.name, "brand": r.brand, "last4": r.last4, "exp_month": r.exp_month,
                        "exp_year": r.exp_year, "expires_on": r.expires_on.isoformat(),
                        "update_url": update_url},
        } for r in to_warn])
        if ctx.dry_run:
            ctx.note("would_flag_or_clear", ids)
        ctx.batch_done(session, cursor=ids[-1], scanned=len(ids), changed=changed, emails=emails)
