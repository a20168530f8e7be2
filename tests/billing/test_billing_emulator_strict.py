"""The Stripe emulator refuses what Stripe refuses at the pinned API version, as Stripe does, and
answers like Stripe: Request-Id, idempotent replays, deleted customers, lists, events, test cards.

Called through stripe-python (the gateway's client) where it can say it; raw HTTP for headers."""
from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import uuid
from datetime import date
from pathlib import Path

import pytest
import requests
import stripe

from billing.emulator import schema

YEAR = date.today().year + 3  # real clock: the emulator, like Stripe, refuses cards expired by its own today
REQUEST_ID = re.compile(r"req_[A-Za-z0-9]{14}")


@pytest.fixture
def sc(stripe_emulator) -> stripe.StripeClient:
    """stripe-python pointed at the emulator, without retries (a refusal must surface at once)."""
    return stripe.StripeClient(stripe_emulator.api_key, base_addresses={"api": stripe_emulator.base_url},
                               max_network_retries=0)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def new_customer(sc, **fields) -> stripe.Customer:
    return sc.v1.customers.create({"email": f"{unique('c')}@example.com", "name": "Ana", **fields})


def card(sc, number: str = "4242424242424242") -> stripe.PaymentMethod:
    return sc.v1.payment_methods.create({"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": YEAR}})


def customer_with_card(sc, number: str = "4242424242424242") -> tuple[stripe.Customer, stripe.PaymentMethod]:
    customer = new_customer(sc)
    pm = card(sc, number)
    sc.v1.payment_methods.attach(pm.id, {"customer": customer.id})
    sc.v1.customers.update(customer.id, {"invoice_settings": {"default_payment_method": pm.id}})
    return customer, pm


def subscribe(sc, customer_id: str, behavior: str = "error_if_incomplete", **options) -> stripe.Subscription:
    return sc.v1.subscriptions.create({"customer": customer_id, "items": [{"price": "price_pro_monthly"}],
                                       "payment_behavior": behavior, **options})


