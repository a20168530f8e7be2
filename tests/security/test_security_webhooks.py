"""Webhooks under fuzz: nothing unsigned, stale, future or malformed is accepted or stored; replays change nothing."""
from __future__ import annotations

import dataclasses
import itertools
import json
import time
from datetime import date

import pytest
import stripe
from hypothesis import given
from hypothesis import strategies as st

from billing.expiry import ExpiryWindow
from billing.handlers import process_event
from billing.models import Card, Invoice, MrrMovement, StripeEvent, Subscription
from saas.core.db import session_scope
from saas.core.models import AuditLog, User
from saas.core.outbox import OutboxMessage
from tests.factories import stripe_card as card
from tests.factories import stripe_event as event
from tests.factories import stripe_invoice as invoice
from tests.factories import stripe_subscription as subscription
from tests.helpers import OLD_SECRET, SECRET
from tests.security.fuzzing import fuzz, table_counts, table_rows, tried

URL = "/billing/webhooks/stripe"
TODAY = date(2026, 3, 10)
BILLING_TABLES = (User, Card, Subscription, Invoice, MrrMovement, StripeEvent, OutboxMessage, AuditLog)
_unique = itertools.count(1)


@pytest.fixture
def settings(settings):
    """Two configured webhook secrets (a rotation in progress), as production may have."""
    return dataclasses.replace(settings, stripe_webhook_secrets=(SECRET, OLD_SECRET))


def header_for(payload: str | bytes, secret: str, timestamp: int) -> str:
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    signature = stripe.WebhookSignature._compute_signature(f"{timestamp}.{text}", secret)
    return f"t={timestamp},v1={signature}"


def post(client, payload: str | bytes, header: str | None):
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["Stripe-Signature"] = header
    return client.post(URL, data=payload, headers=headers)


def assert_refused(response) -> None:
    """400 with a reason, as JSON, and nothing stored."""
    assert response.status_code == 400, response.data[:300]
    assert response.is_json and response.get_json()["error"]
    assert table_counts(StripeEvent)["stripe_events"] == 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
# Almost-events: each required field missing or of the wrong type.
bent_events = st.fixed_dictionaries({}, optional={
    "id": json_values, "type": json_values, "created": json_values, "data": json_values, "object": json_values})
malformed_bodies = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300),
    json_values.map(json.dumps),
    bent_events.map(json.dumps),
    st.sampled_from(["", "{", "null", "[]", '{"id": "evt_1"}', "\ufeff{}", '{"id":"evt_1","type":"x","created":1,'
                     '"data":{}', '{"id": "evt_\\u0000", "type": "x", "created": 1, "data": {}}']),
).filter(lambda body: not _is_event(body))


def _is_event(body) -> bool:
    """A well-formed event (those are accepted, rightly); the malformed strategy leaves them out."""
    try:
        evt = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(evt, dict) and all(isinstance(evt.get(k), t) and not isinstance(evt.get(k), bool)
                                         for k, t in (("id", str), ("type", str), ("created", int), ("data", dict))) \
        and "\x00" not in json.dumps(evt)


def a_valid_event(n: int, amount: int = 2900, customer: str = "cus_nobody") -> str:
    return json.dumps(event("invoice.paid", invoice(f"in_fuzz_{n}", customer, "sub_x", "paid", amount=amount),
                            int(time.time()), event_id=f"evt_fuzz_{n}"))


def test_malformed_payloads_signed_with_a_real_secret_are_refused(client, sent):
    """The signature is right, the body is not an event: 400, nothing stored, nothing enqueued."""

    @fuzz(250)
    @given(body=malformed_bodies, secret=st.sampled_from([SECRET, OLD_SECRET]))
    def check(body, secret):
        tried("webhook: malformed payload, valid signature")
        assert_refused(post(client, body, header_for(body, secret, int(time.time()))))

    check()
    assert sent == []


signature_faults = st.one_of(
    st.tuples(st.just("wrong secret"), st.text(min_size=1, max_size=40).filter(lambda s: s not in (SECRET, OLD_SECRET))),
    st.tuples(st.just("absent"), st.none()),
    st.tuples(st.just("stale"), st.integers(min_value=301, max_value=10**9)),
    st.tuples(st.just("future"), st.integers(min_value=301, max_value=10**9)),
    # A test client cannot send a line break in a header (neither can a real HTTP client).
    st.tuples(st.just("garbage header"), st.text(st.characters(blacklist_characters="\r\n"), max_size=120)),
    st.tuples(st.just("tampered body"), st.text(min_size=1, max_size=20)),
    st.tuples(st.just("v0 only"), st.none()),
    st.tuples(st.just("no timestamp"), st.none()),
    # Signed an hour ahead, with a fresh `t=` that a looser parser would read instead.
    st.tuples(st.just("two timestamps"), st.sampled_from([" t={now},", "t={now},", "T={now},", "t ={now},"])),
)


