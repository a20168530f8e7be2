"""Flask extensions, created unbound and initialised in the app factory; the app's settings."""
from __future__ import annotations

from datetime import date

from flask import current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

from billing.records import local_today
from saas.core.settings import Settings

login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = "Please sign in to see that page."
login_manager.login_message_category = "info"

csrf = CSRFProtect()

# Storage is set from REDIS_URL in create_app; no limits apply unless a view declares one.
limiter = Limiter(key_func=get_remote_address, strategy="fixed-window")


def app_settings() -> Settings:
    """The settings the running app was built with (create_app(settings)): how web code reads them."""
    return current_app.config["SETTINGS"]


def app_today() -> date:
    """Today in APP_TIMEZONE, the day pages judge cards, queues and reports by."""
    return local_today(app_settings().tz)
