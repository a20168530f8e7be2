"""The subscriber's billing actions: subscribe, replace the card, change plan, cancel at period end, resume."""
from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing import catalog, gateway, records
from billing.current import (
    LIVE_STATUSES,
    current_subscription,
    default_card,
    payment_failed_showing,
    payment_to_confirm,
    recent_invoices,
)
from billing.expiry import ExpiryWindow
from billing.models import CANCEL_COMMENT_MAX, CANCEL_REASONS, Card, Subscription
from billing.plans import PLANS, Plan, label_for
from saas.core.models import User

log = logging.getLogger(__name__)


class BillingError(Exception):
    """The action cannot be done as asked; the message is for the subscriber."""


def overview(session: Session, user_id: int) -> dict[str, Any]:
    """What the billing page shows: plan catalog, subscription, card, recent invoices."""
    subscription, invoices = current_subscription(session, user_id), recent_invoices(session, user_id)
    return {"plans": list(PLANS.values()), "subscription": subscription, "card": default_card(session, user_id),
            "invoices": invoices, "payment_to_confirm": payment_to_confirm(invoices),
            "payment_failed": payment_failed_showing(subscription, invoices)}


def ensure_customer(session: Session, user: User) -> str:
    """The user's Stripe customer id, creating the customer the first time (idempotent per user)."""
    if not user.stripe_customer_id:
        user.stripe_customer_id = gateway.create_customer(user.id, user.email, user.name)["id"]
        session.flush()
    return user.stripe_customer_id


def start_card_update(session: Session, user: User, attempt: str, success_url: str, cancel_url: str) -> dict[str, Any]:
    """A Checkout session (setup mode) whose `url` is where the subscriber enters the new card."""
    customer_id = ensure_customer(session, user)
    return gateway.create_setup_checkout_session(customer_id, attempt, success_url, cancel_url)


def sync_checkout_session(session: Session, user: User, checkout_id: str, window: ExpiryWindow) -> Card | None:
    """Make the card saved in a completed Checkout the subscriber's card; the old ones are detached.

    Run by the return page's task and by the checkout.session.completed webhook; either may come first.
    None when the session's card is no longer attached (a newer card replaced it meanwhile).
    """
    checkout = gateway.retrieve_checkout_session(checkout_id)
    if checkout.get("customer") != user.stripe_customer_id:
        raise BillingError("That card form belongs to another account.")
    if checkout.get("status") != "complete":
        raise BillingError("The card form was not completed, so your card is unchanged.")
    pm = (checkout.get("setup_intent") or {}).get("payment_method")
    customer_id = user.stripe_customer_id
    if not isinstance(pm, dict) or customer_id is None or pm.get("customer") != customer_id:
        return None
    gateway.set_default_payment_method(customer_id, pm["id"])
    card = records.upsert_card(session, user.id, pm, window)
    records.make_default_card(session, user.id, pm["id"])
    old = session.scalars(select(Card.stripe_payment_method_id).where(
        Card.user_id == user.id, Card.stripe_payment_method_id != pm["id"])).all()
    for payment_method_id in old:
        try:
            gateway.detach_payment_method(payment_method_id)
        except gateway.NotFound:
            pass
        records.remove_card(session, payment_method_id)
    return card


def subscribe(session: Session, user: User, plan_key: str, attempt: str) -> Subscription:
    """Start a subscription to a plan, charged to the saved card now."""
    plan = PLANS.get(plan_key)
    if plan is None:
        raise BillingError("That plan does not exist.")
    records.lock_account(session, user.id)  # before the call: its answer is then the newest (records)
    live = current_subscription(session, user.id)
    if live is not None and live.status in (*LIVE_STATUSES, "paused"):
        raise BillingError("You already have a subscription.")
    if not user.stripe_customer_id or default_card(session, user.id) is None:
        raise BillingError("Add a card first, then choose a plan.")
    started = records.before_stripe_call()
    try:
        price = catalog.find_price(plan)  # by lookup_key: the account's current price of the plan
    except catalog.PlanUnavailable:
        log.error("plan %s has no active price in Stripe: run `saas stripe sync-plans`", plan.key)
        raise BillingError("That plan cannot be bought just now. Please try again later.") from None
    obj = gateway.create_subscription(user.stripe_customer_id, price["id"], attempt)
    sub = records.store_subscription_answer(session, user.id, obj)
    if isinstance(obj.get("latest_invoice"), dict):
        records.upsert_invoice(session, user, obj["latest_invoice"], started)
    return sub


