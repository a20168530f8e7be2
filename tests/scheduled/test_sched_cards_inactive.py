"""flag-expiring-cards and remind-inactive-users: selection edges, both directions, one email each."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from billing.models import Card
from saas.core.db import session_scope
from saas.core.models import User
from scheduled.jobs import flag_expiring_cards, remind_inactive_users
from tests.helpers import utc


def flags() -> dict[int, bool]:
    with session_scope() as s:
        return dict(s.execute(select(Card.id, Card.is_expiring)).all())


@pytest.mark.parametrize("today, exp, expiring", [
    ((2025, 5, 2), (5, 2025), True),     # last day of the expiry month within the window
    ((2025, 5, 1), (5, 2025), True),     # exactly 30 days: the window counts May 31
    ((2025, 4, 30), (5, 2025), False),   # 31 days
    ((2025, 5, 2), (6, 2025), False),    # works to June 30, > 30 days away
    ((2025, 6, 1), (6, 2025), True),     # June 30 <= July 1
    ((2025, 5, 31), (6, 2025), True),    # exactly 30 days: June 30 is the window's last day
    ((2025, 5, 30), (6, 2025), False),
    ((2024, 1, 31), (2, 2024), True),    # leap year: works to Feb 29
    ((2024, 1, 30), (2, 2024), True),    # Feb 29 is 30 days away
    ((2024, 1, 29), (2, 2024), False),
    ((2025, 1, 29), (2, 2025), True),    # not a leap year: Feb 28 is 30 days away
    ((2025, 1, 28), (2, 2025), False),
    ((2025, 6, 1), (1, 2025), True),     # already expired still needs replacing
])
def test_flag_selection_edges(make_user, card, ctx, session, today, exp, expiring):
    user = make_user()
    c = card(user.id, *exp)
    flag_expiring_cards(session, ctx("flag-expiring-cards", utc(*today)))
    assert flags()[c.id] is expiring


def test_flag_and_clear_and_one_email_per_card_per_expiry(settings, make_user, card, ctx, session, outbox_keys, mail):
    ana, bruno = make_user(email="ana@example.com", name="Ana"), make_user(email="bruno@example.com")
    old = card(ana.id, 5, 2025)
    healthy = card(bruno.id, 12, 2030)
    flag_expiring_cards(session, ctx("flag-expiring-cards", utc(2025, 5, 10)))
    flag_expiring_cards(session, ctx("flag-expiring-cards", utc(2025, 5, 11)))
    assert flags() == {old.id: True, healthy.id: False}
    assert outbox_keys("card-expiring") == [f"card-expiring:{old.id}:2025-05"]
    with session_scope() as s:  # the card is replaced the same day: the old one loses its flag
        s.get(Card, old.id).is_default = False
    new = card(ana.id, 9, 2029)
    flag_expiring_cards(session, ctx("flag-expiring-cards", utc(2025, 5, 11)))
    assert flags() == {old.id: False, healthy.id: False, new.id: False}
    with session_scope() as s:  # the card updater changes the expiry in place: a new expiry, a new email
        c = s.get(Card, new.id)
        c.exp_month, c.exp_year = 6, 2025
    flag_expiring_cards(session, ctx("flag-expiring-cards", utc(2025, 6, 1)))
    assert outbox_keys("card-expiring") == [f"card-expiring:{old.id}:2025-05", f"card-expiring:{new.id}:2025-06"]
    with session_scope() as s:
        from saas.core.outbox import OutboxMessage

        row = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "card-expiring")).first()
        link = f"{settings.app_url}/billing/card"
        assert row.to_addr == "ana@example.com" and link in row.render().text


def test_flag_never_emails_purged_users(make_user, card, ctx, session, outbox_keys):
    user = make_user(purged_at=utc(2025, 1, 1))
    card(user.id, 5, 2025)
    flag_expiring_cards(session, ctx("flag-expiring-cards", utc(2025, 5, 10)))
    assert outbox_keys() == []


@pytest.mark.parametrize("last_seen, warned", [
    (utc(2024, 11, 10, 0, 0), False),        # exactly 6 months before the slot's date
    (utc(2024, 11, 9, 23, 59, 59), True),    # a second earlier
    (utc(2024, 11, 10, 12, 0), False),
])
def test_inactivity_exactly_six_calendar_months(make_user, ctx, session, last_seen, warned):
    user = make_user(last_seen_at=last_seen)
    remind_inactive_users(session, ctx("remind-inactive-users", utc(2025, 5, 10)))
    assert (session.get(User, user.id).inactive_warned_at is not None) is warned


def test_inactivity_month_end_clamps(make_user, ctx, session):
    # Aug 31 - 6 months = Feb 29 2024 (leap year)
    early, late = make_user(last_seen_at=utc(2024, 2, 28, 23)), make_user(last_seen_at=utc(2024, 2, 29, 1))
    remind_inactive_users(session, ctx("remind-inactive-users", utc(2024, 8, 31)))
    assert session.get(User, early.id).inactive_warned_at is not None
    assert session.get(User, late.id).inactive_warned_at is None


def test_remind_once_per_activity_only_subscribers(make_user, ctx, session, outbox_keys):
    seen = utc(2024, 1, 1)
    carla = make_user(email="carla@example.com", last_seen_at=seen)
    make_user(role="admin", last_seen_at=seen)
    make_user(last_seen_at=seen, purged_at=utc(2024, 6, 1))
    make_user(last_seen_at=seen, purge_exempt_reason="key account")
    now = utc(2025, 5, 10, 0, 0, 5)
    remind_inactive_users(session, ctx("remind-inactive-users", utc(2025, 5, 10), now=now))
    remind_inactive_users(session, ctx("remind-inactive-users", utc(2025, 5, 11), now=now))
    assert outbox_keys() == [f"inactive-warning:{carla.id}:{seen.isoformat(timespec='microseconds')}"]
    user = session.get(User, carla.id)
    assert user.inactive_warned_at == now and user.purge_due_at == utc(2025, 6, 9, 0, 0, 5)
