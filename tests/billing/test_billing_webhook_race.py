"""A subscription event of the very second of a subscriber's action (docs/reliability.md, "webhooks within
one second"): its `created` cannot order it against our row, so the handler applies the subscription as
Stripe has it now, read again, and a late stale payload cannot undo the action."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from billing import gateway, handlers, subscriptions
from billing.expiry import ExpiryWindow
from billing.models import Subscription
from saas.core.db import session_scope
from saas.core.models import User
from tests.factories import stripe_event, stripe_subscriber
from tests.helpers import emulator_delivered, newest_emulator_event, signed

URL = "/billing/webhooks/stripe"


@pytest.fixture
def emulator(stripe_emulator):
    before = newest_emulator_event(stripe_emulator)
    yield stripe_emulator
    if newest_emulator_event(stripe_emulator) != before:
        emulator_delivered(stripe_emulator, processed=False)


@pytest.mark.parametrize("second", [0, 1], ids=["the stored second", "the next second"])
@pytest.mark.parametrize("reread", [True, False], ids=["fixed", "without the re-read (the race)"])
def test_a_late_event_of_the_cancels_second_does_not_undo_the_cancel(emulator, client, today, monkeypatch,
                                                                     settings, reread, second):
    user = stripe_subscriber(today)
    with session_scope() as s:
        sub = s.scalar(select(Subscription).where(Subscription.user_id == user.id))
    before_cancel = gateway.retrieve_subscription(sub.stripe_subscription_id)  # the renewal's payload, say
    assert before_cancel["cancel_at_period_end"] is False
    with session_scope() as s:
        cancelled = subscriptions.set_cancel_at_period_end(s, s.get_one(User, user.id), True, "race")
        stamp = cancelled.stripe_event_created
    # A customer.subscription.updated that Stripe created in the cancel's second, from the state before it,
    # delivered after the cancel's answer was stored:
    late = stripe_event("customer.subscription.updated", json.loads(json.dumps(before_cancel, default=str)), stamp + second,
                        f"evt_late_{user.id}_{second}_{reread}")
    payload, headers = signed(late, emulator.webhook_secret)
    assert client.post(URL, data=payload, headers=headers).status_code == 200
    if not reread:
        monkeypatch.setattr(handlers, "UNORDERED_SECONDS", -1)  # the handler as it was: trust the payload
    with session_scope() as s:
        assert handlers.process_event(s, late["id"], ExpiryWindow(today, settings.card_expiring_days))
    with session_scope() as s:
        row = s.scalar(select(Subscription).where(Subscription.user_id == user.id))
    assert row.cancel_at_period_end is reread  # the race undid the cancel; the re-read keeps it
    assert gateway.retrieve_subscription(sub.stripe_subscription_id)["cancel_at_period_end"] is True
