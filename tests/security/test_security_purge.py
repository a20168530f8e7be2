"""Purge safety as a property: over thousands of generated accounts, protected ones are never touched
and every purged one has exactly one audit row without personal data."""
from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, insert, select

from billing.models import INVOICE_STATUSES, SUBSCRIPTION_STATUSES, Card, Invoice, Subscription
from saas.core.db import session_scope
from saas.core.models import AuditLog, User
from scheduled.jobs.purge_dormant_accounts import purge_dormant_accounts
from scheduled.ledger import RunContext
from tests.security.fuzzing import fuzz, tried

NOW = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)
DAY = timedelta(days=1)
ACCOUNTS_PER_EXAMPLE = 50
_serial = itertools.count(1)


def _moment(offset: timedelta | None) -> datetime | None:
    return None if offset is None else NOW + offset


@st.composite
def account_states(draw) -> dict:
    """One account: the columns and billing rows that decide the purge, with values on every boundary."""
    warned = draw(st.one_of(st.none(), st.sampled_from([-400 * DAY, -31 * DAY, -30 * DAY, -DAY, timedelta(0)])))
    # Last seen before, exactly at, or after the warning (a sign-in since the warning keeps the account).
    seen_after_warning = draw(st.sampled_from([-200 * DAY, -timedelta(seconds=1), timedelta(0),
                                               timedelta(seconds=1), 10 * DAY]))
    seen = (warned if warned is not None else -200 * DAY) + seen_after_warning
    n = next(_serial)
    return {
        "role": draw(st.sampled_from(["subscriber"] * 4 + ["admin", "finance"])),
        "subscriptions": draw(st.lists(st.sampled_from(SUBSCRIPTION_STATUSES), max_size=2)),
        "invoices": draw(st.lists(st.sampled_from(INVOICE_STATUSES), max_size=2)),
        "cards": draw(st.integers(0, 1)),
        "user": {
            "email": f"state{n}@example.com", "name": f"Person {n}", "password_hash": "x", "role": None,
            "session_token": f"tok-state-{n}",
            "stripe_customer_id": draw(st.sampled_from([None, f"cus_state_{n}"])),
            "credit_balance_cents": draw(st.sampled_from([-500, 0, 0, 1, 2500])),
            "purge_exempt_reason": draw(st.sampled_from([None, None, None, "enterprise pilot"])),
            "last_seen_at": _moment(seen),
            "inactive_warned_at": _moment(warned),
            # Due in the past, exactly now, or later; or no date at all.
            "purge_due_at": _moment(draw(st.one_of(st.none(), st.sampled_from(
                [-30 * DAY, -timedelta(seconds=1), timedelta(0), timedelta(seconds=1), 30 * DAY])))),
            "purge_approved_at": _moment(draw(st.sampled_from([None, None, -DAY]))),
            "purged_at": _moment(draw(st.sampled_from([None] * 9 + [-10 * DAY]))),
        },
    }


def protections(state: dict) -> list[str]:
    """The reasons an account is never purged (scheduled.dormancy) (and the states where it is not due yet)."""
    user, reasons = state["user"], []
    if state["role"] != "subscriber":
        reasons.append(f"role {state['role']}")
    reasons += [f"subscription {s}" for s in state["subscriptions"] if s in ("active", "trialing", "past_due")]
    reasons += [f"unpaid invoice {s}" for s in state["invoices"] if s in ("open", "uncollectible")]
    if user["credit_balance_cents"] > 0:
        reasons.append("credit balance")
    if user["purge_exempt_reason"]:
        reasons.append("exempted by an admin")
    if user["purged_at"] is not None:
        reasons.append("already purged")
    if user["inactive_warned_at"] is None:
        reasons.append("never warned")
    elif user["last_seen_at"] >= user["inactive_warned_at"]:
        reasons.append("signed in since the warning")
    due = user["purge_due_at"] is not None and user["purge_due_at"] <= NOW
    if not due and user["purge_approved_at"] is None:
        reasons.append("not due and not approved")
    return reasons


def insert_accounts(session, states: list[dict]) -> list[int]:
    """All the accounts of one example in four statements."""
    ids = session.scalars(insert(User).returning(User.id, sort_by_parameter_order=True),
                          [{**s["user"], "role": s["role"]} for s in states]).all()
    subs = [{"user_id": i, "stripe_subscription_id": f"sub_state_{i}_{k}", "plan": "pro", "status": status,
             "amount_cents": 1000} for i, s in zip(ids, states) for k, status in enumerate(s["subscriptions"])]
    invoices = [{"user_id": i, "stripe_invoice_id": f"in_state_{i}_{k}", "status": status, "amount_cents": 1000,
                 "customer_email": s["user"]["email"], "customer_name": s["user"]["name"]}
                for i, s in zip(ids, states) for k, status in enumerate(s["invoices"])]
    cards = [{"user_id": i, "stripe_payment_method_id": f"pm_state_{i}", "brand": "visa", "last4": "4242",
              "exp_month": 1, "exp_year": 2030} for i, s in zip(ids, states) if s["cards"]]
    for model, rows in ((Subscription, subs), (Invoice, invoices), (Card, cards)):
        if rows:
            session.execute(insert(model), rows)
    return list(ids)


