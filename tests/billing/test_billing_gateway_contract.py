"""The gateway's contract with Stripe at the pinned API version: every function in billing/gateway.py
runs against the strict emulator (which refuses any parameter Stripe would refuse), and every object
it gets back is checked against Stripe's definition (billing/emulator/schema.json: fields present,
none that no longer exist, types, enum values). The fields our code reads and the values it
compares are checked against the same definition."""
from __future__ import annotations

import inspect
import uuid
from datetime import date

import pytest
import requests

from billing import gateway, handlers, records, subscriptions
from billing.emulator import schema

YEAR = date.today().year + 3  # real clock: the emulator, like Stripe, refuses cards expired by its own today


def conforms(obj: dict) -> dict:
    """The object, after asserting it is what Stripe returns for its `object` at this API version."""
    ref = schema.resource(obj["object"])
    assert schema.problems(ref, obj) == [], obj["object"]
    return obj


def gateway_functions() -> set[str]:
    return {name for name, fn in vars(gateway).items() if inspect.isfunction(fn) and fn.__module__ == gateway.__name__
            and "client()." in inspect.getsource(fn)}


CALLED: set[str] = set()


def call(name: str, *args):
    CALLED.add(name)
    return getattr(gateway, name)(*args)


def checkout(url: str, number: str) -> requests.Response:
    return requests.post(url, data={"number": number, "expiry": f"12 / {YEAR % 100}", "cvc": "123", "name": "Ana"},
                         allow_redirects=False, timeout=10)


