"""Celery tasks for slow Stripe calls and webhook processing: thin wrappers over billing's domain code."""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from billing import dunning, gateway, handlers, progress, records, subscriptions
from billing.expiry import ExpiryWindow
from billing.models import DunningCase, StripeEvent
from billing.plans import label_for
from billing.records import local_today
from saas.core import metrics, runtime
from saas.core.backoff import backoff_seconds
from saas.core.db import session_scope
from saas.core.formatting import brand_name, long_date, money
from saas.core.models import User
from saas.core.queue import app, enqueue

log = logging.getLogger(__name__)
UNREACHABLE = "We could not reach our payment provider. Nothing was changed; please try again in a few minutes."


def expiry_window() -> ExpiryWindow:
    """The expiry rule as it applies today, from the worker's settings."""
    settings = runtime.settings()
    return ExpiryWindow(local_today(settings.tz), settings.card_expiring_days)


@app.task(name="billing.tasks.process_stripe_event", bind=True, max_retries=8)
def process_stripe_event(self, event_id: str) -> None:
    """Apply one stored webhook event; failures are recorded on the event and retried."""
    try:
        with session_scope() as session:
            if handlers.process_event(session, event_id, expiry_window()):
                _observe_processed(session.get_one(StripeEvent, event_id))
    except Exception as exc:
        metrics.WEBHOOK_PROCESSING.labels("failed").inc()
        with session_scope() as session:
            session.execute(update(StripeEvent).where(StripeEvent.id == event_id).values(error=repr(exc)[:2000]))
        log.warning("stripe event %s failed (attempt %s): %r", event_id, self.request.retries + 1, exc)
        raise self.retry(exc=exc, countdown=backoff_seconds(self.request.retries)) from exc


def _observe_processed(row: StripeEvent) -> None:
    """Count a processed event and the time it waited since it arrived."""
    metrics.WEBHOOK_PROCESSING.labels("processed").inc()
    if row.processed_at is not None and row.received_at is not None:
        kind = row.type if row.type in handlers.HANDLERS else "other"
        metrics.WEBHOOK_LAG.labels(kind).observe(max((row.processed_at - row.received_at).total_seconds(), 0.0))


def _operate(task, op_id: str, user_id: int, action: Callable[[Any, Any], Any],
             done: Callable[[Any], tuple[str, str | None]]) -> None:
    """Run `action(session, user)` for a waiting page, then record what the page should say."""
    try:
        with session_scope() as session:
            user = session.get(User, user_id)
            result = action(session, user)
            message, next_url = done(result)
    except (gateway.PaymentError, subscriptions.BillingError, dunning.NothingToPay) as exc:
        progress.finish(op_id, str(exc), ok=False)
    except gateway.GatewayError as exc:
        if task.request.retries >= task.max_retries:
            progress.finish(op_id, UNREACHABLE, ok=False)
            return
        raise task.retry(exc=exc, countdown=backoff_seconds(task.request.retries)) from exc
    else:
        progress.finish(op_id, message, next_url)


@app.task(name="billing.tasks.start_card_update", bind=True, max_retries=3)
def start_card_update(self, user_id: int, op_id: str, success_url: str, cancel_url: str) -> None:
    """Open a Checkout session for a new card; the waiting page then sends the subscriber there. Its
    SetupIntent is linked to the operation, so a card refused in the form (setup_intent.setup_failed) is
    told on this operation's page."""

    def done(checkout: dict) -> tuple[str, str]:
        if isinstance(checkout.get("setup_intent"), str):
            progress.link(op_id, checkout["setup_intent"])
        return "Opening the secure card form…", checkout["url"]

    _operate(self, op_id, user_id,
             lambda s, u: subscriptions.start_card_update(s, u, op_id, success_url, cancel_url), done)


@app.task(name="billing.tasks.sync_card", bind=True, max_retries=3)
def sync_card(self, user_id: int, checkout_id: str, op_id: str) -> None:
    """After Checkout: the new card becomes the card, the old one is detached."""

    def done(result) -> tuple[str, None]:
        card, retried = result
        if card is None:
            return "A newer card has replaced that one.", None
        saved = f"Your {brand_name(card.brand)} ending {card.last4} is saved."
        return f"{saved} {retried}" if retried else saved, None

    _operate(self, op_id, user_id, lambda s, u: _card_then_retry(s, u, checkout_id, op_id), done)


def _card_then_retry(session, user, checkout_id: str, op_id: str) -> tuple[Any, str]:
    """Save the new card; in dunning, retry the open invoice with it at once (Churn Buster's rule): the
    subscriber reads both outcomes on the same page. A declined retry keeps the card and says why."""
    card = subscriptions.sync_checkout_session(session, user, checkout_id, expiry_window())
    if card is None or dunning.current_case(session, user.id) is None:
        return card, ""
    session.commit()  # the card is saved whatever the retry does
    try:
        case = dunning.retry_open_invoice(session, user, "card_updated", f"card-{checkout_id}")
    except dunning.NothingToPay:
        return card, ""
    except gateway.PaymentError as exc:
        return card, f"We tried your payment again with it, but it was declined: {exc}"
    return card, (f"Your payment of {money(case.amount_cents, case.currency)} went through. Thank you!"
                  if case.status == "recovered" else "")


