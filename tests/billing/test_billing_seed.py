"""The demo personas' billing state, seeded twice."""
from __future__ import annotations

from datetime import date

from sqlalchemy import func, select

from billing.models import Card, Invoice, Subscription
from saas.db import session_scope
from saas.models import User
from saas.seed import seed_demo


def test_seed_gives_each_persona_its_billing_state_idempotently(services, mail):
    today = date(2026, 5, 14)
    seed_demo(today)
    seed_demo(today)
    with session_scope() as s:
        def of(local):
            return s.scalar(select(User).where(User.email == f"{local}@example.com"))

        ana, bruno, carla, dario, elena = (of(n) for n in ("ana", "bruno", "carla", "dario", "elena"))
        assert s.scalar(select(Card.is_expiring).where(Card.user_id == ana.id)) is True
        assert s.scalar(select(Card.is_expiring).where(Card.user_id == bruno.id)) is False
        assert s.scalar(select(Subscription.status).where(Subscription.user_id == carla.id)) == "canceled"
        assert s.scalar(select(func.count()).select_from(Subscription).where(Subscription.user_id == dario.id)) == 0
        assert s.scalar(select(Subscription.status).where(Subscription.user_id == elena.id)) == "active"
        assert s.scalar(select(func.count()).select_from(Card)) == 4
        assert s.scalar(select(func.count()).select_from(Invoice).where(Invoice.status != "paid")) == 0
    assert mail.messages() == []