def set_cancel_at_period_end(session: Session, user: User, cancel: bool, attempt: str,
                             reason: str | None = None, comment: str | None = None) -> Subscription:
    """Cancel at the end of the paid period (cancel=True) or take that back (cancel=False). A cancellation's
    reason (one of CANCEL_REASONS) and comment go to Stripe's cancellation_details and stay on our row for
    finance; resuming clears them."""
    records.lock_account(session, user.id)  # before the call: its answer is then the newest (records)
    sub = current_subscription(session, user.id)
    if sub is None or sub.status not in ("active", "trialing", "past_due"):
        raise BillingError("You have no active subscription.")
    if reason is not None and reason not in CANCEL_REASONS:
        raise BillingError("Choose one of the reasons listed.")
    comment = (comment or "").strip()[:CANCEL_COMMENT_MAX] or None
    obj = gateway.set_cancel_at_period_end(sub.stripe_subscription_id, cancel, attempt, reason, comment)
    sub = records.store_subscription_answer(session, user.id, obj)
    sub.cancel_reason, sub.cancel_comment = (reason, comment) if cancel else (None, None)
    return sub


def _changeable(session: Session, user: User, plan_key: str) -> tuple[Subscription, Plan]:
    """The live subscription a plan change applies to, and the plan it moves to; BillingError if it cannot."""
    plan = PLANS.get(plan_key)
    if plan is None:
        raise BillingError("That plan does not exist.")
    sub = current_subscription(session, user.id)
    if sub is None or sub.status not in ("active", "trialing"):
        raise BillingError("You can change plans while your subscription is active.")
    if sub.cancel_at_period_end:
        raise BillingError("Your subscription ends at the end of the period: resume it first to change plans.")
    if sub.plan == plan.key:
        raise BillingError(f"You are already on {plan.label}.")
    return sub, plan


def _current_price(plan: Plan) -> dict:
    try:
        return catalog.find_price(plan)
    except catalog.PlanUnavailable:
        log.error("plan %s has no active price in Stripe: run `saas stripe sync-plans`", plan.key)
        raise BillingError("That plan cannot be bought just now. Please try again later.") from None


def preview_plan_change(session: Session, user: User, plan_key: str) -> dict[str, Any]:
    """What Stripe would invoice now to move the subscription to `plan_key` (invoices.create_preview): the
    proration lines, the amount due and any credit left on the balance, with the proration date the change
    must then use so that it charges exactly this. JSON values, kept with the waiting operation."""
    sub, plan = _changeable(session, user, plan_key)
    price = _current_price(plan)
    item = gateway.retrieve_subscription(sub.stripe_subscription_id)["items"]["data"][0]
    proration_date = int(time.time())
    preview = gateway.preview_price_change(user.stripe_customer_id or "", sub.stripe_subscription_id, item["id"],
                                           price["id"], proration_date)
    return {"plan_key": plan.key, "price_id": price["id"], "proration_date": proration_date,
            "currency": preview["currency"], "amount_due": preview["amount_due"], "total": preview["total"],
            "credit_left": -min(0, preview.get("ending_balance") or 0),
            "lines": [_preview_line(line, label_for(sub.plan), plan.label) for line in preview["lines"]["data"]]}


def _preview_line(line: dict[str, Any], old_label: str, new_label: str) -> dict[str, Any]:
    """A preview line in our words: a credit for the old plan's unused time, a charge for the new plan's
    remaining time, or (another interval) the new plan's whole first period; with its period (Unix times)."""
    details = (line.get("parent") or {}).get("subscription_item_details") or {}
    kind = "credit" if line["amount"] < 0 else "remaining" if details.get("proration") else "period"
    return {"kind": kind, "plan": old_label if kind == "credit" else new_label, "amount": line["amount"],
            "start": line["period"]["start"], "end": line["period"]["end"]}


def change_plan(session: Session, user: User, plan_key: str, price_id: str, proration_date: int,
                attempt: str) -> tuple[Subscription, dict[str, Any]]:
    """Move the subscription to the previewed plan at the preview's proration date: the prorations are
    invoiced and charged at once (a declined card changes nothing). The subscription, and the change's
    invoice as Stripe returned it."""
    records.lock_account(session, user.id)  # before the calls: their answer is then the newest (records)
    sub, plan = _changeable(session, user, plan_key)
    if _current_price(plan)["id"] != price_id:
        raise BillingError("The price of that plan changed since you looked. Please preview the change again.")
    item = gateway.retrieve_subscription(sub.stripe_subscription_id)["items"]["data"][0]
    started = records.before_stripe_call()
    obj = gateway.change_price(sub.stripe_subscription_id, item["id"], price_id, proration_date, attempt)
    sub = records.store_subscription_answer(session, user.id, obj)
    latest = obj.get("latest_invoice")
    invoice: dict[str, Any] = latest if isinstance(latest, dict) else {}
    if invoice:
        records.upsert_invoice(session, user, invoice, started)
    return sub, invoice
