"""Template filters every page can use: the shared formatting rules, and local times."""
from __future__ import annotations

from datetime import datetime

from flask import Flask

from saas.core.formatting import FILTERS
from saas.web.extensions import app_settings


def localtime(moment: datetime) -> datetime:
    """A stored UTC time in APP_TIMEZONE, the zone every page and schedule uses."""
    return moment.astimezone(app_settings().tz)


def init_app(app: Flask) -> None:
    app.jinja_env.filters.update(FILTERS, localtime=localtime)
