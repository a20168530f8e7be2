"""The subscriber's dashboard: plan, card, invoices, banners from current rows, three queries."""
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from billing.models import Card, Subscription
from saas.core.db import session_scope
from saas.core.models import User
from tests.web.helpers import add_card, add_invoice, add_subscription, count_queries


@pytest.fixture
def soon(today) -> tuple[int, int]:
    """A card expiry month inside the warning window on the product's today: its own month."""
    return today.month, today.year


@pytest.fixture
def ana(make_user, auth):
    user = make_user(email="ana@example.com", name="Ana")
    auth.login("ana@example.com")
    return user


def test_shows_plan_card_and_invoices(client, ana):
    add_subscription(ana.id, plan="pro", amount_cents=2900)
    add_card(ana.id, 12, 2031, brand="mastercard", last4="4444")
    add_invoice(ana.id, amount_cents=2900)
    page = client.get("/dashboard").get_data(as_text=True)
    assert "Pro" in page and "29.00 USD" in page
    assert "Mastercard •••• 4444" in page and "Expires 12/2031" in page
    assert "INV-" in page and 'data-banner' not in page


def test_expiring_card_banner_links_to_update_and_goes_when_the_card_is_updated(soon, client, ana):
    month, year = soon
    card_id = add_card(ana.id, month, year, is_expiring=True)
    page = client.get("/dashboard").get_data(as_text=True)
    assert f"Your Visa ending 4242 expires on {month:02d}/{year} —" in page
    assert 'data-banner="card-expiring"' in page and "Update your card</a>" in page
    with session_scope() as s:  # the card is updated; the nightly flag is still set
        s.execute(update(Card).where(Card.id == card_id).values(exp_year=year + 3))
    assert 'data-banner="card-expiring"' not in client.get("/dashboard").get_data(as_text=True)


def test_no_banner_without_the_nightly_flag(soon, client, ana):
    month, year = soon
    add_card(ana.id, month, year, is_expiring=False)
    assert 'data-banner="card-expiring"' not in client.get("/dashboard").get_data(as_text=True)


def test_payment_failed_banner_until_the_subscription_recovers(client, ana):
    sub_id = add_subscription(ana.id, status="past_due")
    page = client.get("/dashboard").get_data(as_text=True)
    assert 'data-banner="payment-failed"' in page and "Your last payment failed" in page
    with session_scope() as s:
        s.execute(update(Subscription).where(Subscription.id == sub_id).values(status="active"))
    assert 'data-banner="payment-failed"' not in client.get("/dashboard").get_data(as_text=True)


def test_scheduled_deletion_banner_shows_the_date(client, make_user, auth):
    due = datetime(2031, 3, 14, 12, tzinfo=UTC)
    user = make_user(email="dario@example.com", purge_due_at=due, inactive_warned_at=due - timedelta(days=30))
    # Signing in cancels the deletion, so this state is seen by a session that was already open.
    client.get("/")  # no-op to create the cookie jar
    auth.login("dario@example.com")
    with session_scope() as s:
        s.execute(update(User).where(User.id == user.id).values(purge_due_at=due, deletion_cancelled_at=None))
    page = client.get("/dashboard").get_data(as_text=True)
    assert "scheduled for deletion on 14 March 2031" in page


def test_sign_in_cancels_deletion_and_says_so_once(client, make_user, auth):
    now = datetime.now(UTC)
    make_user(email="carla@example.com", inactive_warned_at=now - timedelta(days=20), purge_due_at=now + timedelta(days=10))
    auth.login("carla@example.com")
    first = client.get("/dashboard").get_data(as_text=True)
    assert 'data-banner="deletion-cancelled"' in first and 'data-banner="deletion-scheduled"' not in first
    assert 'data-banner="deletion-cancelled"' not in client.get("/dashboard").get_data(as_text=True)
    with session_scope() as s:
        assert s.scalar(select(User.deletion_cancelled_at).where(User.email == "carla@example.com")) is None


@pytest.mark.parametrize("cancelled_notice", [False, True])
def test_dashboard_uses_at_most_three_queries(soon, client, ana, cancelled_notice):
    month, year = soon
    add_card(ana.id, month, year, is_expiring=True)
    add_subscription(ana.id, status="past_due")
    for _ in range(5):
        add_invoice(ana.id)
    if cancelled_notice:
        with session_scope() as s:
            s.execute(update(User).where(User.id == ana.id).values(deletion_cancelled_at=datetime.now(UTC)))
    with count_queries() as statements:
        response = client.get("/dashboard")
    assert response.status_code == 200 and b'data-banner="card-expiring"' in response.data
    assert len(statements) <= 3, statements


def test_anonymous_goes_to_login(client):
    response = client.get("/dashboard")
    assert response.status_code == 302 and "/login" in response.location
