"""Plan changes priced like Stripe: create_preview's prorations, to the second, hand-computed; the change charges
exactly the preview; the emulator refuses what it does not model. Then the subscriber's flow through the pages."""
from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
import requests
import stripe
from sqlalchemy import select

from billing import gateway, progress
from billing.emulator.proration import change_lines, prorated, settle
from billing.models import Invoice, Subscription
from saas.core.db import session_scope
from tests.billing.test_billing_emulator_flows import _enter_card, _follow_wait
from tests.helpers import emulator_delivered, wait_until

DAY = 86400


def test_proration_arithmetic_by_hand():
    # 10 of 30 days used: 20/30 of each price remains.
    assert prorated(900, 10 * DAY, 0, 30 * DAY) == 600          # 9.00 × 2/3
    assert prorated(2900, 10 * DAY, 0, 30 * DAY) == 1933        # 29.00 × 2/3 = 19.3333…
    assert prorated(3, 15, 0, 30) == 2                          # 1.5 cents rounds half up
    assert prorated(2900, 0, 0, 30 * DAY) == 2900 and prorated(2900, 30 * DAY - 1, 0, 30 * DAY) == 0
    assert [line.amount for line in change_lines(900, 2900, 10 * DAY, 0, 30 * DAY, True, 30 * DAY)] == [-600, 1933]
    # Another interval: the old price's unused time is credited, the new one charged for a whole period.
    assert [line.amount for line in change_lines(2900, 29000, 10 * DAY, 0, 30 * DAY, False, 400 * DAY)] == [-1933, 29000]
    assert settle(1333, 0) == (1333, 0) and settle(-1333, 0) == (0, -1333) and settle(2000, -1333) == (667, 0)


@pytest.fixture
def placed(stripe_emulator):
    """A customer with a working default card and a Starter subscription 10 days into a 30-day period."""
    customer = gateway.create_customer(int(time.time() * 1000) % 10**9, "pc@example.com", "Plan Changer")
    pm = gateway.create_card_payment_method("4242424242424242", 12, 2040, f"pc-{customer['id']}")
    gateway.attach_payment_method(pm["id"], customer["id"])
    gateway.set_default_payment_method(customer["id"], pm["id"])
    now = int(time.time())
    start, end = now - 10 * DAY, now + 20 * DAY
    response = requests.post(f"{stripe_emulator.base_url}/_emulator/fixtures/subscription", data={
        "customer": customer["id"], "price": "price_starter_monthly",
        "periods[0][start]": start, "periods[0][end]": end}, headers={"Authorization": f"Bearer {stripe_emulator.api_key}"},
        timeout=10)
    response.raise_for_status()
    sub = response.json()
    return {"customer": customer["id"], "sub": sub["id"], "item": sub["items"]["data"][0]["id"],
            "start": start, "end": end, "at": start + 10 * DAY}


def test_preview_is_the_hand_computed_proration_and_the_change_charges_it(placed):
    before = gateway.list_invoices(placed["customer"])
    preview = gateway.preview_price_change(placed["customer"], placed["sub"], placed["item"], "price_pro_monthly",
                                           placed["at"])
    assert preview["id"].startswith("upcoming_in_") and preview["number"] is None and preview["status"] == "draft"
    assert [line["amount"] for line in preview["lines"]["data"]] == [-600, 1933]
    assert [line["parent"]["subscription_item_details"]["proration"] for line in preview["lines"]["data"]] == [True, True]
    assert (preview["total"], preview["amount_due"]) == (1333, 1333)
    assert preview["lines"]["data"][0]["description"].startswith("Unused time on 1 × Starter after")
    assert len(gateway.list_invoices(placed["customer"])) == len(before)  # a preview is not an invoice

    changed = gateway.change_price(placed["sub"], placed["item"], "price_pro_monthly", placed["at"], "t-up")
    assert changed["items"]["data"][0]["price"]["id"] == "price_pro_monthly"
    assert changed["items"]["data"][0]["current_period_end"] == placed["end"]  # same interval: same period
    invoice = changed["latest_invoice"]
    assert (invoice["billing_reason"], invoice["amount_due"], invoice["status"]) == ("subscription_update", 1333, "paid")
    pdf = requests.get(invoice["invoice_pdf"], timeout=10)
    assert pdf.headers["Content-Type"] == "application/pdf" and pdf.content.startswith(b"%PDF-1.4")
    assert pdf.content.rstrip().endswith(b"%%EOF") and invoice["number"].encode() in pdf.content
    assert invoice["number"] in requests.get(invoice["hosted_invoice_url"], timeout=10).text

    # Back down at the same instant: the credit exceeds the charge, nothing is due, the rest is a balance credit.
    down = gateway.change_price(placed["sub"], placed["item"], "price_starter_monthly", placed["at"], "t-down")
    credit = down["latest_invoice"]
    assert [line["amount"] for line in credit["lines"]["data"]] == [-1933, 600]
    assert (credit["total"], credit["amount_due"], credit["ending_balance"], credit["status"]) == (-1333, 0, -1333, "paid")
    assert gateway.client().v1.customers.retrieve(placed["customer"]).balance == -1333
    # The credit pays the next change first.
    again = gateway.preview_price_change(placed["customer"], placed["sub"], placed["item"], "price_pro_monthly",
                                         placed["at"])
    assert (again["total"], again["starting_balance"], again["amount_due"], again["ending_balance"]) == (1333, -1333, 0, 0)


