"""Links in the emails the jobs send lead to real pages."""
import re
from datetime import UTC, datetime
from urllib.parse import urlsplit

from sqlalchemy import select

from saas.core.db import session_scope
from saas.core.outbox import OutboxMessage
from scheduled.runner import run_job


def test_card_expiring_email_links_to_the_update_card_page(settings, app, make_user, today):
    from billing.models import Card

    user = make_user(email="ana@example.com")
    with session_scope() as s:
        s.add(Card(user_id=user.id, stripe_payment_method_id=f"pm_link_{user.id}", brand="visa", last4="4242",
                   exp_month=today.month, exp_year=today.year))
    run_job("flag-expiring-cards", settings, now=datetime.now(UTC))
    with session_scope() as s:
        body = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "card-expiring")).one().render().text
    [link] = re.findall(r"https?://\S+", body)
    with app.test_request_context():
        from flask import url_for

        assert urlsplit(link).path == url_for("billing.update_card")
