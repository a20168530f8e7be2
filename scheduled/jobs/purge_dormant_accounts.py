"""purge-dormant-accounts: anonymise accounts past their purge date that nothing protects, with an audit row.
The rules (protections, due, the purge itself) are in scheduled.dormancy."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from saas.core.models import User
from scheduled.dormancy import purge_due, purge_ids, unprotected_clause
from scheduled.ledger import RunContext

ACTOR = "job:purge-dormant-accounts"


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
