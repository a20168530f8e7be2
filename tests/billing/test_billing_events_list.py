"""The emulator's GET /v1/events as Stripe serves it (created ranges, types, cursors, pages, 30 days), and
its webhook control: a dropped delivery never reaches the product but stays in the list."""
from __future__ import annotations

import uuid

import pytest
import requests
import stripe
from sqlalchemy import exists, select

from billing import gateway
from billing.emulator.api import create_app
from billing.emulator.objects import Account
from billing.emulator.sender import WebhookSender
from billing.emulator.store import Store
from billing.models import StripeEvent
from saas.core.db import session_scope
from tests.helpers import emulator_delivered, newest_emulator_event


@pytest.fixture
def emulator(stripe_emulator):
    before = newest_emulator_event(stripe_emulator)
    yield stripe_emulator
    stripe_emulator.webhooks(drop_share=0)
    if newest_emulator_event(stripe_emulator) != before:
        emulator_delivered(stripe_emulator, processed=False)


def get(emulator, path: str, **params) -> requests.Response:
    return requests.get(f"{emulator.base_url}{path}", params=params, timeout=10,
                        headers={"Authorization": f"Bearer {emulator.api_key}"})


def customers(n: int) -> list[dict]:
    return [gateway.create_customer(10**10 + uuid.uuid4().int % 10**9, f"list{i}@example.com", "L") for i in range(n)]


def test_events_are_listed_by_created_and_type_page_after_page(emulator):
    made = customers(3)
    newest = get(emulator, "/v1/events", limit=1).json()["data"][0]
    since = newest["created"]
    listed = list(gateway.list_events(since))
    assert all(e["created"] >= since for e in listed) and newest["id"] in [e["id"] for e in listed]
    assert [e["created"] for e in listed] == sorted((e["created"] for e in listed), reverse=True)
    assert {e["id"] for e in get(emulator, "/v1/events", **{"created": since, "limit": 100}).json()["data"]} == \
        {e["id"] for e in listed if e["created"] == since}
    later = get(emulator, "/v1/events", **{"created[gt]": since, "limit": 100}).json()["data"]
    assert all(e["created"] > since for e in later)
    created = get(emulator, "/v1/events", type="customer.created", limit=3).json()["data"]
    assert {e["type"] for e in created} == {"customer.created"}
    assert made[-1]["id"] in {e["data"]["object"]["id"] for e in created}
    assert get(emulator, "/v1/events", **{"types[0]": "customer.*", "limit": 2}).json()["data"][0]["type"] \
        .startswith("customer.")

    client = stripe.StripeClient(emulator.api_key, base_addresses={"api": emulator.base_url})
    every = [e.id for e in client.v1.events.list({"limit": 2}).auto_paging_iter()]  # pages of 2, to the end
    assert len(every) == len(set(every)) > 2
    page = get(emulator, "/v1/events", limit=2, starting_after=every[1]).json()
    assert [e["id"] for e in page["data"]] == every[2:4] and page["has_more"] is (len(every) > 4)
    assert [e["id"] for e in get(emulator, "/v1/events", limit=1, ending_before=every[2]).json()["data"]] == \
        [every[1]]


@pytest.mark.parametrize("params, status, param", [
    ({"created[after]": "1"}, 400, "created[after]"),
    ({"created[gte]": "yesterday"}, 400, "created[gte]"),
    ({"limit": "101"}, 400, "limit"),
    ({"type": "a", "types[0]": "b"}, 400, "type"),
    ({"starting_after": "evt_missing"}, 400, "starting_after"),
    ({"delivery_success": "true"}, 400, "delivery_success"),  # Stripe's, not emulated: refused, never ignored
])
def test_bad_list_parameters_are_refused_as_stripe_refuses_them(emulator, params, status, param):
    response = get(emulator, "/v1/events", **params)
    assert response.status_code == status and response.json()["error"]["param"] == param, response.text


def test_an_event_older_than_30_days_is_neither_listed_nor_retrievable():
    store = Store(None)  # an emulator of its own, in this process, to hold an event from 31 days ago
    account = Account(store, WebhookSender(None, ""))
    app = create_app(store, account)
    old, recent = (account.emit("customer.created", account.create_customer({"email": f"{n}@example.com"}))
                   for n in ("old", "recent"))
    old["created"] -= 31 * 24 * 3600
    http = app.test_client()
    auth = {"Authorization": "Bearer sk_test_emulator"}
    listed = [e["id"] for e in http.get("/v1/events?limit=100", headers=auth).get_json()["data"]]
    assert recent["id"] in listed and old["id"] not in listed
    assert http.get(f"/v1/events/{old['id']}", headers=auth).status_code == 404
    assert http.get(f"/v1/events/{recent['id']}", headers=auth).status_code == 200


def test_dropped_webhooks_never_arrive_but_stay_in_the_list(emulator, live_server):
    state = emulator.webhooks(drop_share=1, seed=3)
    assert (state["drop_share"], state["dropped"]) == (1.0, [])
    customers(2)
    state = emulator_delivered(emulator, processed=False)
    assert len(state["dropped"]) == 2
    listed = {e["id"] for e in get(emulator, "/v1/events", limit=10).json()["data"]}
    assert set(state["dropped"]) <= listed
    with session_scope() as s:
        assert not s.scalar(select(exists().where(StripeEvent.id.in_(state["dropped"]))))
    emulator.webhooks(drop_share=0)
    customers(1)
    newest = newest_emulator_event(emulator)
    assert emulator_delivered(emulator, processed=False)["dropped"] == []
    with session_scope() as s:
        assert s.scalar(select(exists().where(StripeEvent.id == newest)))
    bad = requests.post(f"{emulator.base_url}/_emulator/webhooks", data={"drop_share": "2"}, timeout=10,
                        headers={"Authorization": f"Bearer {emulator.api_key}"})
    assert bad.status_code == 400 and "drop_share" in bad.json()["error"]["message"]
