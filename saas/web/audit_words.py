"""The audit log in words: who (an email, a job, Stripe), did what, to which subject, and why."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import url_for
from sqlalchemy import select
from sqlalchemy.orm import Session

from saas.core.models import AuditLog, User
from saas.web.filters import localtime

ACTIONS = {
    "dormant.exempt": "exempted from purge",
    "dormant.unexempt": "exemption removed",
    "dormant.approve-purge": "purge approved",
    "dormant.approve-refused": "purge approval refused",
    "account.purged": "account purged",
    "job.run-now": "job run now",
    "job.dry-run": "job dry run",
    "outbox.retry": "email sent again",
    "stripe.customer_deleted": "Stripe customer deleted",
}
# Details shown as the entry's reason rather than among its details.
REASON_KEYS = ("reason", "protected_by")
LABELS = {"bulk": "part of a bulk action", "slot": "slot", "kind": "email kind", "attempts": "attempts before",
          "warned_at": "warned", "purge_due_at": "purge was due", "customer": "Stripe customer"}


@dataclass
class Entry:
    id: int
    at: datetime
    actor: str
    action: str
    code: str
    subject: str
    subject_href: str | None
    reason: str | None
    details: list[tuple[str, str]] = field(default_factory=list)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
        return localtime(moment).strftime("%Y-%m-%d %H:%M") if moment.tzinfo else value
    if isinstance(value, list):
        return ", ".join(_value(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_value(v)}" for k, v in value.items())
    return str(value)


def _actor(entry: AuditLog, emails: dict[int, str]) -> str:
    kind, _, name = entry.actor.partition(":")
    if entry.actor_id is not None and entry.actor_id in emails:
        return emails[entry.actor_id]
    if kind == "job":
        return f"the {name} job"
    if kind == "stripe":
        return f"Stripe ({name})" if name else "Stripe"
    return entry.actor


def _subject(entry: AuditLog, emails: dict[int, str]) -> tuple[str, str | None]:
    sid = entry.subject_id
    if entry.subject_type == "user" and sid and sid.isdigit():
        return emails.get(int(sid), f"account #{sid}"), url_for("admin.audit_log", subject=f"user:{sid}")
    if entry.subject_type == "outbox" and sid and sid.isdigit():
        return f"email #{sid}", url_for("admin.outbox_message", message_id=int(sid))
    if entry.subject_type == "job" and sid:
        return sid, url_for("admin.jobs") + f"#job-{sid}"
    return f"{entry.subject_type} {sid or ''}".strip(), None


def describe(session: Session, entries: list[AuditLog]) -> list[Entry]:
    """Each entry in words; the emails of the actors and user subjects are looked up in one query."""
    ids = {e.actor_id for e in entries if e.actor_id is not None}
    ids |= {int(e.subject_id) for e in entries if e.subject_type == "user" and (e.subject_id or "").isdigit()}
    emails = {uid: email for uid, email in session.execute(select(User.id, User.email).where(User.id.in_(ids)))} if ids else {}
    described = []
    for e in entries:
        details = dict(e.details or {})
        reason = next((str(details.pop(k)) for k in REASON_KEYS if details.get(k)), None)
        subject, href = _subject(e, emails)
        shown = [(LABELS.get(k, k.replace("_", " ")), _value(v)) for k, v in details.items()
                 if v not in (None, "", False)]
        described.append(Entry(e.id, e.at, _actor(e, emails), ACTIONS.get(e.action, e.action.replace(".", ": ")),
                               e.action, subject, href, reason, shown))
    return described