@app.task(name="billing.tasks.pay_open_invoice", bind=True, max_retries=3)
def pay_open_invoice(self, user_id: int, op_id: str) -> None:
    """Pay now: charge the open invoice of the account's dunning case, and tell the waiting banner."""

    def done(case) -> tuple[str, None]:
        if case.status == "recovered":
            return f"Your payment of {money(case.amount_cents, case.currency)} went through. Thank you!", None
        return "Your payment is being processed.", None

    _operate(self, op_id, user_id, lambda s, u: dunning.retry_open_invoice(s, u, "pay_now", op_id), done)


@app.task(name="billing.tasks.apply_dunning_final_action", bind=True, max_retries=10)
def apply_dunning_final_action(self, case_ids: list[int]) -> None:
    """DUNNING_FINAL_ACTION for cases advance-dunning closed as lost, each in its own transaction; one that
    Stripe refuses for now is retried with backoff (the job's sweep queues it again if this is lost)."""
    failed: list[int] = []
    for case_id in case_ids:
        try:
            with session_scope() as session:
                case = session.get(DunningCase, case_id)
                if case is not None and case.user_id is not None:  # the account's lock first, as webhooks take it
                    records.lock_account(session, case.user_id)
                if case is not None:
                    session.refresh(case, with_for_update=True)
                    dunning.apply_final_action(session, case)
        except gateway.GatewayError as exc:
            log.warning("final action of dunning case %s failed: %r", case_id, exc)
            failed.append(case_id)
    if failed:
        raise self.retry(kwargs={"case_ids": failed}, countdown=backoff_seconds(self.request.retries))


@app.task(name="billing.tasks.subscribe", bind=True, max_retries=3)
def subscribe(self, user_id: int, plan_key: str, op_id: str) -> None:
    _operate(self, op_id, user_id, lambda s, u: subscriptions.subscribe(s, u, plan_key, op_id),
             lambda sub: (f"You are subscribed to {label_for(plan_key)}. Thank you!", None))


@app.task(name="billing.tasks.set_cancel_at_period_end", bind=True, max_retries=3)
def set_cancel_at_period_end(self, user_id: int, cancel: bool, op_id: str, reason: str | None = None,
                             comment: str | None = None) -> None:
    def done(sub) -> tuple[str, None]:
        if cancel:
            end = long_date(sub.current_period_end, runtime.settings().tz) or "the end of the period"
            return f"Your subscription ends on {end}. You can resume it until then.", None
        return "Your subscription will continue. Welcome back!", None

    _operate(self, op_id, user_id,
             lambda s, u: subscriptions.set_cancel_at_period_end(s, u, cancel, op_id, reason, comment), done)


@app.task(name="billing.tasks.preview_plan_change", bind=True, max_retries=3)
def preview_plan_change(self, user_id: int, plan_key: str, op_id: str, confirm_url: str) -> None:
    """Ask Stripe what the change would charge; the waiting page then shows it on `confirm_url`."""
    def done(preview: dict) -> tuple[str, str]:
        progress.set_state(op_id, preview=preview)
        return "Here is what the change costs.", confirm_url

    _operate(self, op_id, user_id, lambda s, u: subscriptions.preview_plan_change(s, u, plan_key), done)


@app.task(name="billing.tasks.change_plan", bind=True, max_retries=3)
def change_plan(self, user_id: int, plan_key: str, price_id: str, proration_date: int, op_id: str,
                attempt: str | None = None) -> None:
    """Apply a previewed change; `attempt` (the preview's id) keys it at Stripe, so it is made once per preview."""
    def done(changed) -> tuple[str, None]:
        sub, invoice = changed  # (Stripe made the change; the row may wait for its webhook: say plan_key)
        said = f"You are now on {label_for(plan_key)}."
        currency = invoice.get("currency") or sub.currency
        if invoice.get("amount_due"):
            said += f" {money(invoice['amount_due'], currency)} was charged to your card."
        if (invoice.get("ending_balance") or 0) < 0:
            said += f" {money(-invoice['ending_balance'], currency)} of credit pays your next invoices."
        return said, None

    _operate(self, op_id, user_id,
             lambda s, u: subscriptions.change_plan(s, u, plan_key, price_id, proration_date, attempt or op_id),
             done)


@app.task(name="billing.tasks.delete_stripe_customer", bind=True, max_retries=10)
def delete_stripe_customer(self, customer_id: str) -> None:
    """Delete a purged account's Stripe customer; already gone (404) counts as done.

    The purged user keeps the customer id until this succeeds, so a deletion lost with a
    crashed process is found again by sweep_stripe_deletions.
    """
    try:
        gateway.delete_customer(customer_id)
    except gateway.NotFound:
        log.info("stripe customer %s was already deleted", customer_id)
    except gateway.GatewayError as exc:
        raise self.retry(exc=exc, countdown=backoff_seconds(self.request.retries)) from exc
    with session_scope() as session:
        session.execute(update(User).where(User.stripe_customer_id == customer_id, User.purged_at.is_not(None))
                        .values(stripe_customer_id=None))


@app.task(name="billing.tasks.sweep_stripe_deletions")
def sweep_stripe_deletions(older_than_minutes: int = 10) -> int:
    """Re-enqueue the Stripe deletions of purged accounts that still hold a customer id."""
    cutoff = datetime.now(UTC) - timedelta(minutes=older_than_minutes)
    with session_scope() as session:
        customers = list(session.scalars(
            select(User.stripe_customer_id)
            .where(User.purged_at < cutoff, User.stripe_customer_id.is_not(None)).limit(1000)))
    for customer_id in customers:
        enqueue(delete_stripe_customer, customer_id=customer_id)
    return len(customers)
