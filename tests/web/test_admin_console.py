"""The admin console as its users meet it: the landing page, failed bulk actions, the outbox message."""
from datetime import timedelta

import pytest
from sqlalchemy import update

from billing.models import DunningCase
from saas.core.db import session_scope
from saas.core.models import User
from saas.core.outbox import OutboxMessage
from scheduled.dormancy import purge_approved
from scheduled.ledger import FIRST_START_SKIP, record_skipped
from tests import factories
from tests.factories import add
from tests.web.helpers import add_subscription
from tests.web.test_admin import NOW, _outbox, audit_rows, dormant, get_user


@pytest.fixture
def admin(make_user, auth):
    user = make_user(email="root@example.com", role="admin", name="Root")
    auth.login("root@example.com")
    return user


def _count(page: str, key: str) -> str:
    part = page.split(f'data-attention="{key}"', 1)[1]
    return part.split('class="attention-count">', 1)[1].split("<", 1)[0]


def test_landing_page_counts_what_needs_attention_with_links(client, admin, make_user):
    fabio = make_user(email="fabio@example.com")  # three days into dunning
    sub = factories.subscription(fabio.id, status="past_due")
    invoice_id = factories.invoice(fabio.id, status="open", subscription_id=sub.id, first_failed_at=NOW - timedelta(days=3)).id
    add(DunningCase, user_id=fabio.id, subscription_id=sub.id, invoice_id=invoice_id, amount_cents=2900,
        mrr_cents=2900, opened_at=NOW - timedelta(days=3), link_token="tok-fabio")
    dormant(make_user, "dario@example.com")
    protected = dormant(make_user, "elena@example.com")
    add_subscription(protected.id, status="active")
    dormant(make_user, "kept@example.com", purge_exempt_reason="VIP")
    _outbox("failed", attempts=6, last_error="550 no such user")
    stale = _outbox("pending")
    with session_scope() as s:
        s.execute(update(OutboxMessage).where(OutboxMessage.id == stale).values(created_at=NOW - timedelta(hours=1)))
        record_skipped(s, "purge-dormant-accounts", [NOW - timedelta(days=2)], NOW, "missed while no beat ran")
        record_skipped(s, "flag-expiring-cards", [NOW - timedelta(days=3)], NOW, FIRST_START_SKIP)  # a baseline
    page = client.get("/admin").get_data(as_text=True)
    assert _count(page, "dormant") == "1"  # dario: not elena (protected) nor the exempted one
    assert _count(page, "failed-emails") == "1" and _count(page, "stale-emails") == "1"
    assert _count(page, "job-runs") == "1" and _count(page, "dunning") == "1"
    assert 'href="/admin/dunning"' in page
    assert 'href="/admin/dormant?protected=no"' in page and 'href="/admin/outbox?status=failed"' in page
    assert 'href="/admin/jobs"' in page


def test_landing_page_says_when_nothing_needs_attention(client, admin):
    page = client.get("/admin/").get_data(as_text=True)
    assert "Nothing needs attention right now." in page


def test_failed_bulk_action_shows_the_queue_with_the_message_and_the_selection(client, admin, make_user):
    users = [dormant(make_user, f"u{i}@example.com") for i in range(3)]
    back = "/admin/dormant?sort=email&dir=desc"
    response = client.post("/admin/dormant/act", data={"ids": [users[0].id, users[2].id], "action": "exempt",
                                                       "reason": "", "back": back})
    page = response.get_data(as_text=True)
    assert response.status_code == 400 and "An exemption needs a reason" in page and "<h1>Dormant accounts</h1>" in page
    assert f'value="{users[0].id}" form="bulk" id="sel-{users[0].id}" aria-label="Select u0@example.com" checked' in page
    assert f'id="sel-{users[1].id}" aria-label="Select u1@example.com">' in page  # not selected
    assert '<option value="exempt" selected>' in page and f'name="back" value="{back.replace("&", "&amp;")}"' in page
    assert page.index("u2@example.com") < page.index("u0@example.com")  # the queue's own sort is kept
    assert audit_rows() == []


def test_an_approved_account_leaves_the_queue_at_once(client, admin, make_user, sent):
    user = dormant(make_user, "dario@example.com")
    client.post("/admin/dormant/act", data={"ids": user.id, "action": "approve", "confirm": "yes"})
    page = client.get("/admin/dormant").get_data(as_text=True)
    assert "dario@example.com" not in page and get_user(user.id).purge_approved_at is not None


def test_a_refused_purge_puts_the_account_back_in_the_queue(make_user):
    user = dormant(make_user, "elena@example.com", purge_approved_at=NOW)
    add_subscription(user.id, status="active")  # protected after the approval
    with session_scope() as s:
        assert purge_approved(s, user.id, "admin:1", NOW) is False
    assert get_user(user.id).purge_approved_at is None


def test_bulk_approval_leaves_protected_accounts_out(client, admin, make_user):
    free = dormant(make_user, "dario@example.com")
    paying = dormant(make_user, "elena@example.com")
    add_subscription(paying.id, status="active")
    confirm = client.post("/admin/dormant/act", data={"ids": [free.id, paying.id], "action": "approve"})
    page = confirm.get_data(as_text=True)
    assert confirm.status_code == 200 and "This applies to 1 account" in page
    assert "Left out" in page and "elena@example.com (subscription active)" in page
    assert f'name="ids" value="{paying.id}"' not in page and f'name="ids" value="{free.id}"' in page
    only_protected = client.post("/admin/dormant/act", data={"ids": paying.id, "action": "approve"})
    assert only_protected.status_code == 400 and "cannot be approved for purge" in only_protected.get_data(as_text=True)


def test_protected_rows_offer_no_approve_button(client, admin, make_user):
    paying = dormant(make_user, "elena@example.com")
    add_subscription(paying.id, status="active")
    page = client.get("/admin/dormant").get_data(as_text=True)
    row = page.split(f'data-user-id="{paying.id}"', 1)[1].split("</tr>", 1)[0]
    assert "Approve purge" not in row and "Exempt" in row


def test_outbox_message_shows_headers_text_and_html_in_a_sandbox(client, admin):
    message_id = _outbox("sent", sent_at=NOW)
    listing = client.get("/admin/outbox").get_data(as_text=True)
    assert f'href="/admin/outbox/{message_id}"' in listing
    response = client.get(f"/admin/outbox/{message_id}")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "x@example.com" in page and f"&lt;outbox-{message_id}@" in page  # To and Message-ID headers
    assert "Your Acme SaaS account is ready" in page  # the text part
    assert '<iframe class="mail-html"' in page and " sandbox srcdoc=\"&lt;!doctype html&gt;" in page
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "style-src 'self' 'unsafe-inline'" in csp
    assert "unsafe-inline" not in client.get("/admin/outbox").headers["Content-Security-Policy"]
    assert client.get("/admin/outbox/999999").status_code == 404


def test_the_exemption_reason_is_recorded(client, admin, make_user):
    user = dormant(make_user, "dario@example.com")
    client.post("/admin/dormant/act", data={"ids": user.id, "action": "exempt", "reason": "Phone call", "confirm": "yes"})
    [row] = audit_rows()
    assert row.details == {"bulk": False, "reason": "Phone call"}
    with session_scope() as s:
        assert s.get(User, user.id).purge_exempt_reason == "Phone call"
