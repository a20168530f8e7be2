"""Dunning: win back a failed renewal. A case per open invoice of a past_due subscription, its steps on
DUNNING_SCHEDULE, and how it ends (paid, final action, written off, ended at Stripe).

Cases are opened and closed by the webhook handlers (billing/handlers.py calls the functions below in
the event's transaction) and repaired by `sync_cases` (the reconcile job, for a webhook that was
lost); `advance-dunning` (scheduled/jobs/advance_dunning.py) takes the steps that fall due.

Step k of a case falls due DUNNING_SCHEDULE[k] days after the failure on APP_TIMEZONE's calendar:
the same wall-clock time N days later (23 or 25 hours across a DST change), a time skipped by the
change moved forward by the gap, a repeated time at its first occurrence. Step 0 is the failure's own email, sent by the
webhook; the last step sends the last email and applies DUNNING_FINAL_ACTION.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import exists, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from billing import gateway, records
from billing.current import current_case_query
from billing.models import DunningCase, DunningStep, Invoice, Subscription

__all__ = ["DunningCase", "account_ended", "current_case", "invoice_ended", "invoice_paid", "next_step", "open_case",
           "pause", "resume", "step_due_at", "subscription_ended", "sync_cases", "write_off"]
from billing.plans import monthly_cents
from saas.core.db import utcnow
from saas.core.models import User
from saas.core.outbox import queue_email
from saas.core.settings import Settings

OPEN = ("open", "paused")  # a case not ended yet
RECOVER_PATH = "/billing/recover/"  # + link_token: the no-login link (saas.web.views.recover)
FINAL_WORDS = {"cancel": "cancelled", "mark_unpaid": "suspended", "keep": "kept as it is, with the payment still due"}


# The schedule's clock ------------------------------------------------------------------------------
def _wall(moment: datetime, tz: ZoneInfo) -> datetime:
    """The naive local wall-clock time of an aware instant."""
    return moment.astimezone(tz).replace(tzinfo=None)


def _instant(wall: datetime, tz: ZoneInfo) -> datetime:
    """The aware UTC instant of a local wall-clock time: a repeated time is its first occurrence, a time
    in a DST gap is moved forward by the gap (02:30 on a spring-forward night is 03:30), PEP 495's fold=0."""
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC)


def step_due_at(opened_at: datetime, days: int, tz: ZoneInfo) -> datetime:
    """When a step `days` after a failure at `opened_at` falls due (UTC)."""
    return _instant(_wall(opened_at, tz) + timedelta(days=days), tz)


def opened_by(slot: datetime, days: int, tz: ZoneInfo) -> datetime:
    """The latest failure time whose step `days` later is due at `slot`: a case opened at or before it is
    due (the inverse of step_due_at, which the job compares with the index on opened_at)."""
    return _instant(_wall(slot, tz) - timedelta(days=days), tz)


@dataclass(frozen=True)
class NextStep:
    step: int
    due_at: datetime
    final: bool


def next_step(case: DunningCase, settings: Settings) -> NextStep | None:
    """The case's next step and when it falls due, or None (ended, paused, or past the last step)."""
    schedule = settings.dunning_schedule
    if case.status != "open" or case.step + 1 >= len(schedule):
        return None
    k = case.step + 1
    return NextStep(k, step_due_at(case.opened_at, schedule[k], settings.tz), k == len(schedule) - 1)


def final_on(case: DunningCase, settings: Settings) -> date:
    """The local date of the last step (the final action)."""
    return step_due_at(case.opened_at, settings.dunning_schedule[-1], settings.tz).astimezone(settings.tz).date()


# A payment's outcome on the subscription -----------------------------------------------------------------
def follow_payment(session: Session, sub: Subscription, status: str, created: int) -> None:
    """A charge's outcome (`created`: its second) moves the subscription to `status` (active after a payment,
    past_due after a failure). When the row is stamped with that second or a later one, it may hold a read of
    Stripe from just before the charge (records.answer_stamp): Stripe's subscription is read again and that
    is applied instead; the caller holds the account's lock (records.upsert_invoice takes it)."""
    if created > sub.stripe_event_created or sub.status == "canceled":
        records.set_subscription_status(session, sub, status, created)
        return
    try:
        fresh = gateway.retrieve_subscription(sub.stripe_subscription_id)
    except gateway.NotFound:  # not at Stripe (another account's, or a test's own): the outcome as it says
        records.set_subscription_status(session, sub, status, created)
        return
    records.store_subscription_answer(session, sub.user_id, fresh)