def test_every_gateway_function_against_the_strict_emulator(stripe_emulator):
    user_id = int(uuid.uuid4().int % 10**9) + 10**9
    attempt = uuid.uuid4().hex[:8]

    customer = conforms(call("create_customer", user_id, f"u{user_id}@example.com", "Ana"))
    assert customer["metadata"] == {"user_id": str(user_id)}
    pm = conforms(call("create_card_payment_method", "4242424242424242", 12, YEAR, f"contract-{attempt}"))
    assert conforms(call("attach_payment_method", pm["id"], customer["id"]))["customer"] == customer["id"]
    assert conforms(call("retrieve_payment_method", pm["id"]))["card"]["last4"] == "4242"
    updated = conforms(call("set_default_payment_method", customer["id"], pm["id"]))
    assert updated["invoice_settings"]["default_payment_method"] == pm["id"]

    session = conforms(call("create_setup_checkout_session", customer["id"], attempt,
                            "http://127.0.0.1/billing/card/done?session={CHECKOUT_SESSION_ID}",
                            "http://127.0.0.1/billing"))
    assert (session["mode"], session["status"], session["currency"]) == ("setup", "open", "usd")
    assert session["url"].startswith(stripe_emulator.base_url)
    assert checkout(session["url"], "5555 5555 5555 4444").status_code == 303
    done = conforms(call("retrieve_checkout_session", session["id"]))
    assert (done["status"], done["url"]) == ("complete", None)
    new_card = conforms(done["setup_intent"]["payment_method"])  # expanded, as sync_checkout_session reads it
    assert new_card["customer"] == customer["id"] and new_card["card"]["brand"] == "mastercard"

    prices = call("find_prices", ["pro", "starter"])
    assert {conforms(p)["lookup_key"] for p in prices} == {"pro", "starter"}
    assert all(conforms(p["product"])["object"] == "product" for p in prices)  # expanded
    pro = next(p for p in prices if p["lookup_key"] == "pro")
    product = conforms(call("create_product", f"prod_contract_{attempt}", "Contract"))
    assert conforms(call("update_product", product["id"], "Contract, renamed"))["name"] == "Contract, renamed"
    price = conforms(call("create_price", product["id"], f"contract-{attempt}", 1200, "usd", "month", "C", False))
    moved = conforms(call("create_price", product["id"], f"contract-{attempt}", 1300, "usd", "month", "C", True))
    assert [p["id"] for p in gateway.find_prices([f"contract-{attempt}"])] == [moved["id"]] != [price["id"]]

    sub = conforms(call("create_subscription", customer["id"], pro["id"], attempt))
    assert sub["status"] == "active"
    invoice = conforms(sub["latest_invoice"])  # expanded
    assert records.invoice_subscription_id(invoice) == sub["id"]
    assert records.invoice_service_period(invoice) == (sub["items"]["data"][0]["current_period_start"],
                                                        sub["items"]["data"][0]["current_period_end"])
    assert conforms(call("retrieve_subscription", sub["id"]))["id"] == sub["id"]
    assert [conforms(s)["id"] for s in call("list_subscriptions", customer["id"])] == [sub["id"]]
    expanded = conforms(call("retrieve_customer", customer["id"]))
    assert conforms(expanded["invoice_settings"]["default_payment_method"])["id"] == pm["id"]
    events = [conforms(e) for e in call("list_events", customer["created"])]
    assert {"customer.created", "customer.subscription.created"} <= \
        {e["type"] for e in events if e["data"]["object"].get("customer", e["data"]["object"]["id"]) == customer["id"]}
    # before the plan change below, whose credit would pay these renewals from the balance
    retried = stripe_emulator.trigger("invoice.payment_failed", subscription=sub["id"])  # a renewal declined
    paid = conforms(call("pay_invoice", retried["id"], attempt))  # dunning's Pay now / new card
    assert (paid["id"], paid["status"]) == (retried["id"], "paid")
    written_off = stripe_emulator.trigger("invoice.payment_failed", subscription=sub["id"])
    assert conforms(call("mark_invoice_uncollectible", written_off["id"]))["status"] == "uncollectible"
    sub = conforms(call("retrieve_subscription", sub["id"]))  # the renewals moved its period on
    item, starter = sub["items"]["data"][0], next(p for p in prices if p["lookup_key"] == "starter")
    at = item["current_period_start"]  # the whole period is left: all of Pro credited, all of Starter charged
    preview = conforms(call("preview_price_change", customer["id"], sub["id"], item["id"], starter["id"], at))
    assert [line["amount"] for line in preview["lines"]["data"]] == [-2900, 900]
    changed = conforms(call("change_price", sub["id"], item["id"], starter["id"], at, attempt))
    change_invoice = conforms(changed["latest_invoice"])  # expanded
    assert (change_invoice["total"], change_invoice["amount_due"], change_invoice["ending_balance"]) == (-2000, 0, -2000)
    assert conforms(call("set_cancel_at_period_end", sub["id"], True, attempt))["cancel_at_period_end"] is True
    assert conforms(call("set_cancel_at_period_end", sub["id"], False, attempt))["cancel_at_period_end"] is False
    told = conforms(call("set_cancel_at_period_end", sub["id"], True, attempt + "-2", "unused", "Not now"))
    assert (told["cancellation_details"]["feedback"], told["cancellation_details"]["comment"]) == ("unused", "Not now")
    assert call("last_payment_error", invoice["id"]) is None  # paid at once
    invoices = call("list_invoices", customer["id"])
    assert [conforms(i)["id"] for i in invoices] == [change_invoice["id"], written_off["id"], retried["id"], invoice["id"]]

    assert conforms(call("detach_payment_method", pm["id"]))["customer"] is None
    assert conforms(call("cancel_subscription", sub["id"]))["status"] == "canceled"
    deleted = call("delete_customer", customer["id"])
    assert schema.problems(schema.resource("customer"), deleted) == [] and deleted["deleted"] is True
    with pytest.raises(gateway.NotFound):
        gateway.delete_customer(customer["id"])
    assert gateway.retrieve_customer(customer["id"])["deleted"] is True

    assert CALLED == gateway_functions()


def test_the_gateway_turns_declines_into_payment_errors(stripe_emulator):
    attempt = uuid.uuid4().hex[:8]
    customer = gateway.create_customer(int(uuid.uuid4().int % 10**9) + 2 * 10**9, "d@example.com", "D")
    declined = gateway.create_card_payment_method("4000000000009995", 12, YEAR, f"nsf-{attempt}")
    with pytest.raises(gateway.PaymentError, match="insufficient funds"):
        gateway.attach_payment_method(declined["id"], customer["id"])
    for number in ("4000000000000341", "4000002760003184"):
        pm = gateway.create_card_payment_method(number, 12, YEAR, f"{number}-{attempt}")
        gateway.attach_payment_method(pm["id"], customer["id"])
        gateway.set_default_payment_method(customer["id"], pm["id"])
        with pytest.raises(gateway.PaymentError):
            gateway.create_subscription(customer["id"], "price_pro_monthly", f"{number}-{attempt}")
        gateway.detach_payment_method(pm["id"])