def test_a_credit_pays_the_next_renewal_first(placed, stripe_emulator):
    gateway.change_price(placed["sub"], placed["item"], "price_pro_monthly", placed["at"], "t-up")
    gateway.change_price(placed["sub"], placed["item"], "price_starter_monthly", placed["at"], "t-down")  # -13.33
    renewal = stripe_emulator.trigger("subscription.renewal", subscription=placed["sub"])
    assert (renewal["total"], renewal["starting_balance"], renewal["amount_due"], renewal["ending_balance"]) == (
        900, -1333, 0, -433)
    assert renewal["status"] == "paid" and renewal["attempt_count"] == 0  # nothing was charged
    assert gateway.client().v1.customers.retrieve(placed["customer"]).balance == -433


def test_another_interval_starts_a_new_period(placed):
    changed = gateway.change_price(placed["sub"], placed["item"], "price_pro_yearly", placed["at"], "t-year")
    invoice = changed["latest_invoice"]
    assert [line["amount"] for line in invoice["lines"]["data"]] == [-600, 29000]
    assert invoice["amount_due"] == 28400
    item = changed["items"]["data"][0]
    assert item["current_period_start"] == placed["at"] and changed["billing_cycle_anchor"] == placed["at"]
    assert 365 * DAY <= item["current_period_end"] - placed["at"] <= 366 * DAY


@pytest.mark.parametrize(("details", "message"), [
    ({"proration_behavior": "create_prorations"}, r"subscription_details\[proration_behavior\]=create_prorations"),
    ({}, r"subscription_details\[proration_behavior\]=create_prorations"),
    ({"proration_behavior": "always_invoice", "proration_date": 1}, "within the current subscription period"),
    ({"proration_behavior": "always_invoice", "item": "si_nope"}, "No such subscription_item"),
    ({"proration_behavior": "always_invoice", "price": "price_nope"}, "No such price"),
])
def test_the_emulator_refuses_what_stripe_refuses_or_it_does_not_model(placed, details, message):
    details = dict(details)
    item = {"id": details.pop("item", placed["item"]), "price": details.pop("price", "price_pro_monthly")}
    with pytest.raises(stripe.InvalidRequestError, match=message) as refused:
        gateway.client().v1.invoices.create_preview({
            "customer": placed["customer"], "subscription": placed["sub"],
            "subscription_details": {"items": [item], **details}})
    if "proration_date" in details:
        assert refused.value.param == "subscription_details[proration_date]"


def test_a_declined_change_changes_nothing(placed):
    pm = gateway.create_card_payment_method("4000000000000341", 12, 2040, f"pc-bad-{placed['customer']}")
    gateway.attach_payment_method(pm["id"], placed["customer"])
    gateway.set_default_payment_method(placed["customer"], pm["id"])
    with pytest.raises(gateway.PaymentError, match="declined"):
        gateway.change_price(placed["sub"], placed["item"], "price_pro_monthly", placed["at"], "t-declined")
    assert gateway.retrieve_subscription(placed["sub"])["items"]["data"][0]["price"]["id"] == "price_starter_monthly"


def _plan_of(user_id: int) -> tuple[str, int]:
    with session_scope() as s:
        sub = s.scalar(select(Subscription).where(Subscription.user_id == user_id))
        return sub.plan, sub.amount_cents


def _subscribed(client, stripe_emulator, make_user, auth, today, plan: str):
    user = make_user(email="chris@example.com", name="Chris")
    auth.login("chris@example.com")
    back = _enter_card(client, "4242424242424242", 12, today.year + 2)
    location = urlsplit(back.headers["Location"])
    _follow_wait(client, client.get(f"{location.path}?{location.query}"))
    _follow_wait(client, client.post("/billing/subscribe", data={"plan": plan}))
    emulator_delivered(stripe_emulator)
    return user


