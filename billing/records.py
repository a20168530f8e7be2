"""Our copies of Stripe objects: upserts from Stripe-shaped dicts that never move a row backwards."""
from __future__ import annotations

import time
from datetime import UTC, date, datetime, tzinfo
from typing import Any

from sqlalchemy import delete, exists, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from billing.expiry import ExpiryWindow
from billing.models import Card, DunningCase, Invoice, MrrMovement, Subscription
from billing.plans import PLANS, monthly_cents, plan_for_price
from saas.core.db import utcnow
from saas.core.models import User

MRR_STATUSES = ("active", "past_due")  # trials and unpaid first invoices earn nothing yet
# Stripe's invoice lifecycle: draft → open → paid | void | uncollectible, and an uncollectible invoice
# may still be paid or voided; paid and void are final.
INVOICE_RANK = {"draft": 0, "open": 1, "uncollectible": 2, "paid": 3, "void": 3}


def local_today(tz: tzinfo) -> date:
    """Today in APP_TIMEZONE (`tz`), the day the expiry rule is judged on."""
    return datetime.now(tz).date()


def from_ts(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value else None


ACCOUNT_LOCK = 0x5354  # pg_advisory_xact_lock(ACCOUNT_LOCK, user id): one account's billing writes


def lock_account(session: Session, user_id: int) -> None:
    """Serialise the writes about one account's Stripe objects until the transaction ends.

    A webhook (invoice.paid: the invoice, then its subscription) and the subscribe task (the
    subscription, then its invoice) insert the same rows in opposite orders; without this they
    deadlock. Every upsert below takes it first; taking it again in one transaction is free.
    """
    session.execute(text("SELECT pg_advisory_xact_lock(:ns, :id)"), {"ns": ACCOUNT_LOCK, "id": user_id})


def user_for_customer(session: Session, customer_id: str | None) -> User | None:
    if not customer_id:
        return None
    return session.scalar(select(User).where(User.stripe_customer_id == customer_id))


# Cards ----------------------------------------------------------------------------------------
def upsert_card(session: Session, user_id: int, pm: dict[str, Any], window: ExpiryWindow) -> Card:
    """Insert or refresh a card from a PaymentMethod, recomputing is_expiring at once."""
    lock_account(session, user_id)
    card = pm["card"]
    values = {
        "brand": card.get("brand") or "card", "last4": str(card["last4"]),
        "exp_month": int(card["exp_month"]), "exp_year": int(card["exp_year"]),
        "is_expiring": window.covers(int(card["exp_month"]), int(card["exp_year"])),
    }
    has_card = session.scalar(select(exists().where(Card.user_id == user_id)))
    stmt = insert(Card).values(user_id=user_id, stripe_payment_method_id=pm["id"], is_default=not has_card, **values)
    stmt = stmt.on_conflict_do_update(index_elements=["stripe_payment_method_id"],
                                      set_={**values, "user_id": user_id, "updated_at": utcnow()})
    session.execute(stmt)
    return session.scalars(select(Card).where(Card.stripe_payment_method_id == pm["id"]).execution_options(
        populate_existing=True)).one()


def make_default_card(session: Session, user_id: int, payment_method_id: str) -> None:
    session.execute(update(Card).where(Card.user_id == user_id)
                    .values(is_default=Card.stripe_payment_method_id == payment_method_id))


def remove_card(session: Session, payment_method_id: str) -> None:
    session.execute(delete(Card).where(Card.stripe_payment_method_id == payment_method_id))


# Subscriptions and MRR --------------------------------------------------------------------------
def subscription_mrr(status: str, amount_cents: int, interval: str) -> int:
    return monthly_cents(amount_cents, interval) if status in MRR_STATUSES else 0


def record_mrr_change(session: Session, sub: Subscription, before: int, after: int, at: datetime) -> None:
    """One MrrMovement row when a subscription's MRR changes (finance sums these)."""
    if before == after:
        return
    if before == 0:
        churned_before = session.scalar(select(exists().where(
            MrrMovement.kind == "churn",
            MrrMovement.subscription_id.in_(select(Subscription.id).where(Subscription.user_id == sub.user_id)))))
        kind = "reactivation" if churned_before else "new"
    elif after == 0:
        kind = "churn"
    else:
        kind = "expansion" if after > before else "contraction"
    session.add(MrrMovement(subscription_id=sub.id, at=at, kind=kind, currency=sub.currency,
                            mrr_before_cents=before, mrr_after_cents=after))


def subscription_values(obj: dict[str, Any]) -> dict[str, Any]:
    """Our columns of a Stripe subscription (the fields reconciliation compares, too)."""
    item = obj["items"]["data"][0]
    price = item["price"]
    plan = PLANS.get(price.get("lookup_key") or "") or plan_for_price(price["id"])  # lookup_key: the plan key
    return {
        "plan": plan.key if plan else price["id"][:50], "status": obj["status"],
        "amount_cents": int(price.get("unit_amount") or 0) * int(item.get("quantity") or 1),
        "currency": obj.get("currency") or price.get("currency") or "usd",
        "interval": (price.get("recurring") or {}).get("interval", "month"),
        "current_period_end": from_ts(item.get("current_period_end")),  # per item since 2025-03-31.basil
        "cancel_at_period_end": bool(obj.get("cancel_at_period_end")),
        "canceled_at": from_ts(obj.get("canceled_at")),
    }


def before_stripe_call() -> int:
    """A `created` no event caused by (or after) the coming Stripe call can precede: now, less one
    second of slack for the clocks of Stripe and ours. Rows written from a call's answer carry it."""
    return int(time.time()) - 1


# How far Stripe's clock may run ahead of ours, in seconds: an answer read at our second t is stamped
# t + CLOCK_SLACK, and an event of that second or earlier cannot be ordered against it by `created`.
CLOCK_SLACK = 1


def answer_stamp() -> int:
    """The stamp of a row written from a Stripe answer just received: no event created after it can be
    older than the answer (see CLOCK_SLACK)."""
    return int(time.time()) + CLOCK_SLACK


def upsert_subscription(session: Session, user_id: int, obj: dict[str, Any], created: int) -> Subscription:
    """Mirror a subscription from an event's payload (`created`: the event's second); an event older than
    the last applied one changes nothing, and a canceled subscription stays canceled (Stripe never revives
    one). A payload of the stored second or earlier is not applied: handlers read Stripe again for it."""
    return _upsert_subscription(session, user_id, obj, created, answer=False)


def store_subscription_answer(session: Session, user_id: int, obj: dict[str, Any]) -> Subscription:
    """Mirror a subscription as Stripe answered a call or a read made under the account's lock
    (lock_account before the call): that answer is newer than every row written before the lock was
    taken, so it is applied whatever the row's stamp (canceled still stays canceled), and stamped
    answer_stamp()."""
    return _upsert_subscription(session, user_id, obj, answer_stamp(), answer=True)


def _upsert_subscription(session: Session, user_id: int, obj: dict[str, Any], created: int,
                         answer: bool) -> Subscription:
    lock_account(session, user_id)
    values = subscription_values(obj)
    new_id = session.execute(
        insert(Subscription).values(user_id=user_id, stripe_subscription_id=obj["id"], stripe_event_created=created,
                                    **values)
        .on_conflict_do_nothing(index_elements=["stripe_subscription_id"]).returning(Subscription.id)
    ).scalar_one_or_none()
    sub = session.scalars(select(Subscription).where(Subscription.stripe_subscription_id == obj["id"])
                          .with_for_update().execution_options(populate_existing=True)).one()
    at = utcnow() if answer else from_ts(created) or utcnow()
    if new_id is not None:
        record_mrr_change(session, sub, 0, subscription_mrr(sub.status, sub.amount_cents, sub.interval), at)
        return sub
    if (not answer and created < sub.stripe_event_created) or (sub.status == "canceled" and obj["status"] != "canceled"):
        return sub
    values["status"] = held_status(session, sub, values["status"])
    before = subscription_mrr(sub.status, sub.amount_cents, sub.interval)
    for name, value in values.items():
        setattr(sub, name, value)
    sub.stripe_event_created = max(sub.stripe_event_created, created)
    session.flush()
    record_mrr_change(session, sub, before, subscription_mrr(sub.status, sub.amount_cents, sub.interval), at)
    return sub


def held_status(session: Session, sub: Subscription, stripe_status: str) -> str:
    """The status our row keeps when Stripe says `stripe_status`. DUNNING_FINAL_ACTION=mark_unpaid makes a
    subscription unpaid here, but Stripe's API has no call that sets a subscription's status (only the
    account's "after all retries fail" setting does), so Stripe goes on saying past_due: while a lost case of
    the subscription has its final action done and its invoice unpaid, past_due stays unpaid. Whatever else
    Stripe says (active after a payment, unpaid, canceled) is applied."""
    if stripe_status != "past_due" or sub.id is None:
        return stripe_status
    held = session.scalar(select(exists().where(
        DunningCase.subscription_id == sub.id, DunningCase.status == "lost", DunningCase.final_action == "mark_unpaid",
        DunningCase.final_action_done_at.is_not(None), DunningCase.invoice_id == Invoice.id,
        Invoice.status.in_(("open", "uncollectible")))))
    return "unpaid" if held else stripe_status


def repair_subscription(session: Session, sub: Subscription, obj: dict[str, Any], read_at: int) -> dict[str, list[Any]]:
    """Make our row what Stripe says now (read at `read_at`, see before_stripe_call), whatever events
    said before; the fields that differed as {name: [ours, Stripe's]} (empty: nothing to repair)."""
    lock_account(session, sub.user_id)
    session.refresh(sub, with_for_update=True)
    values = subscription_values(obj)
    values["status"] = held_status(session, sub, values["status"])
    drift = {name: [getattr(sub, name), value] for name, value in values.items() if getattr(sub, name) != value}
    if not drift:
        return {}
    before = subscription_mrr(sub.status, sub.amount_cents, sub.interval)
    for name in drift:
        setattr(sub, name, values[name])
    sub.stripe_event_created = max(sub.stripe_event_created, read_at)
    session.flush()
    record_mrr_change(session, sub, before, subscription_mrr(sub.status, sub.amount_cents, sub.interval),
                      from_ts(read_at) or utcnow())
    return drift


def end_subscription(session: Session, sub: Subscription, created: int) -> None:
    """Canceled whatever events said before (its customer is gone at Stripe): MRR goes to zero."""
    if sub.status == "canceled":
        return
    before = subscription_mrr(sub.status, sub.amount_cents, sub.interval)
    at = from_ts(created) or utcnow()
    sub.status, sub.canceled_at = "canceled", sub.canceled_at or at
    sub.stripe_event_created = max(sub.stripe_event_created, created)
    record_mrr_change(session, sub, before, 0, at)


def forget_customer(session: Session, user: User, created: int) -> tuple[int, int]:
    """The user's Stripe customer was deleted at Stripe: no customer id, no cards, every subscription
    canceled. The numbers of cards removed and subscriptions ended."""
    lock_account(session, user.id)
    user.stripe_customer_id = None
    cards = len(session.scalars(delete(Card).where(Card.user_id == user.id).returning(Card.id)).all())
    subs = session.scalars(select(Subscription).where(Subscription.user_id == user.id,
                                                      Subscription.status != "canceled").with_for_update()).all()
    for sub in subs:
        end_subscription(session, sub, created)
    return cards, len(subs)


def set_subscription_status(session: Session, sub: Subscription, status: str, created: int) -> None:
    """Move status on a payment outcome, unless a newer event already spoke or it is canceled."""
    if created < sub.stripe_event_created or sub.status == "canceled" or sub.status == status:
        return
    before = subscription_mrr(sub.status, sub.amount_cents, sub.interval)
    sub.status = status
    sub.stripe_event_created = created
    record_mrr_change(session, sub, before, subscription_mrr(status, sub.amount_cents, sub.interval),
                      from_ts(created) or utcnow())


# Invoices -------------------------------------------------------------------------------------
def invoice_subscription_id(obj: dict[str, Any]) -> str | None:
    """The invoice's subscription: `parent.subscription_details.subscription` (`invoice.subscription` is gone
    since 2025-03-31.basil)."""
    details = ((obj.get("parent") or {}).get("subscription_details") or {})
    return details.get("subscription")


def invoice_service_period(obj: dict[str, Any]) -> tuple[int | None, int | None]:
    """The period the invoice bills: its lines' `period` (the invoice's own period_start/end is only the
    window in which invoice items could join it: a first invoice's is one instant, a renewal's the past period)."""
    periods = [line["period"] for line in (obj.get("lines") or {}).get("data") or [] if line.get("period")]
    if not periods:
        return None, None
    return min(p["start"] for p in periods), max(p["end"] for p in periods)


def upsert_invoice(session: Session, user: User | None, obj: dict[str, Any], created: int,
                   failed: bool = False, reason: str | None = None) -> Invoice:
    """Mirror an invoice; status only moves forward, the first failure's time is kept for finance.
    `reason`: why a failed charge was declined (the subscriber's words), when known."""
    if user is not None:
        lock_account(session, user.id)
    sub = session.scalar(select(Subscription).where(
        Subscription.stripe_subscription_id == (invoice_subscription_id(obj) or "")))
    period_start, period_end = invoice_service_period(obj)
    values = {
        "number": obj.get("number"), "amount_cents": int(obj.get("amount_due") or 0),
        "currency": obj.get("currency") or "usd", "status": obj["status"],
        "period_start": from_ts(period_start), "period_end": from_ts(period_end),
        "paid_at": from_ts((obj.get("status_transitions") or {}).get("paid_at")),
        "customer_email": obj.get("customer_email"), "customer_name": obj.get("customer_name"),
        "hosted_invoice_url": obj.get("hosted_invoice_url"), "invoice_pdf": obj.get("invoice_pdf"),
    }
    session.execute(
        insert(Invoice).values(user_id=user.id if user else None, subscription_id=sub.id if sub else None,
                               stripe_invoice_id=obj["id"], stripe_event_created=created, **values)
        .on_conflict_do_nothing(index_elements=["stripe_invoice_id"]))
    invoice = session.scalars(select(Invoice).where(Invoice.stripe_invoice_id == obj["id"])
                              .with_for_update().execution_options(populate_existing=True)).one()
    newer = created >= invoice.stripe_event_created
    forward = (INVOICE_RANK.get(obj["status"], 0) > INVOICE_RANK.get(invoice.status, 0)
               or obj["status"] == invoice.status)  # paid never becomes void, nor void paid
    if newer and forward:
        for name, value in values.items():
            setattr(invoice, name, value)
        invoice.stripe_event_created = created
    if failed:
        at = from_ts(created) or utcnow()
        if invoice.first_failed_at is None or at < invoice.first_failed_at:
            invoice.first_failed_at = at
        if invoice.status != "paid":
            invoice.failure_reason = reason or f"The charge failed (attempt {obj.get('attempt_count') or 1})."
    return invoice