# Opening and closing -------------------------------------------------------------------------------
def open_case_for(session: Session, invoice: Invoice) -> DunningCase | None:
    """The invoice's case, unless it has ended."""
    return session.scalar(select(DunningCase).where(DunningCase.invoice_id == invoice.id,
                                                    DunningCase.status.in_(OPEN)).with_for_update())


def current_case(session: Session, user_id: int) -> DunningCase | None:
    """The account's newest case still open or paused (the banner, Pay now, the card update)."""
    return session.scalar(current_case_query(user_id))


def open_case(session: Session, invoice: Invoice, sub: Subscription | None) -> DunningCase | None:
    """Open the case of an open invoice of a past_due subscription (once per invoice: a second failure
    of the same invoice is the same case); None when the invoice is not in dunning."""
    if sub is None or sub.status != "past_due" or invoice.status != "open" or invoice.user_id is None:
        return None
    opened_at = invoice.first_failed_at or utcnow()
    new_id = session.execute(
        insert(DunningCase).values(
            user_id=invoice.user_id, subscription_id=sub.id, invoice_id=invoice.id, status="open", step=0,
            amount_cents=invoice.amount_cents, currency=invoice.currency,
            mrr_cents=monthly_cents(sub.amount_cents, sub.interval), opened_at=opened_at,
            link_token=secrets.token_urlsafe(32))
        .on_conflict_do_nothing(index_elements=["invoice_id"]).returning(DunningCase.id)).scalar_one_or_none()
    if new_id is not None:
        session.execute(insert(DunningStep).values(case_id=new_id, step=0, days=0, final=False, taken_at=opened_at)
                        .on_conflict_do_nothing(index_elements=["case_id", "step"]))
    return session.scalar(select(DunningCase).where(DunningCase.invoice_id == invoice.id)
                          .execution_options(populate_existing=True))


def first_email_context(case: DunningCase | None, settings: Settings) -> dict[str, Any]:
    """What the failure's own email (step 0) adds when the invoice is in dunning: the no-login link, the
    next reminder and the final action's date."""
    if case is None or case.status not in OPEN:
        return {"recover_url": "", "next_on": "", "final_on": "", "final_action": ""}
    upcoming = next_step(case, settings)
    return {"recover_url": settings.app_url + RECOVER_PATH + case.link_token,
            "next_on": upcoming.due_at.astimezone(settings.tz).date().isoformat() if upcoming else "",
            "final_on": final_on(case, settings).isoformat(),
            "final_action": FINAL_WORDS[settings.dunning_final_action]}


def recovery_cause(case: DunningCase, invoice: Invoice) -> str:
    """How a paid case was won: a retry we started (Pay now, a new card), the bank's confirmation of a
    held payment, else Stripe's own retry."""
    if case.pending_cause:
        return case.pending_cause
    if invoice.action_required_at is not None:
        return "authentication"
    return "automatic_retry"


def invoice_paid(session: Session, invoice: Invoice, at: datetime | None = None) -> DunningCase | None:
    """A paid invoice ends its case as recovered, and the subscriber is thanked once."""
    case = open_case_for(session, invoice)
    if case is None:
        return None
    case.status, case.closed_at = "recovered", at or utcnow()
    case.cause, case.pending_cause = recovery_cause(case, invoice), None
    user = session.get(User, case.user_id) if case.user_id else None
    if user is not None and user.purged_at is None:
        queue_email(session, key=f"dunning-recovered:{case.id}", kind="dunning-recovered", to=user.email,
                    template="dunning_recovered", user_id=user.id,
                    context={"name": user.name or user.email, "amount_cents": case.amount_cents,
                             "currency": case.currency.upper()})
    return case


def invoice_ended(session: Session, invoice: Invoice, at: datetime | None = None) -> DunningCase | None:
    """Voided or marked uncollectible at Stripe: nothing more to win back on it; the case closes."""
    if invoice.status not in ("void", "uncollectible"):
        return None
    case = open_case_for(session, invoice)
    if case is not None:
        case.status, case.closed_at = "closed", at or utcnow()
    return case


def subscription_ended(session: Session, sub: Subscription, at: datetime | None = None) -> int:
    """A canceled subscription closes its open cases (canceled elsewhere: not our final action)."""
    if sub.status != "canceled":
        return 0
    rows = session.execute(update(DunningCase).where(DunningCase.subscription_id == sub.id,
                                                     DunningCase.status.in_(OPEN))
                           .values(status="closed", closed_at=at or utcnow()).returning(DunningCase.id)).all()
    return len(rows)


def account_ended(session: Session, user_id: int, at: datetime | None = None) -> int:
    """The customer was deleted at Stripe (or the account purged): its open cases close."""
    rows = session.execute(update(DunningCase).where(DunningCase.user_id == user_id, DunningCase.status.in_(OPEN))
                           .values(status="closed", closed_at=at or utcnow()).returning(DunningCase.id)).all()
    return len(rows)


