"""Demo billing data for the personas: cards, subscriptions and their paid history.

Every date is relative to `now`, and one function (`subscription_story`) decides a persona's
periods, invoices and cancellation, so the history is coherent on any day: monthly and yearly
periods follow each other from the subscription's start (Stripe's anchor rule: the start's day
of month, clamped to shorter months), one paid invoice per period that has begun, none after a
cancellation, and a live subscription's current period contains `now`.

When STRIPE_API_BASE points away from api.stripe.com (the emulator `saas dev` starts; settings allow
that only with a test key) the customers and cards are created through the gateway and the same
story is placed in the emulator (its fixtures endpoint, which emits no events), so the demo's
update-card and cancel flows work end to end and the emulator agrees with our rows. Otherwise (no
emulator, or real Stripe) deterministic ids are written and Stripe is never called from a seed.
A persona that already has a Stripe customer id is left alone, which makes the seed idempotent.
"""
from __future__ import annotations

import calendar
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import requests
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from billing import dunning, gateway
from billing.models import Card, DunningCase, DunningStep, Invoice, MrrMovement, Subscription
from billing.plans import PLANS, Plan, monthly_cents
from saas.core import runtime
from saas.core.models import User
from saas.core.outbox import OutboxMessage
from saas.core.settings import Settings


@dataclass(frozen=True)
class Persona:
    """A persona's billing: plan, card expiry (months from now), subscription start and end (days ago)."""

    plan: str | None = None
    card_in_months: int | None = None
    started_days_ago: int = 0
    canceled_days_ago: int | None = None
    failed_ago: timedelta | None = None  # the last renewal failed this long ago: past_due, in dunning


PERSONAS = {
    "ana": Persona("pro", 0, 95),                   # card expires this month: inside the warning window
    "bruno": Persona("starter", 48, 95),            # healthy for years
    "carla": Persona("starter", 24, 400, 220),      # cancelled long ago, then went quiet
    "dario": Persona(),                             # no subscription: nothing protects him from the purge
    "elena": Persona("pro-yearly", 36, 400),        # dormant but paying (renewed on her own): protected
    # three months paid, then the renewal failed three days (and an hour) ago: in dunning, the day-3 reminder
    # due in the current hourly slot; the emulator declines every retry until the card changes
    "fabio": Persona("pro", 36, failed_ago=timedelta(days=3, hours=1)),
}
FAILED_MONTHS_PAID = 3


@dataclass(frozen=True)
class Story:
    """A subscription's history as of `now`: its periods (each billed by one paid invoice), status and end."""

    plan: Plan
    periods: list[tuple[datetime, datetime]]
    status: str
    canceled_at: datetime | None

    @property
    def started_at(self) -> datetime:
        return self.periods[0][0]

    @property
    def current_period_end(self) -> datetime:
        return self.periods[-1][1]

    @property
    def failed(self) -> bool:
        """The last period's invoice failed (past_due): it is open, the account in dunning."""
        return self.status == "past_due"


def add_months(anchor: datetime, months: int) -> datetime:
    """The anchor's day and time `months` later, clamped to the month's end (Jan 31 -> Feb 28 -> Mar 31)."""
    index = anchor.month - 1 + months
    year, month = anchor.year + index // 12, index % 12 + 1
    return anchor.replace(year=year, month=month, day=min(anchor.day, calendar.monthrange(year, month)[1]))


def card_expiry(now: datetime, months: int) -> tuple[int, int]:
    """(month, year) `months` after now's month."""
    index = now.month - 1 + months
    return index % 12 + 1, now.year + index // 12


def subscription_story(persona: Persona, now: datetime) -> Story:
    """Periods from the start until the one that contains now (or the cancellation), back to back."""
    assert persona.plan is not None, "a persona without a plan has no subscription story"
    plan = PLANS[persona.plan]
    if persona.failed_ago is not None:  # periods back to back before and after the failed renewal
        renewal = now - persona.failed_ago
        months = range(-FAILED_MONTHS_PAID, 1)
        return Story(plan, [(add_months(renewal, k), add_months(renewal, k + 1)) for k in months], "past_due", None)
    step = 12 if plan.interval == "year" else 1
    start = now - timedelta(days=persona.started_days_ago)
    until = now - timedelta(days=persona.canceled_days_ago) if persona.canceled_days_ago is not None else now
    periods: list[tuple[datetime, datetime]] = []
    while not periods or periods[-1][1] <= until:
        n = len(periods)
        periods.append((add_months(start, n * step), add_months(start, (n + 1) * step)))
    if persona.canceled_days_ago is not None:
        return Story(plan, periods, "canceled", until)
    return Story(plan, periods, "active", None)


def seed_billing(session: Session, users: dict[str, User], now: datetime, settings: Settings) -> None:
    """Give each persona (`users` by login) the billing state its story needs (PERSONAS). Idempotent; sends no mail."""
    via_emulator = not settings.stripe_api_base.startswith("https://api.stripe.com")
    stories = []
    for local, persona in PERSONAS.items():
        user = users.get(local)
        if user is None or user.stripe_customer_id:
            continue
        exp = card_expiry(now, persona.card_in_months) if persona.card_in_months is not None else None
        story = subscription_story(persona, now) if persona.plan else None
        if via_emulator:
            ids = _place_in_emulator(settings, user, exp, story)
        else:
            ids = {"customer": f"cus_demo_{local}", "pm": exp and f"pm_demo_{local}",
                   "sub": story and f"sub_demo_{local}", "invoices": None}
        user.stripe_customer_id = ids["customer"]
        if exp:
            # is_expiring stays for the nightly job to set: it sends the card-expiring email too.
            session.add(Card(user_id=user.id, stripe_payment_method_id=ids["pm"], brand="visa", last4="4242",
                             exp_month=exp[0], exp_year=exp[1], is_default=True))
        if story:
            stories.append((user, ids, story, _subscription(user, ids["sub"], story)))
    session.add_all([sub for *_, sub in stories])
    session.flush()
    for user, ids, story, sub in stories:
        _add_history(session, user, sub, story, ids["invoices"])
    session.flush()


