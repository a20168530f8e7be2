"""The demo personas' billing state, seeded twice through the Stripe emulator: our rows and the
emulator's objects tell the same history."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from billing import gateway
from billing.expiry import is_card_expiring
from billing.models import Card, DunningCase, Invoice, Subscription
from saas.core.db import session_scope
from saas.core.models import User
from saas.dev.seed import seed_demo


def test_seed_gives_each_persona_its_billing_state_idempotently(settings, stripe_emulator, mail):
    now = datetime.now(UTC).replace(microsecond=0)  # the emulator, like Stripe, refuses expired cards
    seed_demo(settings, now)
    seed_demo(settings, now)
    with session_scope() as s:
        def of(local):
            return s.scalar(select(User).where(User.email == f"{local}@example.com"))

        ana, bruno, carla, dario, elena, fabio = (of(n) for n in ("ana", "bruno", "carla", "dario", "elena", "fabio"))
        ana_card = s.scalar(select(Card).where(Card.user_id == ana.id))
        bruno_card = s.scalar(select(Card).where(Card.user_id == bruno.id))
        # The cards' expiries make ana's expiring and bruno's healthy; flagging is the nightly job's.
        assert is_card_expiring(ana_card.exp_month, ana_card.exp_year, now.date(), 30)
        assert not is_card_expiring(bruno_card.exp_month, bruno_card.exp_year, now.date(), 30)
        assert not ana_card.is_expiring
        assert s.scalar(select(Subscription.status).where(Subscription.user_id == carla.id)) == "canceled"
        assert s.scalar(select(func.count()).select_from(Subscription).where(Subscription.user_id == dario.id)) == 0
        assert s.scalar(select(Subscription.status).where(Subscription.user_id == elena.id)) == "active"
        assert s.scalar(select(func.count()).select_from(Card)) == 5
        # fabio's renewal failed three days ago: its invoice is open, his subscription past_due, a case open
        assert s.scalars(select(Invoice.user_id).where(Invoice.status != "paid")).all() == [fabio.id]
        assert s.scalar(select(Subscription.status).where(Subscription.user_id == fabio.id)) == "past_due"
        case = s.scalar(select(DunningCase).where(DunningCase.user_id == fabio.id))
        assert (case.status, case.step) == ("open", 0)
        assert timedelta(days=3) < now - case.opened_at <= timedelta(days=3, hours=1)
        for user in (ana, bruno, carla, elena, fabio):
            ours = s.execute(select(Invoice.stripe_invoice_id, Invoice.period_start, Invoice.period_end)
                             .where(Invoice.user_id == user.id).order_by(Invoice.period_start)).all()
            theirs = sorted((i["id"], i["lines"]["data"][0]["period"]["start"], i["lines"]["data"][0]["period"]["end"])
                            for i in gateway.list_invoices(user.stripe_customer_id, limit=100))  # the service period
            assert [(i, int(a.timestamp()), int(b.timestamp())) for i, a, b in ours] == \
                sorted(theirs, key=lambda t: t[1]), user.email
            sub = s.scalar(select(Subscription).where(Subscription.user_id == user.id))
            remote = gateway.retrieve_subscription(sub.stripe_subscription_id)
            assert (remote["status"], remote["items"]["data"][0]["current_period_end"]) == \
                (sub.status, int(sub.current_period_end.timestamp()))
    assert mail.messages() == []
