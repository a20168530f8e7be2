"""The expiry rule's edges: last day of the month, December to January, leap years."""
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from billing.expiry import card_last_day, expiring_clause, is_card_expiring


@pytest.mark.parametrize(("month", "year", "last"), [
    (12, 2026, date(2026, 12, 31)), (2, 2028, date(2028, 2, 29)), (2, 2027, date(2027, 2, 28)),
    (2, 2100, date(2100, 2, 28)), (2, 2000, date(2000, 2, 29)), (4, 2026, date(2026, 4, 30)),
])
def test_card_works_through_last_day_of_month(month, year, last):
    assert card_last_day(month, year) == last


@pytest.mark.parametrize(("month", "year", "today", "expected"), [
    # Last day 2026-12-31: expiring from 2026-12-01 (30 days before it, the window counts its last day).
    (12, 2026, date(2026, 11, 30), False),
    (12, 2026, date(2026, 12, 1), True),    # the 1st of a 31-day month: the whole month is flagged
    (12, 2026, date(2026, 12, 31), True),   # its last working day
    (12, 2026, date(2027, 1, 1), True),     # already expired: still needs replacing
    (1, 2027, date(2027, 1, 1), True),      # December to January
    (1, 2027, date(2026, 12, 31), False),   # 31 days before its last day
    (2, 2028, date(2028, 1, 30), True),     # leap year: works through Feb 29, 30 days away
    (2, 2028, date(2028, 1, 29), False),
    (2, 2027, date(2027, 1, 29), True),     # non-leap: last day Feb 28
    (2, 2027, date(2027, 1, 28), False),
    (4, 2026, date(2026, 3, 31), True),     # a 30-day month
    (4, 2026, date(2026, 3, 30), False),
])
def test_expiring_within_thirty_days(month, year, today, expected):
    assert is_card_expiring(month, year, today, 30) is expected


@pytest.mark.parametrize("days", [30, 45])
def test_every_day_of_two_years_flags_the_whole_expiry_month_and_the_window_before_it(days):
    """The property support relies on, over 2027-2028 (a leap day included): on every day of its
    expiry month a card is expiring; its first flagged day is exactly `days` before its last day."""
    day = date(2027, 1, 1)
    while day < date(2029, 1, 1):
        assert is_card_expiring(day.month, day.year, day, days)
        last = card_last_day(day.month, day.year)
        assert is_card_expiring(day.month, day.year, last - timedelta(days=days), days)
        assert not is_card_expiring(day.month, day.year, last - timedelta(days=days + 1), days)
        day += timedelta(days=1)


@pytest.mark.parametrize("today", [date(2027, 12, 15), date(2027, 12, 1), date(2028, 1, 30), date(2028, 2, 29),
                                   date(2028, 3, 1), date(2027, 11, 30)])
def test_sql_clause_agrees_with_python_rule(session, today):
    from billing.models import Card
    from saas.core.models import User

    user = User(email="rule@example.com", role="subscriber")
    session.add(user)
    session.flush()
    combos = [(m, y) for y in (2027, 2028) for m in range(1, 13)]
    for i, (m, y) in enumerate(combos):
        session.add(Card(user_id=user.id, stripe_payment_method_id=f"pm_{i}", brand="visa", last4="4242",
                         exp_month=m, exp_year=y))
    session.flush()
    flagged = set(session.execute(select(Card.exp_month, Card.exp_year).where(expiring_clause(today, 30))).all())
    assert flagged == {(m, y) for m, y in combos if is_card_expiring(m, y, today, 30)}
