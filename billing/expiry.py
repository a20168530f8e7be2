"""The expiry rule, the one place that decides whether a card is expiring.

A card works through the last day of its expiry month and stops working the day after.
It is expiring when its last working day is no more than CARD_EXPIRING_DAYS days away: on or
before today + CARD_EXPIRING_DAYS (the window counts its last day). Since no month has more
than 31 days, a card is expiring on every day of its expiry month with the default 30 days.
An already-expired card is expiring too (it still needs replacing). The issue adds "or before the subscription's next charge date if that comes first
within the window": a card that stops before a charge inside the window also stops inside the
window, so that clause adds no card beyond this rule, and none is computed separately.
"""
from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import ColumnElement, literal

from billing.models import Card


def card_last_day(exp_month: int, exp_year: int) -> date:
    """The last day a card with this expiry works."""
    return date(exp_year, exp_month, calendar.monthrange(exp_year, exp_month)[1])


def expiring_horizon(today: date, days: int) -> date:
    """The last day of the window: cards whose last day falls on or before it are expiring."""
    return today + timedelta(days=days)


def is_card_expiring(exp_month: int, exp_year: int, today: date, days: int) -> bool:
    """True when the card stops working within `days` of `today` (or already has)."""
    return card_last_day(exp_month, exp_year) <= expiring_horizon(today, days)


def expiring_clause(today: date, days: int) -> ColumnElement[bool]:
    """The same rule as a SQL condition on cards.expires_on, for set-based statements."""
    return Card.expires_on <= literal(expiring_horizon(today, days))


@dataclass(frozen=True)
class ExpiryWindow:
    """The rule as it applies on one day: `today` in APP_TIMEZONE and CARD_EXPIRING_DAYS.
    Code that records cards takes one of these, so it judges them as the nightly job does."""

    today: date
    days: int

    def covers(self, exp_month: int, exp_year: int) -> bool:
        return is_card_expiring(exp_month, exp_year, self.today, self.days)
