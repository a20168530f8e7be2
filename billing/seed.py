"""Demo billing data for the personas (cards, subscriptions, invoices).

When STRIPE_API_BASE points away from api.stripe.com (the emulator `saas dev` starts; settings allow
that only with a test key) the customers, cards and subscriptions are created through the gateway, so
their ids exist there and the demo's update-card and cancel flows work end to end. Otherwise (no
emulator, or real Stripe) deterministic ids are written and Stripe is never called from a seed.
A persona that already has a Stripe customer id is left alone, which makes the seed idempotent.
"""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing import gateway
from billing.models import Card, Invoice, MrrMovement, Subscription
from billing.plans import PLANS, monthly_cents
from saas.models import User
from saas.settings import get_settings

# persona: (plan, card expiry as (months from today) or None, subscription status or None)
PERSONAS = {
    "ana": ("pro", 0, "active"),          # expires this month: inside the warning window
    "bruno": ("starter", 48, "active"),   # healthy for years
    "carla": ("starter", 24, "canceled"),
    "dario": (None, None, None),           # no subscription: nothing protects him from the purge
    "elena": ("pro-yearly", 36, "active"),  # dormant but paying: protected
}


def _at(day: date) -> datetime:
    return datetime.combine(day, time(12, 0), tzinfo=timezone.utc)


def _months_ahead(today: date, months: int) -> tuple[int, int]:
    index = today.month - 1 + months
    return index % 12 + 1, today.year + index // 12


def _stripe_ids(user: User, plan_key: str | None, exp: tuple[int, int] | None, status: str | None) -> dict:
    """Create the persona's objects in the emulator (idempotency keys make a rerun harmless)."""
    ids = {"customer": gateway.create_customer(user.id, user.email, user.name)["id"], "pm": None, "sub": None}
    if exp:
        pm = gateway.create_card_payment_method("4242424242424242", exp[0], exp[1], f"seed-{user.id}")
        gateway.attach_payment_method(pm["id"], ids["customer"])
        gateway.set_default_payment_method(ids["customer"], pm["id"])
        ids["pm"] = pm["id"]
    if plan_key:
        sub = gateway.create_subscription(ids["customer"], PLANS[plan_key].price_id, f"seed-{user.id}")
        if status == "canceled":
            gateway.cancel_subscription(sub["id"])
        ids["sub"] = sub["id"]
    return ids


def seed_billing(session: Session, today: date) -> None:
    """Give each persona the billing state DESIGN.md describes. Idempotent; sends no mail."""
    settings = get_settings()
    via_gateway = not settings.stripe_api_base.startswith("https://api.stripe.com")
    for local, (plan_key, exp_in, status) in PERSONAS.items():
        user = session.scalar(select(User).where(User.email == f"{local}@example.com"))
        if user is None or user.stripe_customer_id:
            continue
        exp = _months_ahead(today, exp_in) if exp_in is not None else None
        if via_gateway:
            ids = _stripe_ids(user, plan_key, exp, status)
        else:
            ids = {"customer": f"cus_demo_{local}", "pm": exp and f"pm_demo_{local}", "sub": plan_key and f"sub_demo_{local}"}
        user.stripe_customer_id = ids["customer"]
        if exp:
            # is_expiring stays for the nightly job to set: it sends the card-expiring email too.
            session.add(Card(user_id=user.id, stripe_payment_method_id=ids["pm"], brand="visa", last4="4242",
                             exp_month=exp[0], exp_year=exp[1], is_default=True))
        if plan_key:
            _seed_subscription(session, user, ids["sub"], plan_key, status, today)
    session.flush()


def _seed_subscription(session: Session, user: User, sub_id: str, plan_key: str, status: str, today: date) -> None:
    """The subscription, its MRR history and a few paid invoices (ended ones: all paid, none open)."""
    plan = PLANS[plan_key]
    started = today - timedelta(days=400 if status == "canceled" else 95)
    ended = today - timedelta(days=220) if status == "canceled" else None
    period = timedelta(days=365 if plan.interval == "year" else 30)
    sub = Subscription(user_id=user.id, stripe_subscription_id=sub_id, plan=plan.key, status=status,
                       amount_cents=plan.amount_cents, currency=plan.currency, interval=plan.interval,
                       current_period_end=_at(ended or today + timedelta(days=20)),
                       canceled_at=_at(ended) if ended else None, created_at=_at(started))
    session.add(sub)
    session.flush()
    mrr = monthly_cents(plan.amount_cents, plan.interval)
    session.add(MrrMovement(subscription_id=sub.id, at=_at(started), kind="new", currency=plan.currency,
                            mrr_before_cents=0, mrr_after_cents=mrr))
    if ended:
        session.add(MrrMovement(subscription_id=sub.id, at=_at(ended), kind="churn", currency=plan.currency,
                                mrr_before_cents=mrr, mrr_after_cents=0))
    start = started
    for n in range(1, 4):
        session.add(Invoice(user_id=user.id, subscription_id=sub.id, stripe_invoice_id=f"in_seed_{user.id}_{n}",
                            number=f"SEED-{user.id:03d}-{n}", amount_cents=plan.amount_cents, currency=plan.currency,
                            status="paid", period_start=_at(start), period_end=_at(start + period),
                            paid_at=_at(start), customer_email=user.email, customer_name=user.name,
                            created_at=_at(start)))
        start += period
        if plan.interval == "year":
            break