def note_retry(session: Session, case: DunningCase, cause: str) -> None:
    """A retry we start (Pay now, a new card) names the cause the payment will be counted under."""
    case.pending_cause = cause


def retry_failed(session: Session, case_id: int, cause: str) -> None:
    """The retry we started was declined: a later payment is not counted as its doing."""
    session.execute(update(DunningCase).where(DunningCase.id == case_id, DunningCase.pending_cause == cause)
                    .values(pending_cause=None))


# Retries we start, and the final action ----------------------------------------------------------------
class NothingToPay(Exception):
    """The account has no open dunning case (paid meanwhile, or never failed); the message says so."""


def retry_open_invoice(session: Session, user: User, cause: str, attempt: str) -> DunningCase:
    """Charge the open invoice of the account's case now, through the gateway (Pay now, or a card just
    saved): the case is recovered at once when it is paid (the invoice.paid webhook finds it closed), and
    a decline raises gateway.PaymentError with the subscriber's message. `attempt` is the try's own
    idempotency key part. The cause is committed before Stripe is called, so the webhook that the
    payment sends, which may be processed before this returns, counts the recovery under it."""
    case = current_case(session, user.id)
    invoice = session.get(Invoice, case.invoice_id) if case is not None and case.invoice_id else None
    if case is None or invoice is None or invoice.status != "open":
        raise NothingToPay("There is nothing to pay: your account is up to date.")
    case_id, invoice_id = case.id, invoice.stripe_invoice_id
    note_retry(session, case, cause)
    session.commit()
    try:
        paid = gateway.pay_invoice(invoice_id, attempt)
    except gateway.PaymentError:
        retry_failed(session, case_id, cause)
        session.commit()
        raise
    # Stripe's answer is as new as the payment's own events (same second): it may be applied over them.
    at = (paid.get("status_transitions") or {}).get("paid_at") or int(utcnow().timestamp()) - 1
    invoice = records.upsert_invoice(session, user, paid, at)
    sub = session.get(Subscription, invoice.subscription_id, with_for_update=True) if invoice.subscription_id else None
    if invoice.status == "paid":
        if sub is not None and sub.status in ("past_due", "unpaid"):
            follow_payment(session, sub, "active", at)
        invoice_paid(session, invoice, invoice.paid_at)
    return session.get_one(DunningCase, case_id, populate_existing=True)


def apply_final_action(session: Session, case: DunningCase) -> bool:
    """DUNNING_FINAL_ACTION of a lost case, through the gateway, once (False when already done):
    `cancel` cancels the subscription at Stripe; `mark_unpaid` marks the invoice uncollectible at Stripe
    (its retries stop) and our subscription unpaid, so access ends (Stripe's API has no call that sets a
    subscription's status: its own "mark unpaid" rule does that when its retries run out)."""
    if case.final_action_done_at is not None or case.status != "lost":
        return False
    if case.user_id is not None:
        records.lock_account(session, case.user_id)  # before the call: its answer is then the newest (records)
    sub = session.get(Subscription, case.subscription_id, with_for_update=True) if case.subscription_id else None
    invoice = session.get(Invoice, case.invoice_id) if case.invoice_id else None
    started = int(utcnow().timestamp()) - 1
    user = session.get(User, case.user_id) if case.user_id else None
    if case.final_action == "cancel" and sub is not None and sub.status != "canceled":
        try:
            obj = gateway.cancel_subscription(sub.stripe_subscription_id)
        except gateway.NotFound:
            obj = None
        if obj is not None and user is not None:
            records.store_subscription_answer(session, user.id, obj)
    elif case.final_action == "mark_unpaid":
        if invoice is not None and invoice.status == "open":
            try:
                obj = gateway.mark_invoice_uncollectible(invoice.stripe_invoice_id)
            except gateway.NotFound:
                obj = None
            if obj is not None:
                records.upsert_invoice(session, user, obj, started)
        if sub is not None and sub.status == "past_due":
            records.set_subscription_status(session, sub, "unpaid", started)
    case.final_action_done_at = utcnow()
    return True


# Admin actions ----------------------------------------------------------------------------------------
class CaseError(ValueError):
    """The action does not apply to the case in its state; the message says why."""


def pause(session: Session, case: DunningCase, at: datetime) -> None:
    if case.status != "open":
        raise CaseError("Only an open case can be paused.")
    case.status, case.paused_at = "paused", at