# Refusals ---------------------------------------------------------------------------------------
REFUSALS = [
    # (what, call, http status, code, param, message contains)
    ("unknown parameter", lambda sc, c: sc.v1.customers.create({"nickname": "x"}),
     400, "parameter_unknown", "nickname", "Received unknown parameter: nickname"),
    ("unknown nested parameter",
     lambda sc, c: sc.v1.subscriptions.create({"customer": c,
                                               "items": [{"price": "price_pro_monthly", "colour": "red"}]}),
     400, "parameter_unknown", "items[0][colour]", "Received unknown parameter: items[0][colour]"),
    ("removed at 2026-09-30.endive",
     lambda sc, c: sc.v1.checkout.sessions.create({"mode": "setup", "customer": c, "currency": "usd",
                                                   "payment_method_types": ["card"]}),
     400, "parameter_unknown", "payment_method_types", "payment_method_types"),
    ("moved at 2025-03-31.basil (a list filter that still exists is fine; the old field is not a parameter)",
     lambda sc, c: sc.v1.invoices.list({"customer": c, "period_start": 1}),
     400, "parameter_unknown", "period_start", "period_start"),
    ("missing required nested parameter",
     lambda sc, c: sc.v1.customers.update(c, {"invoice_settings": {"custom_fields": [{"name": "PO"}]}}),
     400, "parameter_missing", "invoice_settings[custom_fields][0][value]", "Missing required param"),
    ("missing customer (one of customer, customer_account)",
     lambda sc, c: sc.v1.subscriptions.create({"items": [{"price": "price_pro_monthly"}]}),
     400, "parameter_missing", "customer", "Missing required param: customer."),
    ("missing items", lambda sc, c: sc.v1.subscriptions.create({"customer": c}),
     400, "parameter_missing", "items", "Missing required param: items."),
    ("missing currency in setup mode",
     lambda sc, c: sc.v1.checkout.sessions.create({"mode": "setup", "customer": c}),
     400, "parameter_missing", "currency", "Missing required param: currency."),
    ("attach without customer", lambda sc, c: sc.v1.payment_methods.attach(card(sc).id, {}),
     400, "parameter_missing", "customer", "Missing required param: customer."),
    ("empty string where it cannot unset", lambda sc, c: sc.v1.customers.create({"email": ""}),
     400, "parameter_invalid_empty", "email", "You passed an empty string for 'email'"),
    ("not an integer",
     lambda sc, c: sc.v1.payment_methods.create({"type": "card", "card": {"number": "4242424242424242",
                                                                          "exp_month": "twelve", "exp_year": YEAR}}),
     400, "parameter_invalid_integer", "card[exp_month]", "Invalid integer: twelve"),
    ("outside the enum",
     lambda sc, c: sc.v1.subscriptions.create({"customer": c, "items": [{"price": "price_pro_monthly"}],
                                               "payment_behavior": "sometimes"}),
     400, None, "payment_behavior", "Invalid payment_behavior: must be one of allow_incomplete, default_incomplete, "
                                    "error_if_incomplete, or pending_if_incomplete"),
    ("outside a nested enum",
     lambda sc, c: sc.v1.customers.update(c, {"invoice_settings": {"rendering_options": {"amount_tax_display": "x"}}}),
     400, None, "invoice_settings[rendering_options][amount_tax_display]", "must be one of"),
    ("not a boolean", lambda sc, c: sc.v1.subscriptions.list({"customer": c, "automatic_tax": {"enabled": "maybe"}}),
     400, None, "automatic_tax[enabled]", "Invalid boolean: maybe"),
    ("limit 0", lambda sc, c: sc.v1.invoices.list({"customer": c, "limit": 0}),
     400, None, "limit", "greater than or equal to 1"),
    ("limit 101", lambda sc, c: sc.v1.invoices.list({"customer": c, "limit": 101}),
     400, None, "limit", "less than or equal to 100"),
    ("both cursors", lambda sc, c: sc.v1.customers.list({"starting_after": c, "ending_before": c}),
     400, "parameters_exclusive", "ending_before", "only specify one of"),
    ("a cursor that names nothing", lambda sc, c: sc.v1.customers.list({"starting_after": "cus_nothing"}),
     400, "resource_missing", "starting_after", "No such customer: 'cus_nothing'"),
    ("an id in the URL that names nothing", lambda sc, c: sc.v1.customers.retrieve("cus_nothing"),
     404, "resource_missing", "id", "No such customer: 'cus_nothing'"),
    ("a parameter that names nothing",
     lambda sc, c: sc.v1.subscriptions.create({"customer": c, "items": [{"price": "price_nothing"}]}),
     400, "resource_missing", "items[0][price]", "No such price: 'price_nothing'"),
    ("expand of a field that is not expandable", lambda sc, c: sc.v1.customers.retrieve(c, {"expand": ["email"]}),
     400, None, None, "This property cannot be expanded (email)."),
    ("a parameter Stripe accepts but the emulator does not model",
     lambda sc, c: sc.v1.customers.create({"tax_exempt": "exempt"}),
     400, None, "tax_exempt", "does not implement tax_exempt"),
]