def faulty_request(fault: str, value, payload: str) -> tuple[str, str | None]:
    now = int(time.time())
    if fault == "wrong secret":
        return payload, header_for(payload, value, now)
    if fault == "absent":
        return payload, None
    if fault == "stale":
        return payload, header_for(payload, SECRET, now - value)
    if fault == "future":
        return payload, header_for(payload, SECRET, now + value)
    if fault == "garbage header":
        return payload, value
    if fault == "tampered body":
        return payload[:-1] + json.dumps(value) + "}", header_for(payload, SECRET, now)
    if fault == "two timestamps":
        return payload, value.format(now=now) + header_for(payload, SECRET, now + 3600)
    if fault == "v0 only":
        return payload, header_for(payload, SECRET, now).replace("v1=", "v0=")
    return payload, header_for(payload, SECRET, now).split(",", 1)[1]  # "no timestamp"


def test_wrong_absent_stale_and_future_signatures_are_refused(client, sent):
    """A genuine event body with a bad signature of every kind: 400, nothing stored, nothing enqueued."""

    @fuzz(300)
    @given(fault=signature_faults, amount=st.integers(0, 10**9), customer=st.text(max_size=30))
    def check(fault, amount, customer):
        kind, value = fault
        tried(f"webhook: signature {kind}")
        tried("webhook: bad signature (all kinds)")
        payload, header = faulty_request(kind, value, a_valid_event(next(_unique), amount, customer))
        assert_refused(post(client, payload, header))

    check()
    assert sent == []


def test_the_faults_are_real_the_same_requests_signed_right_are_accepted(client, sent):
    """Control: the fuzzed requests above differ from an accepted one only by the fault."""
    payload = a_valid_event(next(_unique))
    assert post(client, payload, header_for(payload, OLD_SECRET, int(time.time()))).status_code == 200
    assert table_counts(StripeEvent)["stripe_events"] == 1


# ---- replay --------------------------------------------------------------------------------------

CUSTOMERS = ["cus_ana", "cus_bruno", "cus_unknown"]
EVENT_KINDS = ["customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted",
               "invoice.paid", "invoice.payment_failed", "payment_method.attached", "payment_method.updated",
               "payment_method.detached", "customer.created"]


@st.composite
def billing_events(draw) -> dict:
    """One well-formed Stripe event about a small pool of objects, so events collide and arrive out of order."""
    kind = draw(st.sampled_from(EVENT_KINDS))
    customer = draw(st.sampled_from(CUSTOMERS))
    sub_id = draw(st.sampled_from(["sub_1", "sub_2"]))
    created = draw(st.integers(min_value=1_700_000_000, max_value=1_700_000_100))
    if kind.startswith("customer.subscription"):
        status = "canceled" if kind.endswith("deleted") else draw(st.sampled_from(
            ["active", "trialing", "past_due", "canceled", "unpaid", "incomplete"]))
        obj = subscription(sub_id, customer, status=status, amount=draw(st.sampled_from([900, 2900, 29000])),
                           interval=draw(st.sampled_from(["month", "year"])),
                           cancel_at_period_end=draw(st.booleans()))
    elif kind.startswith("invoice"):
        obj = invoice(draw(st.sampled_from(["in_1", "in_2"])), customer, sub_id,
                      "paid" if kind == "invoice.paid" else "open", amount=draw(st.sampled_from([900, 2900])))
    elif kind.startswith("payment_method"):
        obj = card(draw(st.sampled_from(["pm_1", "pm_2"])), None if kind.endswith("detached") else customer,
                   draw(st.integers(1, 12)), draw(st.integers(2025, 2032)),
                   last4=draw(st.sampled_from(["4242", "0005"])))
    else:
        obj = {"id": customer, "object": "customer", "name": draw(st.text(max_size=30))}
    return event(kind, obj, created, event_id=f"evt_replay_{next(_unique)}")


def deliver(client, evt: dict, secret: str):
    payload = json.dumps(evt)
    response = post(client, payload, header_for(payload, secret, int(time.time())))
    if response.status_code == 200:
        with session_scope() as s:  # what the worker does with the enqueued id
            process_event(s, evt["id"], ExpiryWindow(TODAY, 30))
    return response


def test_replaying_every_accepted_event_changes_nothing(stripe_emulator, client, make_user, sent):
    """Deliver a generated stream of events, then every accepted one again: the billing tables stay the same.
    An event no newer than its row makes the handler read the subscription from Stripe (the emulator:
    without it the test passed only after another test had started it)."""
    make_user(email="ana@example.com", stripe_customer_id="cus_ana")
    make_user(email="bruno@example.com", stripe_customer_id="cus_bruno")

    @fuzz(40)
    @given(events=st.lists(billing_events(), min_size=1, max_size=8),
           secrets=st.lists(st.sampled_from([SECRET, OLD_SECRET]), min_size=8, max_size=8))
    def check(events, secrets):
        tried("webhook: replayed event streams")
        accepted = []
        for evt, secret in zip(events, secrets):
            tried("webhook: replayed events")
            response = deliver(client, evt, secret)
            assert response.status_code == 200, response.data[:300]
            assert response.get_json() == {"received": True, "duplicate": False}
            accepted.append((evt, secret))
        before = table_rows(*BILLING_TABLES)
        enqueued = len(sent)
        for evt, secret in accepted:
            response = deliver(client, evt, secret)
            assert response.status_code == 200 and response.get_json()["duplicate"] is True
        assert table_rows(*BILLING_TABLES) == before
        assert len(sent) == enqueued  # a processed event is not enqueued again

    check()