def test_a_card_that_needs_authentication_is_not_called_declined(stripe_emulator):
    attempt = uuid.uuid4().hex[:8]
    customer = gateway.create_customer(int(uuid.uuid4().int % 10**9) + 3 * 10**9, "a@example.com", "A")
    pm = gateway.create_card_payment_method("4000002760003184", 12, YEAR, f"3ds-{attempt}")
    gateway.attach_payment_method(pm["id"], customer["id"])
    gateway.set_default_payment_method(customer["id"], pm["id"])
    with pytest.raises(gateway.PaymentError) as caught:
        gateway.create_subscription(customer["id"], "price_pro_monthly", attempt)
    assert "authenticat" in str(caught.value).lower()


def test_detaching_a_card_detached_elsewhere_is_not_a_retryable_failure(stripe_emulator):
    pm = gateway.create_card_payment_method("4242424242424242", 12, YEAR, f"twice-{uuid.uuid4().hex[:8]}")
    customer = gateway.create_customer(int(uuid.uuid4().int % 10**9) + 4 * 10**9, "t@example.com", "T")
    gateway.attach_payment_method(pm["id"], customer["id"])
    gateway.client().v1.payment_methods.detach(pm["id"])  # in the Dashboard, say
    assert gateway.detach_payment_method(pm["id"])["customer"] is None


def test_every_event_the_emulator_sent_is_stripes_event(stripe_emulator):
    import stripe

    attempt = uuid.uuid4().hex[:8]
    customer = gateway.create_customer(int(uuid.uuid4().int % 10**9) + 5 * 10**9, "e@example.com", "E")
    pm = gateway.create_card_payment_method("4242424242424242", 12, YEAR, f"events-{attempt}")
    gateway.attach_payment_method(pm["id"], customer["id"])
    gateway.set_default_payment_method(customer["id"], pm["id"])
    sub = gateway.create_subscription(customer["id"], "price_starter_monthly", attempt)
    gateway.set_cancel_at_period_end(sub["id"], True, attempt)
    failed = stripe_emulator.trigger("invoice.payment_failed", subscription=sub["id"], decline_code="insufficient_funds")
    assert gateway.last_payment_error(failed["id"])["decline_code"] == "insufficient_funds"
    stripe_emulator.trigger("invoice.paid", subscription=sub["id"])
    gateway.delete_customer(customer["id"])
    client = stripe.StripeClient(stripe_emulator.api_key, base_addresses={"api": stripe_emulator.base_url})
    for payment in client.v1.invoice_payments.list({"invoice": failed["id"],
                                                    "expand": ["data.payment.payment_intent"]}).data:
        payment = payment.to_dict()
        assert schema.problems(schema.resource("invoice_payment"), payment) == []
        assert schema.problems(schema.resource("payment_intent"), payment["payment"]["payment_intent"]) == []
        assert payment["status"] == "paid" and payment["payment"]["payment_intent"]["status"] == "succeeded"
    events = [e.to_dict() for e in client.v1.events.list({"limit": 100}).auto_paging_iter()]
    assert {"customer.created", "customer.updated", "customer.deleted", "payment_method.attached",
            "customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted",
            "invoice.created", "invoice.finalized", "invoice.paid", "invoice.payment_succeeded",
            "invoice.payment_failed"} <= {e["type"] for e in events}
    for event in events:
        assert schema.problems(schema.resource("event"), event) == [], event["type"]
        assert event["api_version"] == stripe.api_version
        obj = event["data"]["object"]
        try:
            ref = schema.resource(obj["object"])
        except KeyError:
            continue
        assert schema.problems(ref, obj) == [], event["type"]


# What our code reads and compares ------------------------------------------------------------------
def field_exists(object_name: str, path: str) -> bool:
    """Whether `a.b.c` is a field path of the object at this API version (a list object's items, an
    expandable's object and an array's items are looked into: `lines.period` is `lines.data[].period`)."""
    refs = {schema.resource(object_name)}
    for part in path.split("."):
        fields = [schema.defs()[ref]["fields"][part] for ref in refs if part in schema.defs()[ref]["fields"]]
        if not fields:
            return False
        refs = {r for field in fields for r in object_refs(field["alts"])}
    return True


