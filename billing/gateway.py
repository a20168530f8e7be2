"""The one module that talks to Stripe: one function per API call.

Every POST carries an idempotency key derived from our own ids, so a retried task (or
stripe-python's own retries of network and 5xx errors) never does a thing twice. Errors come
out as three kinds: PaymentError (a message the subscriber can act on), NotFound, GatewayError.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import stripe

from saas.core import runtime

_clients: dict[tuple[str, str], stripe.StripeClient] = {}

# Stripe's decline codes, said so that a subscriber knows what to do next.
DECLINE_MESSAGES = {
    "insufficient_funds": "Your card has insufficient funds. Try another card.",
    "expired_card": "Your card has expired. Enter a card that is still valid.",
    "incorrect_cvc": "The security code (CVC) is wrong. Check it and try again.",
    "incorrect_number": "The card number is wrong. Check it and try again.",
    "processing_error": "Your bank could not process the card just now. Try again in a few minutes.",
    "lost_card": "Your card was declined. Please use another card.",
    "stolen_card": "Your card was declined. Please use another card.",
    "authentication_required": "Your bank asks you to authenticate this payment. Complete your bank's "
                               "confirmation step, or use another card.",
}
GENERIC_DECLINE = "Your card was declined. Please use another card or contact your bank."


class GatewayError(Exception):
    """Stripe could not be reached or refused the call; retrying later may help."""


class NotFound(GatewayError):
    """The object does not exist at Stripe (already deleted, or never was)."""


class PaymentError(GatewayError):
    """The card was declined; the message is meant for the subscriber."""


def client() -> stripe.StripeClient:
    """A StripeClient for the process's STRIPE_SECRET_KEY and STRIPE_API_BASE, retrying network
    and 5xx errors. (An adapter, like the database engine: bound from the process's settings.)"""
    settings = runtime.settings()
    key = (settings.stripe_secret_key, settings.stripe_api_base)
    if key not in _clients:
        _clients[key] = stripe.StripeClient(
            settings.stripe_secret_key, base_addresses={"api": settings.stripe_api_base}, max_network_retries=2
        )
    return _clients[key]


def subscriber_message(exc: stripe.CardError) -> str:
    """Turn a card error into a sentence a subscriber understands."""
    code = getattr(exc, "code", None)
    decline = (exc.error.decline_code if exc.error else None) or code
    return DECLINE_MESSAGES.get(decline or "", GENERIC_DECLINE)


def decline_message(error: dict | None) -> str:
    """The same sentence for a Stripe error object (a PaymentIntent's last_payment_error, a SetupIntent's
    last_setup_error): by decline_code, else code."""
    error = error or {}
    return DECLINE_MESSAGES.get(error.get("decline_code") or error.get("code") or "", GENERIC_DECLINE)


def _call(fn, *args: Any, **kwargs: Any) -> Any:
    """Run one API call; plain dicts out, stripe-python's errors translated into ours."""
    with _translated():
        return fn(*args, **kwargs).to_dict()


def _every(fn, params: dict[str, Any]) -> Iterator[dict]:
    """Every item of a list, page after page (stripe-python's auto_paging_iter: `starting_after` the
    last item of each page until `has_more` is false), as plain JSON dicts (a decimal string stays a
    string, as on the wire: events are stored as JSON); errors translated on any page."""
    with _translated():
        for item in fn(params).auto_paging_iter():
            yield item.to_dict(for_json=True)


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except stripe.CardError as exc:
        raise PaymentError(subscriber_message(exc)) from exc
    except stripe.InvalidRequestError as exc:
        if exc.http_status == 404:
            raise NotFound(str(exc.user_message or exc)) from exc
        raise GatewayError(str(exc.user_message or exc)) from exc
    except stripe.StripeError as exc:
        raise GatewayError(str(exc.user_message or exc)) from exc


def _key(*parts: object) -> dict[str, str]:
    return {"idempotency_key": ":".join(str(p) for p in parts)}


def create_customer(user_id: int, email: str, name: str) -> dict:
    """https://docs.stripe.com/api/customers/create"""
    params = {"email": email, "name": name, "metadata": {"user_id": str(user_id)}}
    return _call(client().v1.customers.create, params, _key("customer-create", user_id))


def delete_customer(customer_id: str) -> dict:
    """https://docs.stripe.com/api/customers/delete"""
    return _call(client().v1.customers.delete, customer_id)


def set_default_payment_method(customer_id: str, payment_method_id: str) -> dict:
    """https://docs.stripe.com/api/customers/update (invoice_settings.default_payment_method)"""
    params = {"invoice_settings": {"default_payment_method": payment_method_id}}
    return _call(client().v1.customers.update, customer_id, params,
                 _key("customer-default-pm", customer_id, payment_method_id))


def create_card_payment_method(number: str, exp_month: int, exp_year: int, key: str) -> dict:
    """https://docs.stripe.com/api/payment_methods/create (raw numbers: test mode and the emulator only)"""
    params = {"type": "card", "card": {"number": number, "exp_month": exp_month, "exp_year": exp_year}}
    return _call(client().v1.payment_methods.create, params, _key("pm-create", key))


def attach_payment_method(payment_method_id: str, customer_id: str) -> dict:
    """https://docs.stripe.com/api/payment_methods/attach"""
    return _call(client().v1.payment_methods.attach, payment_method_id, {"customer": customer_id},
                 _key("pm-attach", payment_method_id, customer_id))


def retrieve_payment_method(payment_method_id: str) -> dict:
    """https://docs.stripe.com/api/payment_methods/retrieve"""
    return _call(client().v1.payment_methods.retrieve, payment_method_id)


def detach_payment_method(payment_method_id: str) -> dict:
    """https://docs.stripe.com/api/payment_methods/detach

    A card no longer attached (detached in the Dashboard, or by our own call more than a day ago,
    beyond its idempotency key) is answered 400 by Stripe: that is done, not a failure to retry.
    """
    try:
        return _call(client().v1.payment_methods.detach, payment_method_id, None, _key("pm-detach", payment_method_id))
    except NotFound:
        raise
    except GatewayError as exc:
        if not isinstance(exc.__cause__, stripe.InvalidRequestError):
            raise
        pm = retrieve_payment_method(payment_method_id)
        if pm.get("customer") is not None:
            raise
        return pm


def create_setup_checkout_session(customer_id: str, attempt: str, success_url: str, cancel_url: str) -> dict:
    """https://docs.stripe.com/api/checkout/sessions/create (mode=setup: collect a card, charge nothing)"""
    params = {
        "mode": "setup", "customer": customer_id, "currency": "usd",
        "success_url": success_url, "cancel_url": cancel_url, "client_reference_id": attempt,
    }
    return _call(client().v1.checkout.sessions.create, params, _key("checkout-setup", customer_id, attempt))


def retrieve_checkout_session(session_id: str) -> dict:
    """https://docs.stripe.com/api/checkout/sessions/retrieve (with the setup intent's card expanded)"""
    return _call(client().v1.checkout.sessions.retrieve, session_id, {"expand": ["setup_intent.payment_method"]})


def create_subscription(customer_id: str, price_id: str, attempt: str) -> dict:
    """https://docs.stripe.com/api/subscriptions/create (a declined first charge is an error, not a half-made subscription)"""
    params = {
        "customer": customer_id, "items": [{"price": price_id}],
        "payment_behavior": "error_if_incomplete", "expand": ["latest_invoice"],
    }
    return _call(client().v1.subscriptions.create, params, _key("subscription-create", customer_id, price_id, attempt))


def retrieve_subscription(subscription_id: str) -> dict:
    """https://docs.stripe.com/api/subscriptions/retrieve"""
    return _call(client().v1.subscriptions.retrieve, subscription_id)


def list_subscriptions(customer_id: str) -> Iterator[dict]:
    """https://docs.stripe.com/api/subscriptions/list (every status, canceled included; every page)"""
    return _every(client().v1.subscriptions.list, {"customer": customer_id, "status": "all", "limit": 100})


def retrieve_customer(customer_id: str) -> dict:
    """https://docs.stripe.com/api/customers/retrieve (its default card expanded; a deleted customer
    answers `deleted: true`)"""
    return _call(client().v1.customers.retrieve, customer_id,
                 {"expand": ["invoice_settings.default_payment_method"]})


def list_events(created_gte: int) -> Iterator[dict]:
    """https://docs.stripe.com/api/events/list (those created at or after `created_gte`, newest first,
    every page; Stripe lists the past 30 days only)"""
    return _every(client().v1.events.list, {"created": {"gte": created_gte}, "limit": 100})


def set_cancel_at_period_end(subscription_id: str, cancel: bool, attempt: str,
                             feedback: str | None = None, comment: str | None = None) -> dict:
    """https://docs.stripe.com/api/subscriptions/update (cancel_at_period_end: cancel, or resume; a cancellation
    carries the subscriber's `cancellation_details`: feedback, one of Stripe's reasons, and a comment)"""
    params: dict[str, Any] = {"cancel_at_period_end": cancel}
    if cancel and (feedback or comment):
        params["cancellation_details"] = {"feedback": feedback or "", "comment": comment or ""}
    return _call(client().v1.subscriptions.update, subscription_id, params,
                 _key("subscription-cancel-at-period-end", subscription_id, cancel, attempt))


def preview_price_change(customer_id: str, subscription_id: str, item_id: str, price_id: str,
                         proration_date: int) -> dict:
    """https://docs.stripe.com/api/invoices/create_preview (the invoice a change of the subscription's item to
    `price_id` at `proration_date` makes: the prorations, invoiced at once)"""
    params: dict[str, Any] = {"customer": customer_id, "subscription": subscription_id, "subscription_details": {
        "items": [{"id": item_id, "price": price_id}], "proration_behavior": "always_invoice",
        "proration_date": proration_date}}
    return _call(client().v1.invoices.create_preview, params)


def change_price(subscription_id: str, item_id: str, price_id: str, proration_date: int, attempt: str) -> dict:
    """https://docs.stripe.com/api/subscriptions/update (items[0][price]: the new plan's price, prorated from the
    same `proration_date` as its preview so the charge is the one shown, invoiced and charged at once; a
    declined charge is an error and changes nothing)"""
    params: dict[str, Any] = {
        "items": [{"id": item_id, "price": price_id}], "proration_behavior": "always_invoice",
        "proration_date": proration_date, "payment_behavior": "error_if_incomplete", "expand": ["latest_invoice"],
    }
    return _call(client().v1.subscriptions.update, subscription_id, params,
                 _key("subscription-change-price", subscription_id, price_id, attempt))


def cancel_subscription(subscription_id: str) -> dict:
    """https://docs.stripe.com/api/subscriptions/cancel (at once; used by the demo seed)"""
    return _call(client().v1.subscriptions.cancel, subscription_id)


def list_invoices(customer_id: str, limit: int = 24) -> list[dict]:
    """https://docs.stripe.com/api/invoices/list"""
    page = _call(client().v1.invoices.list, {"customer": customer_id, "limit": limit})
    return page["data"]


def find_prices(lookup_keys: list[str]) -> list[dict]:
    """https://docs.stripe.com/api/prices/list (active prices by lookup_key, their products expanded; at most 10 keys)"""
    page = _call(client().v1.prices.list, {"lookup_keys": lookup_keys, "active": True, "limit": 100,
                                           "expand": ["data.product"]})
    return page["data"]


def create_product(product_id: str, name: str) -> dict:
    """https://docs.stripe.com/api/products/create (with our own id, so a second create is refused, not doubled)"""
    return _call(client().v1.products.create, {"id": product_id, "name": name}, _key("product-create", product_id))


def update_product(product_id: str, name: str) -> dict:
    """https://docs.stripe.com/api/products/update"""
    return _call(client().v1.products.update, product_id, {"name": name, "active": True},
                 _key("product-update", product_id, name))


def create_price(product_id: str, lookup_key: str, amount_cents: int, currency: str, interval: str,
                 nickname: str, transfer: bool) -> dict:
    """https://docs.stripe.com/api/prices/create (prices are immutable: a new amount is a new price, and
    `transfer_lookup_key` moves the plan's lookup_key to it from the old one)"""
    params: dict[str, Any] = {
        "product": product_id, "unit_amount": amount_cents, "currency": currency,
        "recurring": {"interval": interval}, "lookup_key": lookup_key, "nickname": nickname,
    }
    if transfer:
        params["transfer_lookup_key"] = True
    return _call(client().v1.prices.create, params,
                 _key("price-create", lookup_key, amount_cents, currency, interval))


def last_payment_error(invoice_id: str) -> dict | None:
    """https://docs.stripe.com/api/invoice-payment/list (newest first, its PaymentIntent expanded): the error
    of the invoice's latest charge attempt, `last_payment_error` (code, decline_code, message), or None.

    Since 2025-03-31.basil an invoice names neither its charge nor its PaymentIntent; an
    invoice.payment_failed event carries `last_finalization_error` only, which is about finalizing the
    invoice (a tax or account problem), never about the card.
    """
    page = _call(client().v1.invoice_payments.list,
                 {"invoice": invoice_id, "limit": 1, "expand": ["data.payment.payment_intent"]})
    for payment in page["data"]:
        intent = (payment.get("payment") or {}).get("payment_intent")
        if isinstance(intent, dict):
            return intent.get("last_payment_error")
    return None


def pay_invoice(invoice_id: str, attempt: str) -> dict:
    """https://docs.stripe.com/api/invoices/pay (charge the open invoice now, to the customer's default card).

    `attempt` names this try (a Pay-now operation, a saved card): its idempotency key, so a retried task
    replays Stripe's answer instead of charging again, while the next try is a new attempt. Stripe
    declines a second charge of a paid invoice in any case ("Invoice is already paid").
    """
    return _call(client().v1.invoices.pay, invoice_id, {"off_session": True}, _key("invoice-pay", invoice_id, attempt))


def mark_invoice_uncollectible(invoice_id: str) -> dict:
    """https://docs.stripe.com/api/invoices/mark_uncollectible (Stripe stops retrying it)"""
    return _call(client().v1.invoices.mark_uncollectible, invoice_id, None, _key("invoice-uncollectible", invoice_id))
