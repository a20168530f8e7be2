"""A purged account's Stripe customer is deleted, and a deletion lost in a crash is found again."""
from datetime import UTC, datetime, timedelta

import pytest

from billing import gateway, tasks  # the module, not task proxies: collection must not finalize Celery
from saas.core.db import session_scope
from saas.core.models import User
from saas.core.queue import PENDING
from scheduled.dormancy import purge_user


@pytest.fixture
def purged_customer(stripe_emulator, make_user):
    user = make_user(email="dario@example.com", last_seen_at=datetime.now(UTC) - timedelta(days=250),
                     inactive_warned_at=datetime.now(UTC) - timedelta(days=35))
    customer = gateway.create_customer(user.id, user.email, "Dario")
    with session_scope() as s:
        s.get(User, user.id).stripe_customer_id = customer["id"]
    with session_scope() as s:
        assert purge_user(s, user.id, "admin:1", datetime.now(UTC))
        s.info.pop(PENDING)  # stand in for a process that dies before enqueueing the deletion
    return user.id, customer["id"]


def test_the_customer_id_is_kept_until_stripe_confirms(purged_customer):
    user_id, customer_id = purged_customer
    with session_scope() as s:
        assert s.get(User, user_id).stripe_customer_id == customer_id
    tasks.delete_stripe_customer.run(customer_id)
    with pytest.raises(gateway.NotFound):
        gateway.delete_customer(customer_id)
    with session_scope() as s:
        assert s.get(User, user_id).stripe_customer_id is None


def test_sweep_finds_a_deletion_lost_in_a_crash(purged_customer, celery_worker):
    import time

    user_id, customer_id = purged_customer
    assert tasks.sweep_stripe_deletions.run(older_than_minutes=0) == 1
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with session_scope() as s:
            if s.get(User, user_id).stripe_customer_id is None:
                break
        time.sleep(0.2)
    with session_scope() as s:
        assert s.get(User, user_id).stripe_customer_id is None
    assert tasks.sweep_stripe_deletions.run(older_than_minutes=0) == 0
