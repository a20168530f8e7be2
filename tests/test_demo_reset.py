"""`saas seed demo --reset` puts every persona back into its story after a walk-through changed it."""
from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import func, select, update

from billing.models import Card, MrrMovement, Subscription
from saas.core.db import session_scope
from saas.core.models import User
from saas.dev.seed import seed_demo
from scheduled.dormancy import awaiting_review

DAY = date(2027, 3, 1)


def _users(s) -> dict[str, User]:
    return {u.email.split("@")[0]: u for u in s.scalars(select(User).where(User.email.like("%@example.com")))}


def test_reset_undoes_sign_ins_exemptions_card_changes_and_purges(with_settings):
    settings = with_settings(stripe_api_base="https://api.stripe.com")  # the seed writes our rows only
    now = datetime.combine(DAY, time(12), settings.tz).astimezone(UTC)
    seed_demo(settings, now)
    with session_scope() as s:
        before = {k: (u.last_seen_at, u.inactive_warned_at, u.purge_due_at) for k, u in _users(s).items()}
        movements = s.scalar(select(func.count()).select_from(MrrMovement))
        people = _users(s)
        # The walk-through: carla and dario sign in, elena is exempted, ana saves a new card, bruno cancels.
        for name in ("carla", "dario"):
            people[name].last_seen_at, people[name].inactive_warned_at = now, None
            people[name].purge_due_at, people[name].deletion_cancelled_at = None, now
        people["elena"].purge_exempt_reason = "VIP"
        s.execute(update(Card).where(Card.user_id == people["ana"].id).values(exp_year=DAY.year + 5))
        s.execute(update(Subscription).where(Subscription.user_id == people["bruno"].id).values(status="canceled"))
    with session_scope() as s:
        assert awaiting_review(s) == 0  # the admin queue is empty

    seed_demo(settings, now, reset=True)
    with session_scope() as s:
        people = _users(s)
        assert set(people) == set(before)
        for name in ("dario", "elena", "ana", "admin"):
            assert (people[name].last_seen_at, people[name].inactive_warned_at, people[name].purge_due_at) == before[name]
        assert people["carla"].last_seen_at == before["carla"][0]
        assert people["carla"].inactive_warned_at == now  # as the reminder job leaves her
        assert people["carla"].purge_due_at == now + timedelta(days=settings.purge_grace_days)
        assert people["elena"].purge_exempt_reason is None and people["dario"].deletion_cancelled_at is None
        assert s.scalar(select(Card.is_expiring).where(Card.user_id == people["ana"].id)) is True
        assert s.scalar(select(Subscription.status).where(Subscription.user_id == people["bruno"].id)) == "active"
        assert s.scalar(select(func.count()).select_from(MrrMovement)) == movements  # none twice
        assert awaiting_review(s) == 2  # carla and dario wait for the admin again
