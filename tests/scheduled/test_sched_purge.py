"""purge-dormant-accounts: every protection, the anonymisation, the audit row, dry run, purge_user."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from billing.models import Card, Invoice
from saas.core.db import session_scope
from saas.core.models import AuditLog, User
from scheduled.dormancy import protection_reason, purge_user
from scheduled.jobs import purge_dormant_accounts

NOW = datetime(2025, 6, 1, tzinfo=UTC)
DORMANT = {"last_seen_at": datetime(2024, 10, 1, tzinfo=UTC),
           "inactive_warned_at": datetime(2025, 4, 2, tzinfo=UTC),
           "purge_due_at": datetime(2025, 5, 2, tzinfo=UTC)}


def test_purges_dormant_account_and_keeps_anonymised_invoices(make_user, card, invoice, ctx, session, sent):
    dario = make_user(email="dario@example.com", name="Dario", stripe_customer_id="cus_dario", **DORMANT)
    card(dario.id, 1, 2030)
    invoice(dario.id, customer_email="dario@example.com", customer_name="Dario")
    token = dario.session_token
    purge_dormant_accounts(session, ctx("purge-dormant-accounts", NOW))
    with session_scope() as s:
        user = s.get(User, dario.id)
        assert (user.email, user.name, user.password_hash) == (f"purged-{dario.id}@invalid", "", None)
        assert user.session_token != token and user.purged_at == NOW
        assert s.scalar(select(func.count()).select_from(Card)) == 0
        inv = s.scalars(select(Invoice)).one()
        assert (inv.customer_email, inv.customer_name, inv.user_id) == (None, None, dario.id)
        audit = s.scalars(select(AuditLog)).one()
        assert (audit.actor, audit.action, audit.subject_id) == ("job:purge-dormant-accounts", "account.purged", str(dario.id))
        assert "dario" not in str(audit.details).lower()
    assert sent == [("billing.tasks.delete_stripe_customer", {"customer_id": "cus_dario"})]


@pytest.mark.parametrize("protect, reason", [
    ("active", "subscription active"), ("trialing", "subscription trialing"), ("past_due", "subscription past_due"),
    ("open", "unpaid invoice"), ("uncollectible", "unpaid invoice"), ("credit", "credit balance"),
])
def test_every_protection_blocks_purge(make_user, subscription, invoice, ctx, session, sent, protect, reason):
    elena = make_user(credit_balance_cents=500 if protect == "credit" else 0, **DORMANT)
    if protect in ("active", "trialing", "past_due"):
        subscription(elena.id, status=protect)
    elif protect in ("open", "uncollectible"):
        invoice(elena.id, status=protect)
    assert protection_reason(session, elena.id) == reason
    purge_dormant_accounts(session, ctx("purge-dormant-accounts", NOW))
    assert purge_user(session, elena.id, "admin:1", NOW) is False
    session.commit()
    assert session.get(User, elena.id).purged_at is None and sent == []


@pytest.mark.parametrize("columns", [
    {"purge_due_at": datetime(2025, 6, 2, tzinfo=UTC)},            # not due yet
    {"last_seen_at": datetime(2025, 4, 3, tzinfo=UTC)},            # active since the warning
    {"purge_exempt_reason": "enterprise pilot"},                            # exempted by an admin
    {"inactive_warned_at": None, "purge_due_at": None},                     # never warned
])
def test_not_due_active_or_exempt_is_kept(make_user, ctx, session, sent, columns):
    user = make_user(**{**DORMANT, **columns})
    purge_dormant_accounts(session, ctx("purge-dormant-accounts", NOW))
    assert session.get(User, user.id).purged_at is None


def test_cancelled_subscription_and_paid_invoice_do_not_protect(make_user, subscription, invoice, session):
    user = make_user(**DORMANT)
    subscription(user.id, status="canceled")
    invoice(user.id, status="paid")
    assert protection_reason(session, user.id) is None


def test_admin_approval_purges_before_the_due_date(make_user, ctx, session, sent):
    user = make_user(**{**DORMANT, "purge_due_at": datetime(2025, 7, 1, tzinfo=UTC),
                        "purge_approved_at": datetime(2025, 5, 30, tzinfo=UTC)})
    purge_dormant_accounts(session, ctx("purge-dormant-accounts", NOW))
    assert session.get(User, user.id).purged_at == NOW


def test_dry_run_lists_and_changes_nothing(settings, make_user, card, ctx, session, sent):
    from scheduled.runner import run_job

    dario = make_user(**DORMANT)
    card(dario.id, 1, 2030)
    run = run_job("purge-dormant-accounts", settings, NOW, dry_run=True, now=NOW)
    assert run.dry_run and run.status == "succeeded" and run.changed == 1
    assert run.details["would_purge"][0]["user_id"] == dario.id
    with session_scope() as s:
        assert s.get(User, dario.id).purged_at is None
        assert s.scalar(select(func.count()).select_from(Card)) == 1
        assert s.scalar(select(func.count()).select_from(AuditLog)) == 0
    assert sent == []
    # A dry run never blocks the real run of the same slot.
    assert run_job("purge-dormant-accounts", settings, NOW, now=NOW).changed == 1


def test_purge_user_for_the_admin_action(make_user, session, sent):
    user = make_user(stripe_customer_id="cus_x", **DORMANT)
    assert purge_user(session, user.id, "admin:7", NOW) is True
    session.commit()
    assert sent == [("billing.tasks.delete_stripe_customer", {"customer_id": "cus_x"})]
    assert session.scalars(select(AuditLog.actor)).one() == "admin:7"
    assert purge_user(session, user.id, "admin:7", NOW) is False  # already purged


def test_purge_removes_the_contents_of_the_accounts_emails(make_user, ctx, session, sent):
    from saas.core.outbox import OutboxMessage, queue_email

    dario = make_user(email="dario@example.com", name="Dario", **DORMANT)
    with session_scope() as s:
        for key, status in (("sent", "sent"), ("waiting", "pending")):
            queue_email(s, key=key, kind="inactive-warning", to="dario@example.com", template="inactive_warning",
                        user_id=dario.id, context={"name": "Dario", "last_seen_on": "2024-10-01",
                                                   "purge_on": "2025-05-02", "login_url": "https://x/login"})
            s.execute(OutboxMessage.__table__.update().where(OutboxMessage.idempotency_key == key).values(status=status))
    purge_dormant_accounts(session, ctx("purge-dormant-accounts", NOW))
    with session_scope() as s:
        rows = {r.idempotency_key: r for r in s.scalars(select(OutboxMessage))}
        for row in rows.values():
            email = row.render()
            assert row.to_addr == f"purged-{dario.id}@invalid" and "dario" not in str(row.context).lower()
            assert (email.subject, email.text) == ("[removed]", "[removed: account purged]")
        assert (rows["sent"].status, rows["waiting"].status, rows["waiting"].last_error) == ("sent", "failed", "account purged")