def test_subscriber_changes_plan_seeing_the_proration_first(stripe_emulator, celery_worker, make_user, auth, client,
                                                            today):
    user = _subscribed(client, stripe_emulator, make_user, auth, today, "starter")
    page = client.get("/billing").get_data(as_text=True)
    assert "Switch to Pro (yearly)" in page and "Switch to Pro</button>" in page and "Your plan" in page

    assert client.post("/billing/plan/preview", data={"plan": "starter"}).status_code == 400  # the current plan
    refused = client.post("/billing/plan/preview", data={"plan": "gold"})
    assert refused.status_code == 400 and "Choose one of the plans listed." in refused.get_data(as_text=True)

    confirm_url = _follow_wait(client, client.post("/billing/plan/preview", data={"plan": "pro"}))
    op_id = urlsplit(confirm_url).path.rsplit("/", 1)[1]
    preview = progress.get_state(op_id)["preview"]
    with session_scope() as s:
        stripe_id = s.scalar(select(Subscription.stripe_subscription_id).where(Subscription.user_id == user.id))
    item = gateway.retrieve_subscription(stripe_id)["items"]["data"][0]
    start, end, at = item["current_period_start"], item["current_period_end"], preview["proration_date"]
    credit = -((2 * 900 * (end - at) + (end - start)) // (2 * (end - start)))
    charge = (2 * 2900 * (end - at) + (end - start)) // (2 * (end - start))
    assert [line["amount"] for line in preview["lines"]] == [credit, charge]
    assert preview["amount_due"] == credit + charge
    page = client.get(urlsplit(confirm_url).path).get_data(as_text=True)
    assert [(line["kind"], line["plan"], line["end"]) for line in preview["lines"]] == [
        ("credit", "Starter", end), ("remaining", "Pro", end)]
    assert "Unused time on Starter, to " in page and "Remaining time on Pro, to " in page
    assert "Change to Pro" in page and f'data-amount-due="{credit + charge}"' in page
    assert f"{(credit + charge) / 100:,.2f} USD" in page and "Confirm the change" in page

    done = _follow_wait(client, client.post(urlsplit(confirm_url).path))
    assert done.endswith("/billing")
    # The task's own write may yield to an event of the same second until the change's webhook arrives
    # (docs/reliability.md, "webhooks within one second"): wait for the row to show it.
    wait_until(lambda: _plan_of(user.id) == ("pro", 2900), "the subscription on Pro")
    with session_scope() as s:
        newest = s.scalars(select(Invoice).where(Invoice.user_id == user.id).order_by(Invoice.id.desc())).first()
        assert newest.amount_cents == credit + charge and newest.invoice_pdf and newest.hosted_invoice_url
        s.expunge(newest)
    page = client.get("/billing").get_data(as_text=True)
    assert f"You are now on Pro. {(credit + charge) / 100:,.2f} USD was charged to your card." in page
    assert newest.invoice_pdf in page and newest.hosted_invoice_url in page
    # A preview confirms once; an unknown one says it expired.
    again = client.post(urlsplit(confirm_url).path)
    assert again.status_code == 303 and "/billing" in again.headers["Location"]
    assert "expired" in client.get("/billing").get_data(as_text=True)


def test_subscriber_cancels_with_a_reason_kept_for_finance(stripe_emulator, celery_worker, make_user, auth, client,
                                                           today):
    user = _subscribed(client, stripe_emulator, make_user, auth, today, "pro")
    page = client.get("/billing/cancel").get_data(as_text=True)
    assert "Cancel your subscription?" in page and "It is too expensive" in page and "rather not say" in page
    bad = client.post("/billing/cancel", data={"reason": "boredom", "comment": "meh"})
    assert bad.status_code == 400 and "Not a valid choice" in bad.get_data(as_text=True)
    long = client.post("/billing/cancel", data={"reason": "other", "comment": "x" * 501})
    text = long.get_data(as_text=True)
    assert long.status_code == 400 and "500 characters" in text and "x" * 501 in text  # kept as typed
    _follow_wait(client, client.post("/billing/cancel", data={"reason": "too_expensive", "comment": "Too dear now"}))

    def cancelled() -> Subscription | None:
        with session_scope() as s:
            sub = s.scalar(select(Subscription).where(Subscription.user_id == user.id))
            s.expunge(sub)
            return sub if sub.cancel_at_period_end else None

    sub = wait_until(cancelled, "the cancellation on the row")  # same-second race: see above
    assert (sub.cancel_reason, sub.cancel_comment) == ("too_expensive", "Too dear now")
    details = gateway.retrieve_subscription(sub.stripe_subscription_id)["cancellation_details"]
    assert (details["feedback"], details["comment"], details["reason"]) == ("too_expensive", "Too dear now",
                                                                            "cancellation_requested")
    assert "Ends on" in client.get("/billing").get_data(as_text=True)
    assert client.get("/billing/cancel").status_code == 303  # nothing left to cancel
