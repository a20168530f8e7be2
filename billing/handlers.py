"""What each stored Stripe event does to our rows; run by a Celery task, once per event."""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from billing import dunning, gateway, progress, records
from billing.expiry import ExpiryWindow
from billing.models import Card, Invoice, StripeEvent, Subscription
from billing.subscriptions import sync_checkout_session
from saas.core import runtime
from saas.core.db import utcnow
from saas.core.models import AuditLog
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
    """The row follows the event's subscription. Under the account's lock, so that no subscriber action
    (which takes it before calling Stripe) interleaves: a payload newer than the row's stamp is applied;
    one of the stamp's second or earlier cannot be ordered against the row by `created` (a late event of
    the very second of a cancel, say), so Stripe's subscription is read again and that is applied."""
    sub = event["data"]["object"]
    user = records.user_for_customer(session, sub.get("customer"))
    if user is None:
        return
    records.lock_account(session, user.id)
    row = session.execute(select(Subscription.stripe_event_created, Subscription.status)
                          .where(Subscription.stripe_subscription_id == sub["id"])).first()
    if row is not None and row.status != "canceled" and not payload_is_newer(row.stripe_event_created, event):
        try:
            fresh = gateway.retrieve_subscription(sub["id"])
        except gateway.NotFound:  # Stripe keeps canceled subscriptions: this is another account's
            log.warning("subscription %s of event %s not found at Stripe", sub["id"], event["id"])
            return
        log.info("subscription event %s is not newer than the row: applied Stripe's subscription as read now",
                 event["id"])
        stored = records.store_subscription_answer(session, user.id, fresh)
    else:  # canceled is final at Stripe: the payload is all there is to apply (upsert keeps it canceled)
        stored = records.upsert_subscription(session, user.id, sub, event["created"])
    dunning.subscription_ended(session, stored, records.from_ts(event["created"]))


def payload_is_newer(stamp: int, event: dict[str, Any]) -> bool:
    """Whether the event was created after the second the row is stamped with (records.answer_stamp)."""
    return event["created"] > stamp


def invoice_paid(session: Session, event: dict[str, Any], window: ExpiryWindow) -> None:
    """A success clears past_due."""
    obj = event["data"]["object"]
    user = records.user_for_customer(session, obj.get("customer"))
    if user is None:  # a customer we do not know (another product on the account): no row finance would count
        return
    invoice = records.upsert_invoice(session, user, obj, event["created"])
    if invoice.subscription_id is not None:
        sub = session.get(Subscription, invoice.subscription_id, with_for_update=True)
        if sub is not None and sub.status in ("past_due", "incomplete", "unpaid"):
            dunning.follow_payment(session, sub, "active", event["created"])
    dunning.invoice_paid(session, invoice, invoice.paid_at or records.from_ts(event["created"]))


def invoice_payment_failed(session: Session, event: dict[str, Any], window: ExpiryWindow) -> None:
    """A failure sets past_due (the dashboard's banner) and tells the subscriber, once per invoice."""
    obj = event["data"]["object"]
    user = records.user_for_customer(session, obj.get("customer"))
    if user is None:
        return
    invoice = records.upsert_invoice(session, user, obj, event["created"], failed=True,
                                     reason=_failure_reason(obj))
    case = None
    if invoice.subscription_id is not None and invoice.status != "paid":  # a late failure of a paid invoice
        sub = session.get(Subscription, invoice.subscription_id, with_for_update=True)
        if sub is not None and sub.status in ("active", "trialing"):
            dunning.follow_payment(session, sub, "past_due", event["created"])
        case = dunning.open_case(session, invoice, sub)
    if invoice.status == "open":
        _tell_about_payment(session, user, invoice, "billing_payment_failed", case)


def _failure_reason(obj: dict[str, Any]) -> str | None:
    """Why the charge was declined, in the subscriber's words: the invoice's latest payment's
    `last_payment_error` (the event does not carry it). None when Stripe cannot say now (the
    email then says only that the charge failed)."""
    try:
        error = gateway.last_payment_error(obj["id"])
    except gateway.GatewayError as exc:
        log.warning("no payment error for invoice %s: %s", obj["id"], exc)
        return None
    return gateway.decline_message(error) if error else None