def resume(session: Session, case: DunningCase) -> None:
    if case.status != "paused":
        raise CaseError("Only a paused case can be resumed.")
    case.status, case.paused_at = "open", None


def write_off(session: Session, case: DunningCase, at: datetime, note: str) -> None:
    if case.status not in OPEN:
        raise CaseError("This case has already ended.")
    case.status, case.closed_at, case.note = "written_off", at, note or None


# Repair (the reconcile job) -----------------------------------------------------------------------------
def open_case_count(session: Session) -> int:
    """Cases still being worked (open or paused), for the admin's landing page."""
    return session.scalar(select(func.count()).where(DunningCase.status.in_(("open", "paused")))) or 0


def sync_cases(session: Session, user_ids: list[int] | None = None, limit: int = 5000) -> dict[str, int]:
    """Open and close cases from the invoice and subscription rows, for a webhook that was lost: an open,
    failed invoice of a past_due subscription without a case gets one (and its step-0 email, unless sent);
    a case whose invoice was paid is recovered (Stripe's retry), one whose invoice ended or whose
    subscription was canceled is closed. `user_ids` limits it to a slice of accounts. The counts.

    Call it after the rows were refreshed from Stripe (the reconcile job's repair), in its transaction.
    """
    only = [Invoice.user_id.in_(user_ids)] if user_ids is not None else []
    missing = session.scalars(
        select(Invoice).join(Subscription, Subscription.id == Invoice.subscription_id)
        .where(Invoice.status == "open", Invoice.first_failed_at.is_not(None), Subscription.status == "past_due",
               ~exists().where(DunningCase.invoice_id == Invoice.id), *only).limit(limit)).all()
    opened = 0
    for invoice in missing:
        case = open_case(session, invoice, session.get(Subscription, invoice.subscription_id))
        opened += case is not None
    stale = session.execute(
        select(DunningCase, Invoice, Subscription)
        .outerjoin(Invoice, Invoice.id == DunningCase.invoice_id)
        .outerjoin(Subscription, Subscription.id == DunningCase.subscription_id)
        .where(DunningCase.status.in_(OPEN),
               or_(Invoice.id.is_(None), Invoice.status != "open", Subscription.status == "canceled"),
               *([DunningCase.user_id.in_(user_ids)] if user_ids is not None else []))
        .limit(limit)).all()
    recovered = closed = 0
    for case, invoice, sub in stale:
        if invoice is not None and invoice.status == "paid":
            recovered += invoice_paid(session, invoice, invoice.paid_at) is not None
        elif invoice is not None and invoice.status in ("void", "uncollectible"):
            closed += invoice_ended(session, invoice) is not None
        elif sub is not None and sub.status == "canceled":
            closed += subscription_ended(session, sub, sub.canceled_at)
        else:  # the invoice row is gone (it cannot be, short of a manual delete): nothing to win back
            case.status, case.closed_at = "closed", utcnow()
            closed += 1
    return {"opened": opened, "recovered": recovered, "closed": closed}


# The admin page ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CaseRow:
    """One case as /admin/dunning shows it."""

    case: DunningCase
    email: str | None
    days_open: int
    next_action: str
    next_at: datetime | None


def next_action_words(case: DunningCase, settings: Settings) -> tuple[str, datetime | None]:
    """What the case does next and when, in an admin's words."""
    if case.status == "paused":
        return "paused: no step until resumed", None
    upcoming = next_step(case, settings)
    if upcoming is None:
        return ("none: the subscription is kept past due, Stripe keeps retrying" if case.final_action == "keep"
                else "none"), None
    if upcoming.final:
        return f"last email and final action ({settings.dunning_final_action})", upcoming.due_at
    return f"reminder email (step {upcoming.step})", upcoming.due_at


def admin_cases(session: Session, settings: Settings, now: datetime, closed_limit: int = 100
                ) -> tuple[list[CaseRow], list[CaseRow]]:
    """Open and paused cases (oldest first), and the newest ended ones with their outcome."""
    def rows(stmt) -> list[CaseRow]:
        found = []
        for case, email in session.execute(stmt).all():
            end = case.closed_at or now
            action, at = next_action_words(case, settings) if case.status in OPEN else ("", None)
            found.append(CaseRow(case, email, max((end - case.opened_at).days, 0), action, at))
        return found

    base = select(DunningCase, User.email).outerjoin(User, User.id == DunningCase.user_id)
    running = rows(base.where(DunningCase.status.in_(OPEN)).order_by(DunningCase.opened_at, DunningCase.id))
    ended = rows(base.where(DunningCase.status.not_in(OPEN))
                 .order_by(DunningCase.closed_at.desc(), DunningCase.id.desc()).limit(closed_limit))
    return running, ended