def _place_in_emulator(settings: Settings, user: User, exp: tuple[int, int] | None, story: Story | None) -> dict:
    """The customer and card through the gateway; the subscription's past through the emulator's fixtures."""
    ids = {"customer": gateway.create_customer(user.id, user.email, user.name)["id"], "pm": None, "sub": None,
           "invoices": None}
    if exp:
        pm = gateway.create_card_payment_method("4242424242424242", exp[0], exp[1], f"seed-{user.id}")
        gateway.attach_payment_method(pm["id"], ids["customer"])
        gateway.set_default_payment_method(ids["customer"], pm["id"])
        ids["pm"] = pm["id"]
    if story:
        fields = {"customer": ids["customer"], "price": story.plan.price_id}
        if story.canceled_at:
            fields["canceled_at"] = int(story.canceled_at.timestamp())
        if story.failed:
            fields["last_failed"] = "true"
        for i, (start, end) in enumerate(story.periods):
            fields[f"periods[{i}][start]"] = int(start.timestamp())
            fields[f"periods[{i}][end]"] = int(end.timestamp())
        response = requests.post(f"{settings.stripe_api_base}/_emulator/fixtures/subscription", data=fields,
                                 headers={"Authorization": f"Bearer {settings.stripe_secret_key}"}, timeout=10)
        response.raise_for_status()
        sub = response.json()
        ids["sub"], ids["invoices"] = sub["id"], sub["invoice_ids"]
    return ids


def _subscription(user: User, sub_id: str, story: Story) -> Subscription:
    plan = story.plan
    return Subscription(user_id=user.id, stripe_subscription_id=sub_id, plan=plan.key, status=story.status,
                        amount_cents=plan.amount_cents, currency=plan.currency, interval=plan.interval,
                        current_period_end=story.current_period_end, canceled_at=story.canceled_at,
                        created_at=story.started_at)


def _add_history(session: Session, user: User, sub: Subscription, story: Story,
                 invoice_ids: list[tuple[str, str]] | None) -> None:
    """The subscription's MRR movements and one paid invoice per period."""
    plan = story.plan
    mrr = monthly_cents(plan.amount_cents, plan.interval)
    session.add(MrrMovement(subscription_id=sub.id, at=story.started_at, kind="new", currency=plan.currency,
                            mrr_before_cents=0, mrr_after_cents=mrr))
    if story.canceled_at:
        session.add(MrrMovement(subscription_id=sub.id, at=story.canceled_at, kind="churn", currency=plan.currency,
                                mrr_before_cents=mrr, mrr_after_cents=0))
    for n, (start, end) in enumerate(story.periods, 1):
        stripe_id, number = invoice_ids[n - 1] if invoice_ids else (f"in_seed_{user.id}_{n}", f"SEED-{user.id:03d}-{n}")
        failed = story.failed and n == len(story.periods)
        invoice = Invoice(user_id=user.id, subscription_id=sub.id, stripe_invoice_id=stripe_id, number=number,
                          amount_cents=plan.amount_cents, currency=plan.currency, status="open" if failed else "paid",
                          period_start=start, period_end=end, paid_at=None if failed else start,
                          customer_email=user.email, customer_name=user.name, created_at=start)
        session.add(invoice)
        if failed:
            invoice.first_failed_at = start
            invoice.failure_reason = "Your card was declined. Please use another card or contact your bank."
            _add_dunning_case(session, user, sub, invoice, start)


def _add_dunning_case(session: Session, user: User, sub: Subscription, invoice: Invoice, failed_at: datetime) -> None:
    """The case of the failed renewal, its step 0 (the failure's email, sent back then) taken; the
    advance-dunning job takes the next step when its slot comes."""
    session.flush()
    case = DunningCase(user_id=user.id, subscription_id=sub.id, invoice_id=invoice.id, status="open", step=0,
                       amount_cents=invoice.amount_cents, currency=invoice.currency,
                       mrr_cents=monthly_cents(sub.amount_cents, sub.interval), opened_at=failed_at,
                       link_token=secrets.token_urlsafe(32))
    session.add(case)
    session.flush()
    session.add(DunningStep(case_id=case.id, step=0, days=0, final=False, taken_at=failed_at))
    # The failure's email, as the webhook sent it back then (not sent again): under the key the webhook
    # uses, so that a later failure of the same invoice (Pay now, declined) does not send it a second time.
    session.execute(insert(OutboxMessage).values(
        idempotency_key=f"payment-failed:{invoice.stripe_invoice_id}", kind="payment-failed", to_addr=user.email,
        user_id=user.id, template="billing_payment_failed", status="sent", attempts=1, created_at=failed_at,
        next_attempt_at=failed_at, sent_at=failed_at, attachments=[],
        context={"name": user.name or user.email, "amount_cents": invoice.amount_cents,
                 "currency": invoice.currency.upper(), "reason": invoice.failure_reason or "", "confirm_url": "",
                 **dunning.first_email_context(case, runtime.settings())},
    ).on_conflict_do_nothing(index_elements=["idempotency_key"]))  # a demo reset keeps the one sent
