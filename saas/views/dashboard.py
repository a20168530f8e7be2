"""The subscriber's dashboard: plan, card, invoices, and the banners the flags drive."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from flask import Blueprint, redirect, render_template, url_for
from flask_login import current_user, login_required
from sqlalchemy import select, true, update
from sqlalchemy.orm import aliased

from billing.records import local_today
from saas.db import web_session
from saas.models import User
from saas.settings import get_settings

bp = Blueprint("dashboard", __name__)
INVOICES_SHOWN = 12
CURRENT_SUBSCRIPTION_ORDER = ("past_due", "active", "trialing", "unpaid", "paused", "incomplete")
BRAND_NAMES = {"amex": "American Express", "diners": "Diners Club", "jcb": "JCB", "mastercard": "Mastercard",
               "unionpay": "UnionPay", "visa": "Visa", "discover": "Discover"}


def brand_name(brand: str) -> str:
    """Stripe's brand code as people write it ("visa" -> "Visa")."""
    return BRAND_NAMES.get(brand.lower(), brand.title())


@dataclass(frozen=True)
class Banner:
    """One message at the top of the dashboard; `kind` picks its colour (warn, bad, info)."""

    kind: str
    key: str
    text: str
    link_text: str | None = None
    link: str | None = None


def load_billing(session, user: User, clear_cancelled_notice: bool):
    """The default card and the current subscription in one round trip.

    When the one-time "deletion cancelled" notice is being shown, the same statement clears it
    (a data-modifying CTE), so the dashboard stays within three queries.
    """
    from billing.models import Card, Subscription
    from sqlalchemy import case

    card_q = (select(Card).where(Card.user_id == user.id)
              .order_by(Card.is_default.desc(), Card.created_at.desc(), Card.id.desc()).limit(1).lateral("card"))
    rank = case({status: i for i, status in enumerate(CURRENT_SUBSCRIPTION_ORDER)},
                value=Subscription.status, else_=len(CURRENT_SUBSCRIPTION_ORDER))
    sub_q = (select(Subscription).where(Subscription.user_id == user.id)
             .order_by(rank, Subscription.created_at.desc(), Subscription.id.desc()).limit(1).lateral("sub"))
    card, sub = aliased(Card, card_q), aliased(Subscription, sub_q)
    stmt = (select(card, sub).select_from(User)
            .outerjoin(card_q, true()).outerjoin(sub_q, true()).where(User.id == user.id))
    if clear_cancelled_notice:
        stmt = stmt.add_cte(update(User).where(User.id == user.id, User.deletion_cancelled_at.is_not(None))
                            .values(deletion_cancelled_at=None).cte("cleared"))
    row = session.execute(stmt).first()
    return (row[0], row[1]) if row else (None, None)


def load_invoices(session, user: User) -> list:
    from billing.models import Invoice

    return list(session.scalars(select(Invoice).where(Invoice.user_id == user.id)
                                .order_by(Invoice.created_at.desc(), Invoice.id.desc()).limit(INVOICES_SHOWN)))


def _local_date(moment: datetime) -> date:
    return moment.astimezone(get_settings().tz).date()


def banners_for(user: User, card, subscription, today: date, update_url: str) -> list[Banner]:
    """Banners computed from the current rows, so each one goes as soon as its cause is fixed."""
    from billing.expiry import is_card_expiring

    settings = get_settings()
    found: list[Banner] = []
    if subscription is not None and subscription.status == "past_due":
        found.append(Banner("bad", "payment-failed", "Your last payment failed. Update your card so your "
                            "subscription continues.", "Update your card", update_url))
    if card is not None and card.is_expiring and is_card_expiring(card.exp_month, card.exp_year, today,
                                                                  settings.card_expiring_days):
        found.append(Banner("warn", "card-expiring",
                            f"Your {brand_name(card.brand)} ending {card.last4} expires on "
                            f"{card.exp_month:02d}/{card.exp_year} —", "Update your card", update_url))
    if user.purge_due_at is not None and user.purged_at is None:
        found.append(Banner("bad", "deletion-scheduled",
                            f"Your account is scheduled for deletion on {_local_date(user.purge_due_at):%d %B %Y}. "
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


@bp.app_template_filter("money")
def money(cents: int | None, currency: str = "usd") -> str:
    """12345, "usd" -> "123.45 USD"."""
    return "" if cents is None else f"{cents / 100:,.2f} {currency.upper()}"


@bp.app_template_filter("brand")
def brand_filter(brand: str) -> str:
    return brand_name(brand or "")


@bp.get("/")
def home():
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.index"))
    return redirect(url_for("auth.login"))


@bp.get("/dashboard")
@login_required
def index():
    """At most three queries: the signed-in user (loaded by Flask-Login), card + plan, invoices."""
    user = current_user._get_current_object()
    notice_pending = user.deletion_cancelled_at is not None
    card, subscription = load_billing(web_session, user, clear_cancelled_notice=notice_pending)
    invoices = load_invoices(web_session, user)
    if notice_pending:
        web_session.commit()
    banners = banners_for(user, card, subscription, local_today(), _update_card_url())
    if notice_pending:
        user.deletion_cancelled_at = None
    return render_template("dashboard.html", card=card, subscription=subscription, invoices=invoices,
                           banners=banners, update_card_url=_update_card_url())
