"""What each stored Stripe event does to our rows; run by a Celery task, once per event."""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from billing import records
from billing.expiry import ExpiryWindow
from billing.models import Card, StripeEvent, Subscription
from billing.subscriptions import sync_checkout_session
from saas.core.db import utcnow
from saas.core.outbox import queue_email

log = logging.getLogger(__name__)
Handler = Callable[[Session, dict[str, Any], ExpiryWindow], None]


def _newer_event_seen(session: Session, event: dict[str, Any], object_id: str) -> bool:
    """A processed event about the same object is newer, or detached it at the same second or later."""
    about = StripeEvent.payload["data"]["object"]["id"].astext == object_id
    return bool(session.scalar(select(exists().where(
        about, StripeEvent.id != event["id"], StripeEvent.processed_at.is_not(None),
        (StripeEvent.created > event["created"])
        | ((StripeEvent.type == "payment_method.detached") & (StripeEvent.created >= event["created"]))))))


def payment_method_changed(session: Session, event: dict[str, Any], window: ExpiryWindow) -> None:
    """attached / updated / automatically_updated: the card row follows, is_expiring recomputed."""
    pm = event["data"]["object"]
    if pm.get("type") != "card" or _newer_event_seen(session, event, pm["id"]):
        return
    user = records.user_for_customer(session, pm.get("customer"))
    if user is None:
        records.remove_card(session, pm["id"])
        return
    records.upsert_card(session, user.id, pm, window)


def payment_method_detached(session: Session, event: dict[str, Any], window: ExpiryWindow) -> None:
    pm = event["data"]["object"]
    if not _newer_event_seen(session, event, pm["id"]):
        records.remove_card(session, pm["id"])


def source_expiring(session: Session, event: dict[str, Any], window: ExpiryWindow) -> None:
    """A legacy card source is about to expire: refresh the card we know under that id, if any."""
    source = event["data"]["object"]
    if session.scalar(select(exists().where(Card.stripe_payment_method_id == source.get("id", "")))):
        user = records.user_for_customer(session, source.get("customer"))
        if user is not None and {"last4", "exp_month", "exp_year"} <= source.keys():
            records.upsert_card(session, user.id, {"id": source["id"], "card": source}, window)


def checkout_completed(session: Session, event: dict[str, Any], window: ExpiryWindow) -> None:
    """The subscriber saved a card in Checkout: make it the card (the return page may have done it already)."""
    checkout = event["data"]["object"]
    user = records.user_for_customer(session, checkout.get("customer"))
    if checkout.get("mode") == "setup" and user is not None:
        sync_checkout_session(session, user, checkout["id"], window)


def subscription_changed(session: Session, event: dict[str, Any], window: ExpiryWindow) -> None:
    sub = event["data"]["object"]
    user = records.user_for_customer(session, sub.get("customer"))
    if user is not None:
        records.upsert_subscription(session, user.id, sub, event["created"])


def invoice_paid(session: Session, event: dict[str, Any], window: ExpiryWindow) -> None:
    """A success clears past_due."""
    obj = event["data"]["object"]
    invoice = records.upsert_invoice(session, records.user_for_customer(session, obj.get("customer")), obj,
                                     event["created"])
    if invoice.subscription_id is not None:
        sub = session.get(Subscription, invoice.subscription_id, with_for_update=True)
        if sub is not None and sub.status in ("past_due", "incomplete", "unpaid"):
            records.set_subscription_status(session, sub, "active", event["created"])


def invoice_payment_failed(session: Session, event: dict[str, Any], window: ExpiryWindow) -> None:
    """A failure sets past_due (the dashboard's banner) and tells the subscriber, once per invoice."""
    obj = event["data"]["object"]
    user = records.user_for_customer(session, obj.get("customer"))
    invoice = records.upsert_invoice(session, user, obj, event["created"], failed=True)
    if invoice.subscription_id is not None and invoice.status != "paid":  # a late failure of a paid invoice
        sub = session.get(Subscription, invoice.subscription_id, with_for_update=True)
        if sub is not None and sub.status in ("active", "trialing"):
            records.set_subscription_status(session, sub, "past_due", event["created"])
    if user is not None and invoice.status != "paid":
        queue_email(session, key=f"payment-failed:{invoice.stripe_invoice_id}", kind="payment-failed", to=user.email,
                    template="billing_payment_failed", user_id=user.id,
                    context={"name": user.name or user.email, "amount_cents": invoice.amount_cents,
                             "currency": invoice.currency.upper(), "reason": invoice.failure_reason or ""})


HANDLERS: dict[str, Handler] = {
    "checkout.session.completed": checkout_completed,
    "setup_intent.succeeded": lambda session, event, window: None,  # the card arrives with payment_method.attached
    "payment_method.attached": payment_method_changed,
    "payment_method.updated": payment_method_changed,
    "payment_method.automatically_updated": payment_method_changed,
    "payment_method.detached": payment_method_detached,
    "customer.source.expiring": source_expiring,
    "customer.subscription.created": subscription_changed,
    "customer.subscription.updated": subscription_changed,
    "customer.subscription.deleted": subscription_changed,
    "invoice.paid": invoice_paid,
    "invoice.payment_failed": invoice_payment_failed,
}


def process_event(session: Session, event_id: str, window: ExpiryWindow) -> bool:
    """Apply one stored event, at most once (the row is locked and marked). False if nothing to do."""
    row = session.get(StripeEvent, event_id, with_for_update=True)
    if row is None or row.processed_at is not None:
        return False
    handler = HANDLERS.get(row.type)
    if handler is None:
        log.info("stripe event %s of type %s ignored", row.id, row.type)
    else:
        handler(session, row.payload, window)
    row.processed_at = utcnow()
    row.error = None
    return True
