"""What needs an admin's eye, counted: the figures behind the /admin landing page.

Each count is one indexed query; the page shows them with links. Dormant accounts are counted by
scheduled.dormancy (the rules of the purge), the rest here.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from saas.core.outbox import OutboxMessage
from scheduled.ledger import FIRST_START_SKIP
from scheduled.models import JobRun

# Delivery retries end about two minutes after the first attempt (4+8+16+32+64 s): an email still
# waiting after this is stuck (no worker, or the SMTP server has been down a while).
STALE_PENDING = timedelta(minutes=15)
RECENT_RUNS = timedelta(days=7)


def failed_emails(session: Session) -> int:
    """Emails that gave up after their retries (or could not render)."""
    return session.scalar(select(func.count()).where(OutboxMessage.status == "failed")) or 0


def stale_emails(session: Session, now: datetime) -> int:
    """Emails waiting longer than STALE_PENDING."""
    return session.scalar(select(func.count()).where(
        OutboxMessage.status.in_(("pending", "sending")), OutboxMessage.created_at < now - STALE_PENDING)) or 0


def troubled_runs(session: Session, now: datetime) -> int:
    """Real job runs that failed, or slots skipped because no beat ran, within RECENT_RUNS (not
    the baseline a fresh install records as skipped)."""
    return session.scalar(select(func.count()).where(
        JobRun.status.in_(("failed", "skipped")), JobRun.dry_run.is_(False),
        JobRun.error.is_distinct_from(FIRST_START_SKIP), JobRun.started_at >= now - RECENT_RUNS)) or 0
