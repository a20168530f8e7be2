"""The demo personas' stories hold on every day: seeded at each date of four years (a leap day
among them), each persona is judged by the product's own rules, and its billing history is coherent."""
from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy import and_, exists, select

from billing.expiry import expiring_clause
from billing.models import Card, Invoice, MrrMovement, Subscription
from saas.core.db import session_scope
from saas.core.models import User
from saas.dev.seed import seed_demo, seed_personas
from scheduled.dormancy import protection_reason_expr, purge_due
from scheduled.jobs.remind_inactive_users import inactivity_cutoff, warning_due
from scheduled.models import JobRun
from scheduled.runner import run_job

FIRST_DAY, DAYS = date(2026, 1, 1), 4 * 365 + 1  # 2026-01-01 .. 2029-12-31, 2028-02-29 included

# login: (card expiring, to be warned, purge due, protected by) -- the README's persona table.
STORIES = {
    "admin": (False, False, False, None),
    "finance": (False, False, False, None),
    "ana": (True, False, False, "subscription active"),
    "bruno": (False, False, False, "subscription active"),
    "carla": (False, True, False, None),
    "dario": (False, False, True, None),
    "elena": (False, False, True, "subscription active"),
    "fabio": (False, False, False, "subscription past_due"),
}


def instant(day: date, tz) -> datetime:
    """`day` at a time of day that moves through the day's hours from one date to the next."""
    minutes = (day.toordinal() * 97) % (24 * 60)
    return datetime.combine(day, time(minutes // 60, minutes % 60), tz).astimezone(UTC)


def persona_facts(session, now: datetime, settings) -> dict[str, tuple]:
    """Each persona as the nightly jobs' selections see it."""
    today = now.astimezone(settings.tz).date()
    cutoff = inactivity_cutoff(session, today, settings.inactive_after_months, settings.app_timezone)
    expiring = exists().where(Card.user_id == User.id, Card.is_default,
                              expiring_clause(today, settings.card_expiring_days))
    rows = session.execute(select(User.email, expiring, and_(*warning_due(cutoff)), and_(*purge_due(now)),
                                  protection_reason_expr()).where(User.email.like("%@example.com")))
    return {email.split("@")[0]: tuple(facts) for email, *facts in rows}


def history_problems(session, now: datetime) -> list[str]:
    """Every way a seeded subscription's history could contradict itself."""
    invoices, movements = {}, {}
    for inv in session.scalars(select(Invoice).order_by(Invoice.period_start)):
        invoices.setdefault(inv.subscription_id, []).append(inv)
    for m in session.scalars(select(MrrMovement).order_by(MrrMovement.at)):
        movements.setdefault(m.subscription_id, []).append(m.kind)
    problems = []
    for sub in session.scalars(select(Subscription)):
        paid = invoices.get(sub.id, [])
        who = f"subscription {sub.plan} ({sub.status})"
        if not paid or paid[0].period_start != sub.created_at:
            problems.append(f"{who}: the first invoice does not start with the subscription")
            continue
        for a, b in zip(paid, paid[1:]):
            if a.period_end != b.period_start:
                problems.append(f"{who}: periods {a.period_end} and {b.period_start} do not follow each other")
        for inv in paid:
            length = (inv.period_end - inv.period_start).days
            if length not in ((28, 29, 30, 31) if sub.interval == "month" else (365, 366)):
                problems.append(f"{who}: a {sub.interval}ly period of {length} days")
            failed_renewal = sub.status == "past_due" and inv is paid[-1] and inv.status == "open"
            if inv.created_at > now or (not failed_renewal and (inv.paid_at > now or inv.status != "paid")):
                problems.append(f"{who}: invoice {inv.number} is {inv.status}, dated {inv.created_at}")
        if paid[-1].period_end != sub.current_period_end:
            problems.append(f"{who}: its current period is not its last invoice's")
        if sub.status in ("active", "past_due") and not (paid[-1].period_start <= now < sub.current_period_end):
            problems.append(f"{who}: today is outside its current period")
        if sub.status == "canceled":
            if not sub.canceled_at or sub.canceled_at > now:
                problems.append(f"{who}: cancelled at {sub.canceled_at}")
            elif any(inv.period_start > sub.canceled_at for inv in paid):
                problems.append(f"{who}: an invoice after its end")
            elif not sub.canceled_at < sub.current_period_end:
                problems.append(f"{who}: cancelled after its last period")
        if movements.get(sub.id) != (["new", "churn"] if sub.status == "canceled" else ["new"]):
            problems.append(f"{who}: MRR movements {movements.get(sub.id)}")
    return problems


def test_every_persona_story_holds_on_every_day_of_four_years(with_settings):
    settings = with_settings(stripe_api_base="https://api.stripe.com")  # no emulator calls
    failures = []
    with session_scope() as session:
        for n in range(DAYS):
            day = FIRST_DAY + timedelta(days=n)
            now = instant(day, settings.tz)
            savepoint = session.begin_nested()
            seed_personas(session, now, "not-a-login", settings)
            facts = persona_facts(session, now, settings)

            if facts != STORIES:
                failures.append(f"{day}: {[(k, v) for k, v in facts.items() if STORIES.get(k) != v]}")
            failures += [f"{day}: {p}" for p in history_problems(session, now)]
            savepoint.rollback()
            if len(failures) > 10:
                break
        session.rollback()
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("day", [date(2026, 12, 1), date(2027, 3, 1), date(2028, 2, 29), date(2028, 12, 31)])
def test_the_nightly_jobs_play_each_story_on_hard_dates(with_settings, mail, day):
    """Seeded on that date, the jobs' real runs give ana one card email, carla one warning, and
    would purge dario and not elena. (No emulator: like Stripe, it refuses a card that expired
    before its own today, and these dates are not today.)"""
    settings = with_settings(stripe_api_base="https://api.stripe.com")  # the seed writes our rows only
    now = instant(day, settings.tz)
    seed_demo(settings, now)
    runs = {job: run_job(job, settings, now=now, explicit=True, dry_run=job == "purge-dormant-accounts")
            for job in ("flag-expiring-cards", "remind-inactive-users", "purge-dormant-accounts")}
    with session_scope() as s:
        ids = dict(s.execute(select(User.email, User.id)).all())
        flagged = set(s.scalars(select(Card.user_id).where(Card.is_expiring)))
        warned = set(s.scalars(select(User.id).where(User.inactive_warned_at == now)))
        would_purge = {r["user_id"] for r in s.get(JobRun, runs["purge-dormant-accounts"].id).details["would_purge"]}
    assert flagged == {ids["ana@example.com"]}
    assert warned == {ids["carla@example.com"]}
    assert would_purge == {ids["dario@example.com"]}
    assert (runs["flag-expiring-cards"].emails_queued, runs["remind-inactive-users"].emails_queued) == (1, 1)
