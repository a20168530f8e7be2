"""POST /billing/webhooks/stripe with signed events whose values the database cannot keep: each gets 400
with a reason and nothing is stored (none may reach a worker that would fail on it, or answer 500)."""
from __future__ import annotations

import dataclasses

import pytest
import stripe
from sqlalchemy import func, select

from billing.models import StripeEvent
from saas.core.db import session_scope
from tests.factories import stripe_card, stripe_event, stripe_invoice, stripe_subscription
from tests.helpers import SECRET, signed

URL = "/billing/webhooks/stripe"


@pytest.fixture
def settings(settings):
    return dataclasses.replace(settings, stripe_webhook_secrets=(SECRET,))


def invoice(**fields) -> dict:
    return {**stripe_invoice("in_1", "cus_ana", "sub_1", "open"), **fields}


CASES = [  # (case, event, reason)
    ("event id too long", stripe_event("invoice.paid", invoice(), 1, "evt_" + "x" * 61), "id exceeds 64"),
    ("event type too long", stripe_event("a" * 101, {"id": "x"}, 1, "evt_1"), "type exceeds 100"),
    ("created beyond bigint", stripe_event("invoice.paid", invoice(), 2**63), "created is out of range"),
    ("amount beyond bigint", stripe_event("invoice.paid", invoice(amount_due=2**64), 1),
     "data.object.amount_due is out of range"),
    ("negative amount beyond bigint", stripe_event("invoice.paid", invoice(amount_due=-(2**63) - 1), 1),
     "out of range"),
    ("infinite number", stripe_event("invoice.paid", invoice(amount_due=float("inf")), 1), "out of range"),
    ("invoice id too long", stripe_event("invoice.paid", invoice(id="in_" + "1" * 62), 1, "evt_1"),
     "data.object.id exceeds 64"),
    ("invoice number too long", stripe_event("invoice.paid", invoice(number="N" * 65), 1),
     "data.object.number exceeds 64"),
    ("currency too long", stripe_event("invoice.paid", invoice(currency="usdx"), 1), "currency exceeds 3"),
    ("status too long", stripe_event("invoice.paid", invoice(status="s" * 21), 1), "status exceeds 20"),
    ("customer email too long", stripe_event("invoice.paid", invoice(customer_email="a" * 310 + "@example.com"), 1),
     "customer_email exceeds 320"),
    ("customer name too long", stripe_event("invoice.paid", invoice(customer_name="A" * 201), 1),
     "customer_name exceeds 200"),
    ("subscription status too long", stripe_event("customer.subscription.updated",
                                                  {**stripe_subscription("sub_1", "cus_ana"), "status": "x" * 21}, 1),
     "status exceeds 20"),
    ("card brand too long", stripe_event("payment_method.attached", {
        **stripe_card("pm_1", "cus_ana", 3, 2030), "card": {"brand": "b" * 21, "last4": "4242", "exp_month": 3,
                                                           "exp_year": 2030}}, 1), "card.brand exceeds 20"),
    ("last4 too long", stripe_event("payment_method.attached",
                                    stripe_card("pm_1", "cus_ana", 3, 2030, last4="42424"), 1), "card.last4 exceeds 4"),
    ("number where text belongs", stripe_event("invoice.paid", invoice(number=12), 1), "number is not a string"),
    ("unpaired surrogate in a value", stripe_event("invoice.paid", invoice(customer_name="Ana \ud800"), 1),
     "unpaired surrogate"),
    ("unpaired surrogate in a key", stripe_event("invoice.paid", invoice(**{"x\udc00": 1}), 1), "unpaired surrogate"),
    ("NUL character", stripe_event("invoice.paid", invoice(customer_name="A\x00"), 1), "NUL character"),
]


@pytest.mark.parametrize("evt, reason", [(e, r) for _, e, r in CASES], ids=[c for c, _, _ in CASES])
def test_unstorable_events_get_400_with_a_reason_and_store_nothing(client, evt, reason):
    payload, headers = signed(evt)
    response = client.post(URL, data=payload, headers=headers)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert reason in response.get_json()["error"]
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(StripeEvent)) == 0


def test_deep_nesting_gets_400(client):
    payload = '{"id": "evt_1", "type": "invoice.paid", "created": 1, "data": ' + '{"a": ' * 100_000 + "{}" + \
        "}" * 100_000 + "}"
    headers = {"Stripe-Signature": stripe.WebhookSignature.generate_signature_header(payload, SECRET),
               "Content-Type": "application/json"}
    response = client.post(URL, data=payload, headers=headers)
    assert response.status_code == 400


def test_values_at_the_limits_are_accepted(client):
    evt = stripe_event("invoice.paid", invoice(amount_due=2**63 - 1, number="N" * 64, customer_name="Ana 😀"),
                       2**31, "evt_" + "x" * 60)
    payload, headers = signed(evt)
    assert client.post(URL, data=payload, headers=headers).status_code == 200
