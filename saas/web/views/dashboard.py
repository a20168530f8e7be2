"""The subscriber's dashboard: plan, card, invoices, and the banners the flags drive."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from flask import Blueprint, redirect, render_template, url_for
from flask_login import current_user, login_required

from billing.current import card_subscription_and_case, payment_failed_showing, payment_to_confirm, recent_invoices
from billing.expiry import is_card_expiring
from billing.plans import PLANS
from saas.core.db import web_session
from saas.core.formatting import brand_name, long_date, money
from saas.core.models import User
from saas.web.extensions import app_settings, app_today

bp = Blueprint("dashboard", __name__)


@dataclass(frozen=True)
class Banner:
    """One message at the top of the dashboard; `kind` picks its colour (warn, bad, info)."""

    kind: str
    key: str
    text: str
    link_text: str | None = None
    link: str | None = None
    pay_now_url: str | None = None  # a Pay now button (dunning): the open invoice retried in a worker


def _local_date(moment: datetime) -> date:
    return moment.astimezone(app_settings().tz).date()


def banners_for(user: User, card, subscription, today: date, update_url: str,
                invoices: list | None = None, case=None) -> list[Banner]:
    """Banners computed from the current rows, so each one goes as soon as its cause is fixed."""
    settings = app_settings()
    found: list[Banner] = []
    invoices = invoices or []
    to_confirm = payment_to_confirm(invoices)
    if to_confirm is not None:
        found.append(Banner("bad", "payment-action-required", "Your bank asks you to confirm your payment of "
                            f"{money(to_confirm.amount_cents, to_confirm.currency)} —",
                            "Confirm the payment", to_confirm.hosted_invoice_url))
    if payment_failed_showing(subscription, invoices):
        if case is not None:  # in dunning: the amount due, Pay now
            found.append(Banner("bad", "payment-failed", f"Your last payment of {money(case.amount_cents, case.currency)} "
                                "failed and is still due. Pay it now, or update your card so your subscription "
                                "continues.", "Update your card", update_url, pay_now_url=url_for("billing.pay_now")))
        else:
            found.append(Banner("bad", "payment-failed", "Your last payment failed. Update your card so your "
                                "subscription continues.", "Update your card", update_url))
    if card is not None and card.is_expiring and is_card_expiring(card.exp_month, card.exp_year, today,
                                                                  settings.card_expiring_days):
        found.append(Banner("warn", "card-expiring",
                            f"Your {brand_name(card.brand)} ending {card.last4} expires on "
                            f"{card.exp_month:02d}/{card.exp_year} —", "Update your card", update_url))
    if user.purge_due_at is not None and user.purged_at is None:
        found.append(Banner("bad", "deletion-scheduled",
                            f"Your account is scheduled for deletion on {long_date(_local_date(user.purge_due_at))}. "
                            "Signing in again or contacting us keeps it."))
    if user.deletion_cancelled_at is not None:
        found.append(Banner("info", "deletion-cancelled",
                            "Welcome back. Signing in cancelled the scheduled deletion of your account."))
    return found


def _update_card_url() -> str:
    try:
        return url_for("billing.update_card")
    except Exception:  # the billing blueprint is not registered (yet)
        return "#"


@bp.get("/")
def home():
    """The landing page for visitors: what the product is and the plans; signed-in users go to their dashboard."""
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.index"))
    return render_template("landing.html", plans=list(PLANS.values()))


@bp.get("/favicon.ico")
def favicon():
    """Browsers ask for /favicon.ico before reading the page's icon link: the SVG icon answers."""
    return redirect(url_for("static", filename="favicon.svg"), 301)


@bp.get("/dashboard")
@login_required
def index():
    """At most three queries: the signed-in user (loaded by Flask-Login), card + plan + dunning case, invoices."""
    user = current_user._get_current_object()
    notice_pending = user.deletion_cancelled_at is not None
    card, subscription, case = card_subscription_and_case(web_session, user.id, clear_cancelled_notice=notice_pending)
    invoices = recent_invoices(web_session, user.id)
    if notice_pending:
        web_session.commit()
    update_card_url = _update_card_url()
    banners = banners_for(user, card, subscription, app_today(), update_card_url, invoices, case)
    if notice_pending:
        user.deletion_cancelled_at = None
    cheapest = min(PLANS.values(), key=lambda plan: plan.amount_cents)
    return render_template("dashboard.html", card=card, subscription=subscription, invoices=invoices,
                           banners=banners, update_card_url=update_card_url, cheapest=cheapest)
