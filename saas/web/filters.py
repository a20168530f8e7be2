"""Template filters every page can use: the shared formatting rules, and local times."""
from __future__ import annotations

from datetime import UTC, date, datetime

from flask import Flask

from billing.plans import label_for
from saas.core.formatting import FILTERS, long_date
from saas.web.extensions import app_settings


def localtime(moment: datetime) -> datetime:
    """A stored UTC time in APP_TIMEZONE, the zone every page and schedule uses."""
    return moment.astimezone(app_settings().tz)


def local_long_date(value: date | datetime | None) -> str:
    """The one date format ("2 December 2026"), a stored time read in APP_TIMEZONE."""
    return long_date(value, app_settings().tz)


def timestamp_date(seconds: int) -> str:
    """A Unix timestamp (Stripe's times) in the one date format."""
    return local_long_date(datetime.fromtimestamp(seconds, UTC))


def init_app(app: Flask) -> None:
    app.jinja_env.filters.update(FILTERS, localtime=localtime, long_date=local_long_date, plan_name=label_for,
                              timestamp_date=timestamp_date)