def _tell_about_payment(session: Session, user, invoice: Invoice, template: str,
                        case: dunning.DunningCase | None = None) -> None:
    """One email per invoice about its failed charge: a failure, or the bank asking the subscriber to
    confirm it (Stripe sends both events, in either order; the first decides which email goes). In
    dunning it is the case's step 0: with the no-login link and what happens next, and when."""
    queue_email(session, key=f"payment-failed:{invoice.stripe_invoice_id}", kind="payment-failed", to=user.email,
                template=template, user_id=user.id,
                context={"name": user.name or user.email, "amount_cents": invoice.amount_cents,
                         "currency": invoice.currency.upper(), "reason": invoice.failure_reason or "",
                         "confirm_url": invoice.hosted_invoice_url or "",
                         **dunning.first_email_context(case, runtime.settings())})


def invoice_action_required(session: Session, event: dict[str, Any], window: ExpiryWindow) -> None:
    """The bank asks the subscriber to authenticate the charge (3D Secure): a banner and one email, both
    with the invoice's hosted page, where they confirm it."""
    obj = event["data"]["object"]
    user = records.user_for_customer(session, obj.get("customer"))
    if user is None:
        return
    invoice = records.upsert_invoice(session, user, obj, event["created"])
    if invoice.status != "open":
        return
    if invoice.action_required_at is None:
        invoice.action_required_at = records.from_ts(event["created"]) or utcnow()
    if invoice.hosted_invoice_url:
        _tell_about_payment(session, user, invoice, "billing_payment_action_required")


def invoice_settled(session: Session, event: dict[str, Any], window: ExpiryWindow) -> None:
    """voided / marked_uncollectible: the invoice row follows (its status only moves forward)."""
    obj = event["data"]["object"]
    user = records.user_for_customer(session, obj.get("customer"))
    if user is not None:
        invoice = records.upsert_invoice(session, user, obj, event["created"])
        dunning.invoice_ended(session, invoice, records.from_ts(event["created"]))


def customer_deleted(session: Session, event: dict[str, Any], window: ExpiryWindow) -> None:
    """A customer deleted at Stripe (its Dashboard, say): the account keeps no customer id, no cards,
    no live subscription; audited. (Our own deletion of a purged account's customer ends here too.)"""
    customer = event["data"]["object"]
    user = records.user_for_customer(session, customer.get("id"))
    if user is None:
        return
    cards, subscriptions = records.forget_customer(session, user, event["created"])
    dunning.account_ended(session, user.id, records.from_ts(event["created"]))
    session.add(AuditLog(actor="stripe:webhook", action="stripe.customer_deleted", subject_type="user",
                         subject_id=str(user.id), details={"customer": customer["id"], "event": event["id"],
                                                          "cards_removed": cards,
                                                          "subscriptions_canceled": subscriptions}))


def _card_operation(session: Session, customer_id: str | None, op_id: str | None) -> str | None:
    """The waiting card-update operation `op_id`, if it is one and belongs to the customer's user."""
    user = records.user_for_customer(session, customer_id)
    state = progress.get_state(op_id) if op_id and user is not None else None
    if state is None or user is None or state.get("kind") != "card" or state.get("user_id") != user.id:
        return None
    return op_id


def checkout_expired(session: Session, event: dict[str, Any], window: ExpiryWindow) -> None:
    """The card form expired unused: its operation (the session's client_reference_id) says so."""
    checkout = event["data"]["object"]
    op_id = _card_operation(session, checkout.get("customer"), checkout.get("client_reference_id"))
    if checkout.get("mode") == "setup" and op_id is not None:
        progress.finish(op_id, "The card form expired before a card was saved, so your card is unchanged. "
                               "Please start again.", ok=False)


def setup_failed(session: Session, event: dict[str, Any], window: ExpiryWindow) -> None:
    """The card entered in the form could not be saved: its operation says why, in the subscriber's words."""
    seti = event["data"]["object"]
    op_id = _card_operation(session, seti.get("customer"), progress.operation_for(seti.get("id") or ""))
    if op_id is None:
        return
    reason = gateway.decline_message(seti.get("last_setup_error"))
    progress.finish(op_id, f"Your card could not be saved. {reason}", ok=False)


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
    "customer.subscription.paused": subscription_changed,
    "customer.subscription.resumed": subscription_changed,
    "customer.deleted": customer_deleted,
    "checkout.session.expired": checkout_expired,
    "setup_intent.setup_failed": setup_failed,
    "invoice.paid": invoice_paid,
    "invoice.payment_failed": invoice_payment_failed,
    "invoice.payment_action_required": invoice_action_required,
    "invoice.marked_uncollectible": invoice_settled,
    "invoice.voided": invoice_settled,
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
