"""Reconciliation with Stripe: replay the events we never received, and repair a customer's rows from
what Stripe says now. The nightly reconcile-stripe job (scheduled.jobs.reconcile_stripe) runs these."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from billing import gateway, handlers, records, tasks, webhooks
from billing.expiry import ExpiryWindow
from billing.models import Card, StripeEvent, Subscription
from saas.core.models import AuditLog, User
from saas.core.queue import enqueue_after_commit

log = logging.getLogger(__name__)
ACTOR = "job:reconcile-stripe"


def unseen(session: Session, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Those of `events` we have not stored (one query for the page)."""
    ids = [e["id"] for e in events]
    known = set(session.scalars(select(StripeEvent.id).where(StripeEvent.id.in_(ids)))) if ids else set()
    return [e for e in events if e["id"] not in known]


def requeue_stuck(session: Session, events: list[dict[str, Any]], received_before: datetime) -> int:
    """Those of `events` stored before `received_before` but never processed (their task was lost
    with a broker, say): queued again for the webhook's task, after commit. How many."""
    ids = [e["id"] for e in events]
    stuck = list(session.scalars(select(StripeEvent.id).where(
        StripeEvent.id.in_(ids), StripeEvent.processed_at.is_(None), StripeEvent.received_at < received_before)))
    for event_id in stuck:
        enqueue_after_commit(session, tasks.process_stripe_event, event_id=event_id)
    return len(stuck)


def recover_event(session: Session, event: dict[str, Any], window: ExpiryWindow) -> str:
    """Feed one event Stripe listed through the webhook's path: store it by id, then apply it
    (handlers.process_event, at most once). 'stored' if a webhook stored it meanwhile; 'failed' if
    applying it raised (the error is kept on the event and the webhook task retries it after commit)."""
    if not webhooks.store_event(session, event):
        return "stored"
    try:
        with session.begin_nested():
            handlers.process_event(session, event["id"], window)
    except Exception as exc:
        log.warning("recovered stripe event %s could not be applied now: %r", event["id"], exc)
        session.execute(update(StripeEvent).where(StripeEvent.id == event["id"]).values(error=repr(exc)[:2000]))
        enqueue_after_commit(session, tasks.process_stripe_event, event_id=event["id"])
        return "failed"
    return "recovered"


@dataclass
class CustomerCheck:
    """What comparing one customer with Stripe found: objects compared, and the repairs made."""

    compared: int = 0
    repairs: list[dict[str, Any]] = field(default_factory=list)


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _repaired(session: Session, user: User, check: CustomerCheck, what: str, object_id: str,
              fields: dict[str, list[Any]]) -> None:
    """Record one repair: on the check, in the audit log, and in the log."""
    details = {"object": what, "id": object_id, "fields": {k: [_plain(a), _plain(b)] for k, (a, b) in fields.items()}}
    check.repairs.append({"user_id": user.id, **details})
    session.add(AuditLog(actor=ACTOR, action="stripe.drift_repaired", subject_type="user", subject_id=str(user.id),
                         details=details))
    log.warning("reconcile: user %s %s %s differed from Stripe, repaired: %s", user.id, what, object_id,
                details["fields"])


def check_customer(session: Session, user: User, window: ExpiryWindow) -> CustomerCheck:
    """Compare the user's subscriptions and default card with Stripe's, and make ours match.

    Read from Stripe now, so what Stripe says wins over every event before the read (the rows are
    stamped with the read's time, records.before_stripe_call). A customer deleted at Stripe is
    forgotten, as the customer.deleted event would have done.
    """
    check = CustomerCheck()
    customer_id = user.stripe_customer_id
    if customer_id is None:
        return check
    records.lock_account(session, user.id)  # before the reads: no subscriber action interleaves (records)
    read_at = records.before_stripe_call()
    try:
        customer = gateway.retrieve_customer(customer_id)
    except gateway.NotFound:  # never a customer of this account (another account's id): nothing to compare
        log.warning("reconcile: user %s's customer %s is unknown to Stripe", user.id, customer_id)
        return check
    check.compared += 1
    if customer.get("deleted"):
        cards, subs = records.forget_customer(session, user, read_at)
        _repaired(session, user, check, "customer", customer_id,
                  {"deleted": [False, True], "cards_removed": [0, cards], "subscriptions_canceled": [0, subs]})
        return check
    for obj in gateway.list_subscriptions(customer_id):
        check.compared += 1
        row = session.scalar(select(Subscription).where(Subscription.stripe_subscription_id == obj["id"]))
        if row is None:
            records.store_subscription_answer(session, user.id, obj)
            _repaired(session, user, check, "subscription", obj["id"], {"row": [None, "created"]})
        elif drift := records.repair_subscription(session, row, obj, read_at):
            _repaired(session, user, check, "subscription", obj["id"], drift)
    _check_default_card(session, user, customer, window, check)
    return check


CARD_FIELDS = ("stripe_payment_method_id", "brand", "last4", "exp_month", "exp_year")


def _check_default_card(session: Session, user: User, customer: dict[str, Any], window: ExpiryWindow,
                        check: CustomerCheck) -> None:
    """Our default card is the customer's default payment method, with its brand, last4 and expiry.
    Without a default at Stripe, ours is kept while it is still attached to the customer."""
    pm = (customer.get("invoice_settings") or {}).get("default_payment_method")
    ours = session.scalar(select(Card).where(Card.user_id == user.id, Card.is_default))
    check.compared += 1
    if isinstance(pm, dict) and pm.get("type") == "card":
        card = pm["card"]
        theirs = (pm["id"], card.get("brand") or "card", str(card["last4"]), int(card["exp_month"]),
                  int(card["exp_year"]))
        mine = tuple(getattr(ours, name) for name in CARD_FIELDS) if ours is not None else None
        if mine != theirs:
            records.upsert_card(session, user.id, pm, window)
            records.make_default_card(session, user.id, pm["id"])
            _repaired(session, user, check, "default card", pm["id"],
                      {name: [mine[i] if mine else None, theirs[i]] for i, name in enumerate(CARD_FIELDS)
                       if not mine or mine[i] != theirs[i]})
        return
    if ours is None:
        return
    try:
        attached = gateway.retrieve_payment_method(ours.stripe_payment_method_id).get("customer")
    except gateway.NotFound:
        attached = None
    if attached != customer["id"]:
        records.remove_card(session, ours.stripe_payment_method_id)
        _repaired(session, user, check, "default card", ours.stripe_payment_method_id,
                  {"attached": [True, False]})
