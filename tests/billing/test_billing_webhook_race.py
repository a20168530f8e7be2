"""A subscription event that `created` cannot order against our row, and a subscriber's action racing it
(docs/reliability.md, "webhooks within one second of a subscriber's action"). Every write from Stripe's
answer happens under the account's lock, taken before the Stripe call or read, and is applied whatever
the row's stamp; a payload of the stamp's second or earlier is never applied: Stripe is read again."""
from __future__ import annotations

import json
import threading
import time

import pytest
from sqlalchemy import select, text

from billing import gateway, handlers, records, subscriptions
from billing.expiry import ExpiryWindow
from billing.models import Subscription
from saas.core.db import session_scope
from saas.core.models import User
from tests.factories import stripe_event, stripe_subscriber
from tests.helpers import emulator_delivered, newest_emulator_event, signed, wait_until

URL = "/billing/webhooks/stripe"


@pytest.fixture
def emulator(stripe_emulator):
    before = newest_emulator_event(stripe_emulator)
    yield stripe_emulator
    if newest_emulator_event(stripe_emulator) != before:
        emulator_delivered(stripe_emulator, processed=False)


def _row(user_id: int) -> Subscription:
    with session_scope() as s:
        return s.scalar(select(Subscription).where(Subscription.user_id == user_id))


def _late_event(client, emulator, payload: dict, created: int, event_id: str) -> dict:
    """A customer.subscription.updated Stripe created at `created` from `payload`, delivered now."""
    late = stripe_event("customer.subscription.updated", json.loads(json.dumps(payload, default=str)), created, event_id)
    body, headers = signed(late, emulator.webhook_secret)
    assert client.post(URL, data=body, headers=headers).status_code == 200
    return late


@pytest.mark.parametrize("second", [0, 1], ids=["the cancel's second", "the next second"])
def test_a_late_event_of_the_cancels_second_does_not_undo_the_cancel(emulator, client, today, settings, second):
    user = stripe_subscriber(today)
    sub_id = _row(user.id).stripe_subscription_id
    before_cancel = gateway.retrieve_subscription(sub_id)  # the renewal's payload, say
    assert before_cancel["cancel_at_period_end"] is False
    called_at = int(time.time())
    with session_scope() as s:
        subscriptions.set_cancel_at_period_end(s, s.get_one(User, user.id), True, "race")
    # Stripe created it in the cancel's second (or the next), from the state before the cancel, and it is
    # delivered after the cancel's answer was stored:
    late = _late_event(client, emulator, before_cancel, called_at + second, f"evt_late_{user.id}_{second}")
    with session_scope() as s:
        assert handlers.process_event(s, late["id"], ExpiryWindow(today, settings.card_expiring_days))
    assert _row(user.id).cancel_at_period_end is True  # applied, the payload would have undone the cancel
    assert gateway.retrieve_subscription(sub_id)["cancel_at_period_end"] is True


def test_the_answer_of_an_action_is_stored_even_when_an_event_of_its_second_came_first(emulator, today):
    """Seen in CI under a clock moved to 2027-03-01: invoice.paid's events were stamped with the second
    in which the subscriber then cancelled, and the cancel's answer, stamped a second earlier, was thrown
    away as older; the page said "Your subscription ends on …" over a row that did not."""
    user = stripe_subscriber(today)
    with session_scope() as s:
        s.execute(text("UPDATE subscriptions SET stripe_event_created = :t WHERE user_id = :u"),
                  {"t": int(time.time()) + 1, "u": user.id})  # an event of this second, or Stripe's clock ahead
    with session_scope() as s:
        cancelled = subscriptions.set_cancel_at_period_end(s, s.get_one(User, user.id), True, "race-answer")
        assert cancelled.cancel_at_period_end is True
    assert _row(user.id).cancel_at_period_end is True


def _waiting_on_the_account_lock() -> bool:
    with session_scope() as s:
        return bool(s.scalar(text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = :ns"),
            {"ns": records.ACCOUNT_LOCK}))


def test_a_cancel_waits_for_a_reread_in_flight_and_the_newest_state_wins(emulator, client, today, settings):
    """The interleaving the second-based order could not rule out: a worker re-reads the subscription just
    before the cancel reaches Stripe, and writes what it read after the cancel's answer was stored. With the
    account's lock around each read and its write, the cancel cannot call Stripe until the re-read is
    committed, so its answer is written last."""
    user = stripe_subscriber(today)
    sub_id = _row(user.id).stripe_subscription_id
    late = _late_event(client, emulator, gateway.retrieve_subscription(sub_id), int(time.time()),
                       f"evt_inflight_{user.id}")
    window = ExpiryWindow(today, settings.card_expiring_days)
    outcome: dict[str, object] = {}
    with session_scope() as worker:  # the webhook's transaction: it re-reads (cancel still False) and writes
        assert handlers.process_event(worker, late["id"], window)

        def cancel() -> None:
            try:
                with session_scope() as s:
                    outcome["sub"] = subscriptions.set_cancel_at_period_end(
                        s, s.get_one(User, user.id), True, "inflight").cancel_at_period_end
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                outcome["error"] = exc

        subscriber = threading.Thread(target=cancel)
        subscriber.start()
        wait_until(_waiting_on_the_account_lock, "the cancel waiting for the account's lock")
        assert gateway.retrieve_subscription(sub_id)["cancel_at_period_end"] is False  # not called Stripe yet
    subscriber.join(timeout=30)
    assert outcome == {"sub": True}
    assert _row(user.id).cancel_at_period_end is True