def snapshot(session, ids: list[int]) -> dict[int, tuple]:
    """Each account's row, its cards and its invoices' personal fields."""
    users = {u.id: tuple(getattr(u, c.key) for c in User.__table__.columns)
             for u in session.scalars(select(User).where(User.id.in_(ids)))}
    cards = dict(session.execute(select(Card.user_id, func.count()).where(Card.user_id.in_(ids))
                                 .group_by(Card.user_id)).all())
    invoices = {}
    for user_id, email, name in session.execute(select(Invoice.user_id, Invoice.customer_email, Invoice.customer_name)
                                                .where(Invoice.user_id.in_(ids)).order_by(Invoice.id)):
        invoices.setdefault(user_id, []).append((email, name))
    return {i: (users[i], cards.get(i, 0), invoices.get(i, [])) for i in ids}


def test_purge_never_touches_a_protected_account_and_audits_every_purge(settings, services, sent):
    @fuzz(60)
    @given(states=st.lists(account_states(), min_size=ACCOUNTS_PER_EXAMPLE, max_size=ACCOUNTS_PER_EXAMPLE),
           batch_size=st.sampled_from([7, 50, 1000]))
    def check(states, batch_size):
        tried("purge: generated examples")
        with session_scope() as s:
            ids = insert_accounts(s, states)
        state_of = dict(zip(ids, states))
        for _ in ids:
            tried("purge: generated accounts")
        expected = {i for i in ids if not protections(state_of[i])}

        with session_scope() as s:
            before = snapshot(s, ids)
            dry = RunContext(job="purge-dormant-accounts", slot=NOW, settings=settings, now=NOW, dry_run=True,
                             batch_size=batch_size)
            purge_dormant_accounts(s, dry)
        assert {row["user_id"] for row in dry.details.get("would_purge", [])} & set(ids) == expected
        with session_scope() as s:
            assert snapshot(s, ids) == before  # a dry run changes nothing

        with session_scope() as s:
            purge_dormant_accounts(s, RunContext(job="purge-dormant-accounts", slot=NOW, settings=settings, now=NOW,
                                                 batch_size=batch_size))
        with session_scope() as s:
            after = snapshot(s, ids)
            audits = s.execute(select(AuditLog.subject_id, AuditLog.action, AuditLog.details)
                               .where(AuditLog.subject_id.in_([str(i) for i in ids]))).all()
        changed = {i for i in ids if after[i] != before[i]}
        for i in changed - expected:
            raise AssertionError(f"account {i} was changed though {protections(state_of[i])}")
        assert changed == expected  # and every due, unprotected account was purged
        assert sorted(int(a.subject_id) for a in audits) == sorted(expected)  # exactly one audit row each
        for audit in audits:
            assert audit.action == "account.purged"
            state = state_of[int(audit.subject_id)]["user"]
            assert state["email"] not in str(audit.details) and state["name"] not in str(audit.details)
        for i in expected:
            user, cards, invoices = after[i]
            assert cards == 0 and all(inv == (None, None) for inv in invoices)

    check()


def test_a_queued_admin_purge_respects_a_later_sign_in_or_exemption(make_user, sent):
    """Approve, then the account signs in (or is exempted) before the worker runs: nothing is purged."""
    from saas.core.accounts import record_sign_in
    from scheduled import tasks

    warned = dict(last_seen_at=NOW - 200 * DAY, inactive_warned_at=NOW - 35 * DAY, purge_due_at=NOW - 5 * DAY,
                  purge_approved_at=NOW - DAY)
    came_back = make_user(**warned)
    exempted = make_user(**warned)
    approved = make_user(**warned)
    with session_scope() as s:
        record_sign_in(s, s.get(User, came_back.id))
        s.get(User, exempted.id).purge_exempt_reason = "asked by phone"
    assert tasks.purge_account(came_back.id, "admin:1") is False
    assert tasks.purge_account(exempted.id, "admin:1") is False
    assert tasks.purge_account(approved.id, "admin:1") is True
    with session_scope() as s:
        assert s.get(User, came_back.id).purged_at is None and s.get(User, exempted.id).purged_at is None
        assert s.get(User, approved.id).purged_at is not None