@pytest.mark.parametrize("what, call, status, code, param, message", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals_are_stripes(sc, what, call, status, code, param, message):
    customer = new_customer(sc)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        call(sc, customer.id)
    error = caught.value
    assert (error.http_status, error.code, error.param) == (status, code, param)
    assert error.error.type == "invalid_request_error"
    assert message in error.user_message
    assert REQUEST_ID.fullmatch(error.request_id)


def test_an_idempotency_key_replays_the_same_request_and_refuses_a_different_one(sc):
    key = unique("idem")
    first = sc.v1.customers.create({"email": "a@example.com"}, {"idempotency_key": key})
    again = sc.v1.customers.create({"email": "a@example.com"}, {"idempotency_key": key})
    assert again.id == first.id
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert again.last_response.headers["Original-Request"] == first.last_response.request_id
    assert "Idempotent-Replayed" not in first.last_response.headers
    with pytest.raises(stripe.IdempotencyError) as other_params:
        sc.v1.customers.create({"email": "b@example.com"}, {"idempotency_key": key})
    with pytest.raises(stripe.IdempotencyError) as other_endpoint:
        sc.v1.payment_methods.create({"type": "card", "card": {"number": "4242424242424242", "exp_month": 1,
                                                               "exp_year": YEAR}}, {"idempotency_key": key})
    for caught in (other_params, other_endpoint):
        assert caught.value.http_status == 400
        assert caught.value.error.type == "idempotency_error"
        assert f"a key other than '{key}'" in caught.value.user_message
    assert "same parameters" in other_params.value.user_message
    assert "same endpoint" in other_endpoint.value.user_message


def test_a_refused_request_is_not_stored_under_its_key_but_an_executed_failure_is(sc):
    key = unique("idem")
    with pytest.raises(stripe.InvalidRequestError):
        sc.v1.customers.create({"email": ""}, {"idempotency_key": key})  # refused before the endpoint ran
    created = sc.v1.customers.create({"email": "ok@example.com"}, {"idempotency_key": key})
    assert created.email == "ok@example.com"
    customer = new_customer(sc)
    declined = card(sc, "4000000000000002")
    key = unique("idem")
    for attempt in range(2):  # a decline is the endpoint's answer: replayed, not run again
        with pytest.raises(stripe.CardError) as caught:
            sc.v1.payment_methods.attach(declined.id, {"customer": customer.id}, {"idempotency_key": key})
        assert caught.value.headers.get("Idempotent-Replayed") == ("true" if attempt else None)


def test_every_response_carries_a_request_id(stripe_emulator, sc):
    base, auth = stripe_emulator.base_url, {"Authorization": f"Bearer {stripe_emulator.api_key}"}
    customer = new_customer(sc)
    session = sc.v1.checkout.sessions.create({"mode": "setup", "customer": customer.id, "currency": "usd",
                                              "success_url": "http://127.0.0.1/ok"})
    responses = {
        "ok": requests.get(f"{base}/v1/customers/{customer.id}", headers=auth, timeout=10),
        "refused": requests.post(f"{base}/v1/customers", data={"nickname": "x"}, headers=auth, timeout=10),
        "missing": requests.get(f"{base}/v1/customers/cus_nothing", headers=auth, timeout=10),
        "no key": requests.get(f"{base}/v1/customers", timeout=10),
        "unknown URL": requests.get(f"{base}/v1/nothing_here", headers=auth, timeout=10),
        "wrong version": requests.get(f"{base}/v1/customers", headers={**auth, "Stripe-Version": "2020-08-27"},
                                      timeout=10),
        "Checkout page": requests.get(session.url, timeout=10),
    }
    assert {k: r.status_code for k, r in responses.items()} == {
        "ok": 200, "refused": 400, "missing": 404, "no key": 401, "unknown URL": 404, "wrong version": 400,
        "Checkout page": 200}
    ids = [r.headers.get("Request-Id", "") for r in responses.values()]
    assert all(REQUEST_ID.fullmatch(i) for i in ids), ids
    assert len(set(ids)) == len(ids)
    assert responses["unknown URL"].json()["error"]["message"].startswith(
        "Unrecognized request URL (GET: /v1/nothing_here)")
    assert responses["ok"].headers["Stripe-Version"] == stripe.api_version


def test_a_deleted_customer_reads_back_as_deleted_and_cannot_be_changed(sc):
    customer = new_customer(sc)
    assert sc.v1.customers.delete(customer.id).to_dict() == {"id": customer.id, "object": "customer", "deleted": True}
    again = sc.v1.customers.retrieve(customer.id)
    assert again.last_response.code == 200
    assert again.to_dict() == {"id": customer.id, "object": "customer", "deleted": True}
    for call in (lambda: sc.v1.customers.update(customer.id, {"name": "X"}),
                 lambda: sc.v1.customers.delete(customer.id)):
        with pytest.raises(stripe.InvalidRequestError) as caught:
            call()
        assert (caught.value.http_status, caught.value.code) == (404, "resource_missing")
    assert customer.id not in [c.id for c in sc.v1.customers.list({"email": customer.email}).auto_paging_iter()]


def test_lists_page_with_cursors_and_auto_paging_ends(sc):
    email = f"{unique('page')}@example.com"
    made = [sc.v1.customers.create({"email": email}).id for _ in range(5)]
    first = sc.v1.customers.list({"email": email, "limit": 2})
    assert ([c.id for c in first.data], first.has_more) == (made[::-1][:2], True)
    assert first.url == "/v1/customers"
    assert [c.id for c in first.auto_paging_iter()] == made[::-1]
    last = sc.v1.customers.list({"email": email, "limit": 2, "starting_after": made[1]})
    assert ([c.id for c in last.data], last.has_more) == ([made[0]], False)
    back = sc.v1.customers.list({"email": email, "limit": 2, "ending_before": made[0]})
    assert ([c.id for c in back.data], back.has_more) == ([made[2], made[1]], True)
    assert [c.id for c in sc.v1.customers.list({"email": email, "limit": 100}).data] == made[::-1]


def _checkout(sc, customer_id: str, number: str) -> tuple[stripe.checkout.Session, requests.Response]:
    session = sc.v1.checkout.sessions.create({"mode": "setup", "customer": customer_id, "currency": "usd",
                                              "success_url": "http://127.0.0.1/ok?cs={CHECKOUT_SESSION_ID}"})
    answer = requests.post(session.url, data={"number": number, "expiry": f"12 / {YEAR % 100}", "cvc": "123",
                                              "name": "Ana"}, allow_redirects=False, timeout=10)
    return session, answer


def test_a_completed_or_expired_checkout_session_has_no_url(sc):
    customer = new_customer(sc)
    session, answer = _checkout(sc, customer.id, "4242 4242 4242 4242")
    assert session.url and session.payment_method_types == ["card"]
    assert answer.status_code == 303 and answer.headers["Location"] == f"http://127.0.0.1/ok?cs={session.id}"
    done = sc.v1.checkout.sessions.retrieve(session.id, {"expand": ["setup_intent.payment_method"]})
    assert (done.status, done.url) == ("complete", None)
    assert done.setup_intent.status == "succeeded" and done.setup_intent.payment_method.customer == customer.id
    assert done.setup_intent.payment_method_types == ["card"]
    assert requests.get(session.url, timeout=10).status_code == 410
    other = sc.v1.checkout.sessions.create({"mode": "setup", "customer": customer.id, "currency": "usd"})
    expired = sc.v1.checkout.sessions.expire(other.id)
    assert (expired.status, expired.url) == ("expired", None)


# Events -----------------------------------------------------------------------------------------
def events_about(sc, object_id: str) -> list[stripe.Event]:
    def about(obj: dict) -> bool:
        return obj.get("id") == object_id or \
            ((obj.get("parent") or {}).get("subscription_details") or {}).get("subscription") == object_id

    found = [e for e in sc.v1.events.list({"limit": 100}).auto_paging_iter() if about(e.data.object.to_dict())]
    return found[::-1]  # oldest first


def test_events_of_api_changes_name_the_request_that_caused_them(sc):
    key = unique("cus")
    customer = sc.v1.customers.create({"email": "e@example.com"}, {"idempotency_key": key})
    pm = card(sc)
    sc.v1.payment_methods.attach(pm.id, {"customer": customer.id})
    update = sc.v1.customers.update(customer.id, {"invoice_settings": {"default_payment_method": pm.id}},
                                    {"idempotency_key": unique("upd")})
    sub = subscribe(sc, customer.id)
    events = events_about(sc, customer.id)
    assert [e.type for e in events] == ["customer.created", "customer.updated"]
    created, updated = events
    assert created.request.to_dict() == {"id": customer.last_response.request_id, "idempotency_key": key}
    assert updated.request.id == update.last_response.request_id
    assert updated.data.previous_attributes.to_dict() == {"invoice_settings": {"default_payment_method": None}}
    assert created.api_version == stripe.api_version
    invoice_events = [e for e in events_about(sc, sub.id) if e.type.startswith("invoice.")]
    assert [e.type for e in invoice_events] == ["invoice.created", "invoice.finalized", "invoice.paid",
                                                "invoice.payment_succeeded"]
    assert {e.request.id for e in invoice_events} == {sub.last_response.request_id}
    sc.v1.customers.delete(customer.id)
    deleted = events_about(sc, customer.id)[-1]
    assert deleted.type == "customer.deleted" and deleted.request.id is not None


def test_automatic_events_have_no_request(sc, stripe_emulator):
    customer, _ = customer_with_card(sc)
    sub = subscribe(sc, customer.id)
    stripe_emulator.trigger("subscription.renewal", subscription=sub.id)
    renewal = [e for e in events_about(sc, sub.id) if e.type == "invoice.created"][-1]
    assert renewal.request.id is None
    invoice = renewal.data.object
    assert invoice.billing_reason == "subscription_cycle"
    line = invoice.lines.data[0]
    item = sc.v1.subscriptions.retrieve(sub.id)["items"].data[0]
    assert (line.period.start, line.period.end) == (item.current_period_start, item.current_period_end)
    assert invoice.period_end == line.period.start  # the invoice's own window is the past period


# Test cards -------------------------------------------------------------------------------------
def test_a_decline_card_is_refused_on_attach_and_in_checkout(sc):
    customer = new_customer(sc)
    with pytest.raises(stripe.CardError) as caught:
        sc.v1.payment_methods.attach(card(sc, "4000000000000002").id, {"customer": customer.id})
    assert (caught.value.http_status, caught.value.code, caught.value.error.decline_code) == \
        (402, "card_declined", "generic_decline")
    session, answer = _checkout(sc, customer.id, "4000 0000 0000 0002")
    assert answer.status_code == 402 and "declined" in answer.text
    seti = sc.v1.setup_intents.retrieve(sc.v1.checkout.sessions.retrieve(session.id).setup_intent)
    assert (seti.status, seti.last_setup_error.decline_code) == ("requires_payment_method", "generic_decline")


def test_0341_attaches_but_every_charge_fails(sc):
    customer, _ = customer_with_card(sc, "4000000000000341")
    with pytest.raises(stripe.CardError) as caught:
        subscribe(sc, customer.id)
    assert (caught.value.code, caught.value.error.decline_code) == ("card_declined", "generic_decline")
    incomplete = subscribe(sc, customer.id, "allow_incomplete", expand=["latest_invoice"])
    assert (incomplete.status, incomplete.latest_invoice.status, incomplete.latest_invoice.attempted) == \
        ("incomplete", "open", True)


def _authenticate(session_url: str, answer: requests.Response, outcome: str) -> requests.Response:
    assert answer.status_code == 200 and "Authenticate your card" in answer.text
    return requests.post(f"{session_url.rstrip('/')}/authenticate", data={"outcome": outcome},
                         allow_redirects=False, timeout=10)


def test_3155_authenticates_on_set_up_then_pays_off_session(sc):
    customer = new_customer(sc)
    session, answer = _checkout(sc, customer.id, "4000 0025 0000 3155")
    assert _authenticate(session.url, answer, "complete").status_code == 303
    pm = sc.v1.setup_intents.retrieve(sc.v1.checkout.sessions.retrieve(session.id).setup_intent).payment_method
    sc.v1.customers.update(customer.id, {"invoice_settings": {"default_payment_method": pm}})
    assert subscribe(sc, customer.id).status == "active"
    never_set_up, _ = customer_with_card(sc, "4000002500003155")  # attached through the API only
    with pytest.raises(stripe.CardError) as caught:
        subscribe(sc, never_set_up.id)
    assert caught.value.code == "authentication_required"


def test_3184_authenticates_on_set_up_and_on_every_payment(sc):
    customer = new_customer(sc)
    session, answer = _checkout(sc, customer.id, "4000 0027 6000 3184")
    assert _authenticate(session.url, answer, "complete").status_code == 303
    pm = sc.v1.setup_intents.retrieve(sc.v1.checkout.sessions.retrieve(session.id).setup_intent).payment_method
    sc.v1.customers.update(customer.id, {"invoice_settings": {"default_payment_method": pm}})
    with pytest.raises(stripe.CardError) as caught:
        subscribe(sc, customer.id)
    assert (caught.value.http_status, caught.value.code) == (402, "authentication_required")
    sub = subscribe(sc, customer.id, "allow_incomplete")
    assert sub.status == "incomplete"
    assert "invoice.payment_action_required" in [e.type for e in events_about(sc, sub.id)]


def test_failed_authentication_keeps_the_session_open(sc):
    customer = new_customer(sc)
    session, answer = _checkout(sc, customer.id, "4000 0027 6000 3184")
    failed = _authenticate(session.url, answer, "fail")
    assert failed.status_code == 402 and "unable to authenticate" in failed.text
    assert sc.v1.checkout.sessions.retrieve(session.id).status == "open"
    assert sc.v1.payment_methods.list({"customer": customer.id}).data == []


# The schema itself ------------------------------------------------------------------------------
def test_the_schema_is_generated_from_the_installed_stripe_python():
    generated = schema.schema()
    assert (generated["stripe_python"], generated["api_version"]) == (importlib.metadata.version("stripe"),
                                                                      stripe.api_version)
    sub = schema.defs()[schema.resource("subscription")]["fields"]
    assert "current_period_end" not in sub and {"billing_cycle_anchor", "collection_method", "items",
                                                "invoice_settings"} <= sub.keys()
    invoice = schema.defs()[schema.resource("invoice")]["fields"]
    assert "subscription" not in invoice and {"amount_remaining", "attempted", "lines", "parent", "subtotal",
                                              "total"} <= invoice.keys()
    create = schema.defs()[schema.operation("POST /v1/checkout/sessions")["params"]]["fields"]
    assert "payment_method_types" not in create


@pytest.mark.skipif(not os.environ.get("STRIPE_SPEC3"), reason="STRIPE_SPEC3 names Stripe's spec3.json")
def test_the_schema_file_is_up_to_date():
    result = subprocess.run([sys.executable, "-m", "billing.emulator.schema_gen", "--spec", os.environ["STRIPE_SPEC3"],
                             "--check"], capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert result.returncode == 0, result.stdout + result.stderr
