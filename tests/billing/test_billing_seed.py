"""The demo personas' billing state, seeded twice."""
from __future__ import annotations

from datetime import date

from sqlalchemy import func, select

from billing.expiry import is_card_expiring
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
        ana_card = s.scalar(select(Card).where(Card.user_id == ana.id))
        bruno_card = s.scalar(select(Card).where(Card.user_id == bruno.id))
        # The cards' expiries make ana's expiring and bruno's healthy; flagging is the nightly job's.
        assert is_card_expiring(ana_card.exp_month, ana_card.exp_year, today, 30)
        assert not is_card_expiring(bruno_card.exp_month, bruno_card.exp_year, today, 30)
        assert not ana_card.is_expiring
        assert s.scalar(select(Subscription.status).where(Subscription.user_id == carla.id)) == "canceled"
        assert s.scalar(select(func.count()).select_from(Subscription).where(Subscription.user_id == dario.id)) == 0
        assert s.scalar(select(Subscription.status).where(Subscription.user_id == elena.id)) == "active"
        assert s.scalar(select(func.count()).select_from(Card)) == 4
        assert s.scalar(select(func.count()).select_from(Invoice).where(Invoice.status != "paid")) == 0
    assert mail.messages() == []
