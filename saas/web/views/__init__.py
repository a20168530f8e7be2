"""Blueprints: thin views over the domain code."""
from saas.web.views import (
    admin_dunning,  # noqa: F401  (its routes join the admin blueprint)
    admin_jobs,  # noqa: F401  (the jobs routes, on the admin blueprint)
)
from saas.web.views.admin import bp as admin_bp
from saas.web.views.auth import bp as auth_bp
from saas.web.views.billing import bp as billing_bp
from saas.web.views.contact import bp as contact_bp
from saas.web.views.dashboard import bp as dashboard_bp
from saas.web.views.devmail import bp as devmail_bp
from saas.web.views.finance import bp as finance_bp
from saas.web.views.health import bp as health_bp
from saas.web.views.metrics import bp as metrics_bp
from saas.web.views.recover import bp as recover_bp

BLUEPRINTS = [health_bp, metrics_bp, auth_bp, dashboard_bp, admin_bp, finance_bp, contact_bp, billing_bp, recover_bp]
DEV_BLUEPRINTS = [devmail_bp]
