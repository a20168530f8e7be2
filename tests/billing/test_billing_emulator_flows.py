"""The gateway against the emulator, and the subscriber flows end to end (Checkout page, webhooks, worker)."""
from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import requests
from sqlalchemy import select

from billing import gateway, tasks
from billing.models import Card, Subscription
from saas.core.db import session_scope
from saas.core.settings import Settings, SettingsError
from tests.helpers import wait_until


@pytest.fixture
def stripe_env(stripe_emulator):
    return stripe_emulator


def test_gateway_customer_creation_is_idempotent_and_errors_are_translated(stripe_env):
    first = gateway.create_customer(9001, "x@example.com", "X")
    assert gateway.create_customer(9001, "x@example.com", "X")["id"] == first["id"]
    declined = gateway.create_card_payment_method("4000000000000002", 12, 2040, "t-declined")
    with pytest.raises(gateway.PaymentError, match="declined"):  # Stripe refuses the card when it is attached
        gateway.attach_payment_method(declined["id"], first["id"])
    pm = gateway.create_card_payment_method("4000000000000341", 12, 2040, "t-0341")
    gateway.attach_payment_method(pm["id"], first["id"])
    gateway.set_default_payment_method(first["id"], pm["id"])
    with pytest.raises(gateway.PaymentError, match="declined"):
        gateway.create_subscription(first["id"], "price_pro_monthly", "t-attempt")
    with pytest.raises(gateway.NotFound):
        gateway.delete_customer("cus_does_not_exist")


def test_delete_stripe_customer_task_treats_404_as_done(stripe_env):
    customer = gateway.create_customer(9002, "y@example.com", "Y")
    tasks.delete_stripe_customer.apply(args=(customer["id"],)).get()
    assert tasks.delete_stripe_customer.apply(args=(customer["id"],)).successful()


def test_live_key_cannot_point_at_the_emulator(services):
    env = {"DATABASE_URL": "postgresql://x/y", "REDIS_URL": "redis://x", "SMTP_URL": "smtp://x", "SAAS_ENV": "test",
           "STRIPE_SECRET_KEY": "sk_live_abc", "STRIPE_API_BASE": "http://127.0.0.1:12111"}
    with pytest.raises(SettingsError, match="live key"):
        Settings.from_env(env)


def _follow_wait(client, response) -> str:
    """Poll the waiting page until it moves on; return where it sends the subscriber."""
    assert response.status_code == 303, response.data
    wait_url = urlsplit(response.headers["Location"]).path

    def moved():
        r = client.get(wait_url)
        return r.headers["Location"] if r.status_code == 303 else None

    return wait_until(moved, "the billing operation")


def _enter_card(client, number: str, exp_month: int, exp_year: int) -> requests.Response:
    checkout_url = _follow_wait(client, client.post("/billing/card"))
    assert "/checkout/cs_" in checkout_url
    return requests.post(checkout_url, data={"number": number, "expiry": f"{exp_month:02d} / {exp_year % 100:02d}",
                                             "cvc": "123", "name": "Ana"}, allow_redirects=False, timeout=10)


def _cards(user_id: int) -> list[Card]:
    with session_scope() as s:
        return s.scalars(select(Card).where(Card.user_id == user_id)).all()


def test_update_card_flow_replaces_the_card_and_recomputes_is_expiring(stripe_env, celery_worker, make_user, auth, client,
                                                                       today):
    user = make_user(email="ana@example.com")
    auth.login("ana@example.com")

    declined = _enter_card(client, "4000 0000 0000 0002", today.month, today.year + 1)
    assert declined.status_code == 402 and "declined" in declined.text

    back = _enter_card(client, "4242 4242 4242 4242", today.month, today.year)  # works through this month only
    assert back.status_code == 303
    assert _follow_wait(client, client.get(urlsplit(back.headers["Location"]).path + "?"
                                           + urlsplit(back.headers["Location"]).query)) .endswith("/billing")
    [first] = _cards(user.id)
    assert (first.last4, first.is_expiring, first.is_default) == ("4242", True, True)

    back = _enter_card(client, "5555 5555 5555 4444", 12, today.year + 3)
    location = urlsplit(back.headers["Location"])
    _follow_wait(client, client.get(f"{location.path}?{location.query}"))
    cards = wait_until(lambda: [c for c in _cards(user.id)] if len(_cards(user.id)) == 1
                       and _cards(user.id)[0].last4 == "4444" else None, "the card replaced")
    assert (cards[0].brand, cards[0].is_expiring) == ("mastercard", False)
    assert gateway.retrieve_payment_method(first.stripe_payment_method_id)["customer"] is None
    assert "Mastercard ending 4444" in client.get("/billing", follow_redirects=True).get_data(as_text=True)


def test_subscribe_fail_recover_cancel_resume(stripe_env, celery_worker, make_user, auth, client, today):
    user = make_user(email="bruno@example.com")
    auth.login("bruno@example.com")
    back = _enter_card(client, "4242424242424242", 12, today.year + 2)
    location = urlsplit(back.headers["Location"])
    _follow_wait(client, client.get(f"{location.path}?{location.query}"))

    _follow_wait(client, client.post("/billing/subscribe", data={"plan": "pro"}))
    with session_scope() as s:
        sub = s.scalar(select(Subscription).where(Subscription.user_id == user.id))
        customer = s.get(type(user), user.id).stripe_customer_id
    assert (sub.plan, sub.status) == ("pro", "active")

    def status():
        with session_scope() as s:
            return s.scalar(select(Subscription.status).where(Subscription.user_id == user.id))

    stripe_env.trigger("invoice.payment_failed", customer=customer)
    wait_until(lambda: status() == "past_due", "past_due from the webhook")
    page = client.get("/billing").get_data(as_text=True)
    assert "Your last payment failed" in page and "/billing/card" in page
    stripe_env.trigger("invoice.paid", customer=customer)
    wait_until(lambda: status() == "active", "active again")

    # No waiting for the webhooks in between: the late events of the same second, and the cancel's own,
    # race each action (docs/reliability.md, "webhooks within one second of a subscriber's action").
    _follow_wait(client, client.post("/billing/cancel"))
    with session_scope() as s:
        assert s.scalar(select(Subscription.cancel_at_period_end).where(Subscription.user_id == user.id)) is True
    _follow_wait(client, client.post("/billing/resume"))
    with session_scope() as s:
        assert s.scalar(select(Subscription.cancel_at_period_end).where(Subscription.user_id == user.id)) is False

    stripe_env.trigger("payment_method.automatically_updated", customer=customer, exp_month=3,
                       exp_year=today.year + 5)
    wait_until(lambda: _cards(user.id)[0].exp_year == today.year + 5, "the automatic card update")