def object_refs(alts: list) -> set[str]:
    out: set[str] = set()
    for alt in alts:
        if alt["k"] == "object" and alt.get("ref"):
            out.add(alt["ref"])
        elif alt["k"] in ("list", "array"):
            out |= object_refs(alt["items"] if isinstance(alt["items"], list) else [alt["items"]])
        elif alt["k"] == "expandable":
            out |= object_refs(alt["objects"])
    return out


READ = [  # (object, field path) our code reads from Stripe objects: records.py, handlers.py, subscriptions.py
    ("subscription", "items"), ("subscription", "status"), ("subscription", "customer"),
    ("subscription", "currency"), ("subscription", "cancel_at_period_end"), ("subscription", "canceled_at"),
    ("subscription", "items.current_period_end"), ("subscription", "items.price.id"),
    ("subscription", "items.quantity"), ("subscription", "items.price.unit_amount"),
    ("subscription", "items.price.currency"), ("subscription", "items.price.recurring.interval"),
    ("invoice", "parent.subscription_details.subscription"), ("invoice", "lines.period.start"),
    ("invoice", "lines.period.end"), ("invoice", "amount_due"), ("invoice", "currency"), ("invoice", "status"),
    ("invoice", "number"), ("invoice", "status_transitions.paid_at"), ("invoice", "customer_email"),
    ("invoice", "customer_name"), ("invoice", "attempt_count"), ("invoice_payment", "payment.payment_intent.last_payment_error.decline_code"),
    ("invoice", "customer"), ("payment_method", "card.brand"), ("payment_method", "card.last4"),
    ("payment_method", "card.exp_month"), ("payment_method", "card.exp_year"), ("payment_method", "customer"),
    ("payment_method", "type"), ("checkout.session", "customer"), ("checkout.session", "status"),
    ("checkout.session", "mode"), ("checkout.session", "url"), ("checkout.session", "setup_intent.payment_method"),
    ("checkout.session", "setup_intent.payment_method.card.last4"),
    ("checkout.session", "setup_intent.payment_method.customer"), ("checkout.session", "client_reference_id"),
    ("checkout.session", "setup_intent"), ("setup_intent", "customer"), ("setup_intent", "last_setup_error.code"),
    ("setup_intent", "last_setup_error.decline_code"), ("invoice", "hosted_invoice_url"),
    ("invoice_payment", "payment.payment_intent.last_payment_error.code"),
    ("subscription", "items.price.lookup_key"), ("price", "lookup_key"), ("price", "product.name"),
    ("price", "product.active"), ("price", "recurring.interval_count"),
    ("customer", "invoice_settings.default_payment_method"), ("customer", "id"), ("event", "created"),
    ("event", "id"), ("event", "type"), ("event", "data.object"), ("subscription", "ended_at"),
]
GONE = [("subscription", "current_period_end"), ("subscription", "current_period_start"),
        ("invoice", "subscription")]


@pytest.mark.parametrize("object_name, path", READ, ids=[f"{o}.{p}" for o, p in READ])
def test_the_fields_our_code_reads_exist_at_this_version(object_name, path):
    assert field_exists(object_name, path)


@pytest.mark.parametrize("object_name, path", GONE, ids=[f"{o}.{p}" for o, p in GONE])
def test_fields_that_moved_are_not_read(object_name, path):
    assert not field_exists(object_name, path)


def enum(object_name: str, field: str) -> set:
    return {v for alt in schema.defs()[schema.resource(object_name)]["fields"][field]["alts"]
            if alt["k"] == "enum" for v in alt["values"]}


def test_the_values_our_code_compares_are_stripes():
    assert set(records.INVOICE_RANK) <= enum("invoice", "status")
    assert set(records.MRR_STATUSES) | set(subscriptions.LIVE_STATUSES) | {"canceled", "unpaid"} <= \
        enum("subscription", "status")
    assert set(handlers.HANDLERS) <= enum("event", "type")
    assert "setup" in enum("checkout.session", "mode") and "complete" in enum("checkout.session", "status")
