"""The admin landing page's list of what needs attention: one provider per kind of trouble.

Each provider returns an Attention (a count, what it means, where to act) or None when it does
not apply. Add a provider to PROVIDERS to put a new kind on the page.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from flask import url_for
from sqlalchemy.orm import Session

from billing.dunning import open_case_count
from scheduled import attention
from scheduled.dormancy import awaiting_review


@dataclass(frozen=True)
class Attention:
    key: str
    title: str
    count: int
    href: str
    hint: str


Provider = Callable[[Session, datetime], Attention | None]


def dormant_accounts(session: Session, now: datetime) -> Attention:
    return Attention("dormant", "Dormant accounts awaiting review", awaiting_review(session),
                     url_for("admin.dormant", protected="no"),
                     "Warned, not protected or exempted, and no decision yet: the purge takes them when due.")


def failed_emails(session: Session, now: datetime) -> Attention:
    return Attention("failed-emails", "Failed emails", attention.failed_emails(session),
                     url_for("admin.outbox", status="failed"), "Gave up after their retries; retry them once fixed.")


def stale_emails(session: Session, now: datetime) -> Attention:
    minutes = int(attention.STALE_PENDING.total_seconds() // 60)
    return Attention("stale-emails", "Emails waiting too long", attention.stale_emails(session, now),
                     url_for("admin.outbox", status="pending"),
                     f"Pending for more than {minutes} minutes: is a worker running, is SMTP reachable?")


def job_runs(session: Session, now: datetime) -> Attention:
    days = attention.RECENT_RUNS.days
    return Attention("job-runs", "Failed or skipped job runs", attention.troubled_runs(session, now),
                     url_for("admin.jobs"), f"In the last {days} days.")


def dunning_cases(session: Session, now: datetime) -> Attention:
    return Attention("dunning", "Open dunning cases", open_case_count(session), url_for("admin.dunning_cases"),
                     "Failed renewals being won back: pause a case or write it off there.")


PROVIDERS: list[Provider] = [dormant_accounts, dunning_cases, failed_emails, stale_emails, job_runs]


def attention_items(session: Session, now: datetime) -> list[Attention]:
    """Every provider's item, in PROVIDERS' order."""
    return [item for provider in PROVIDERS if (item := provider(session, now)) is not None]
