"""advance-dunning over DUNNING_SCHEDULE with a frozen clock: each step due exactly once, boundaries just
before/at/after, DST days, a case recovered between two slots, the final action, dry run."""
from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from billing import dunning
from billing.models import DunningCase, DunningStep, Invoice, Subscription
from saas.core.db import session_scope
from saas.core.mail import render_email
from saas.core.outbox import OutboxMessage
from saas.core.slots import latest_slot
from scheduled.runner import run_job
from tests.factories import add
from tests.helpers import utc

JOB = "advance-dunning"
HOUR = timedelta(hours=1)


@pytest.fixture
def make_case(make_user, subscription, invoice):
    """An account in dunning since `opened_at` (a past_due subscription, its open invoice, the case)."""

    def make(opened_at: datetime, amount: int = 2900, **case_fields) -> DunningCase:
        user = make_user()
        sub = subscription(user.id, status="past_due", amount_cents=amount)
        inv = invoice(user.id, status="open", amount_cents=amount, subscription_id=sub.id, first_failed_at=opened_at)
        return add(DunningCase, user_id=user.id, subscription_id=sub.id, invoice_id=inv.id, amount_cents=amount,
                   mrr_cents=amount, opened_at=opened_at, link_token=f"tok-{inv.id}", **case_fields)

    return make


def step_keys() -> list[str]:
    with session_scope() as s:
        return list(s.scalars(select(OutboxMessage.idempotency_key).where(OutboxMessage.kind == "dunning")
                              .order_by(OutboxMessage.id)))


def run_at(settings, moment: datetime, **kwargs):
    """Run the hourly slot that contains `moment`, with the clock frozen there."""
    slot = latest_slot(settings.schedules[JOB], settings.tz, moment)
    return run_job(JOB, settings, slot, now=moment, **kwargs)


def case_row(case_id: int) -> DunningCase:
    with session_scope() as s:
        row = s.get_one(DunningCase, case_id)
        s.expunge(row)
        return row


OPENED = utc(2026, 3, 2, 10, 30)  # a failure at 10:30 UTC (the settings' APP_TIMEZONE is UTC)


# (hours after the failure at 10:30, steps sent so far): slots just before, at and after each step's time
TIMELINE = [
    (3 * 24 - 1, []),            # day 3, 09:30: the 09:00 slot
    (3 * 24 - 0.5, []),          # day 3, 10:00 slot: 10:30 not reached yet
    (3 * 24 + 0.5, [1]),         # day 3, 11:00 slot: the first slot at or after 10:30
    (3 * 24 + 1.5, [1]),         # the next slot: nothing twice
    (7 * 24 - 0.5, [1]),
    (7 * 24 + 0.5, [1, 2]),
    (7 * 24 + 5, [1, 2]),
    (14 * 24 - 0.5, [1, 2]),
    (14 * 24 + 0.5, [1, 2, 3]),
    (30 * 24, [1, 2, 3]),
]


def test_each_step_is_due_once_at_its_boundary(settings, make_case):
    case = make_case(OPENED)
    on_the_hour = make_case(OPENED.replace(minute=0))  # due exactly on a slot: that slot takes it
    for hours, steps in TIMELINE:
        run_at(settings, OPENED + timedelta(hours=hours))
        keys = [k for k in step_keys() if k.startswith(f"dunning:{case.id}:")]
        assert keys == [f"dunning:{case.id}:{k}" for k in steps], hours
        assert case_row(case.id).step == (steps[-1] if steps else 0)
    assert [k for k in step_keys() if k.startswith(f"dunning:{on_the_hour.id}:")] == [
        f"dunning:{on_the_hour.id}:{k}" for k in (1, 2, 3)]


def test_a_step_due_exactly_on_a_slot_is_taken_by_that_slot(settings, make_case):
    case = make_case(OPENED.replace(minute=0))
    run_at(settings, OPENED.replace(minute=0) + timedelta(days=3) - timedelta(seconds=1))
    assert step_keys() == []
    run_at(settings, OPENED.replace(minute=0) + timedelta(days=3))
    assert step_keys() == [f"dunning:{case.id}:1"]


def test_a_case_that_missed_slots_gets_the_newest_step_only(settings, make_case):
    case = make_case(OPENED)
    run_at(settings, OPENED + timedelta(days=8))  # beat was down from day 0 to day 8
    assert step_keys() == [f"dunning:{case.id}:2"]
    run_at(settings, OPENED + timedelta(days=8) + HOUR)
    assert step_keys() == [f"dunning:{case.id}:2"]


def test_the_same_slot_twice_and_a_rerun_send_nothing_twice(settings, make_case):
    case = make_case(OPENED)
    at = OPENED + timedelta(days=3, hours=1)
    assert run_at(settings, at).emails_queued == 1
    assert run_at(settings, at) is None  # the slot is claimed
    slot = latest_slot(settings.schedules[JOB], settings.tz, at)
    run_job(JOB, settings, slot + HOUR, now=at + HOUR)
    assert step_keys() == [f"dunning:{case.id}:1"]


def test_a_case_recovered_between_two_slots_gets_no_step(settings, make_case):
    case = make_case(OPENED)
    with session_scope() as s:  # paid at day 3, 10:45, between the 10:00 and 11:00 slots
        invoice = s.get_one(Invoice, case.invoice_id)
        invoice.status = "paid"
        dunning.invoice_paid(s, invoice, OPENED + timedelta(days=3, minutes=15))
    run_at(settings, OPENED + timedelta(days=3, hours=1))
    assert step_keys() == []
    row = case_row(case.id)
    assert (row.status, row.cause, row.step) == ("recovered", "automatic_retry", 0)
    with session_scope() as s:
        assert s.scalars(select(OutboxMessage.kind)).all() == ["dunning-recovered"]


@pytest.mark.parametrize("zone, opened_local, due_local, slot_utc", [
    # spring forward (Europe/Berlin, 29 March 2026: 02:00 -> 03:00): 3 days after 27 March 10:30, 72 - 1 hours
    ("Europe/Berlin", datetime(2026, 3, 27, 10, 30), datetime(2026, 3, 30, 10, 30), utc(2026, 3, 30, 9)),
    # fall back (America/New_York, 1 November 2026): the same wall-clock time, 72 + 1 hours
    ("America/New_York", datetime(2026, 10, 30, 9, 15), datetime(2026, 11, 2, 9, 15), utc(2026, 11, 2, 15)),
    # due at 01:30 on the fall-back day, its first occurrence (05:30 UTC); the hourly job has no second
    # 01:00 slot (a repeated time runs once), so the 02:00 EST slot takes it
    ("America/New_York", datetime(2026, 10, 29, 1, 30), datetime(2026, 11, 1, 1, 30), utc(2026, 11, 1, 7)),
])
def test_dst_days_keep_the_wall_clock_time(with_settings, make_case, zone, opened_local, due_local, slot_utc):
    settings = with_settings(app_timezone=zone)
    tz = ZoneInfo(zone)
    opened = opened_local.replace(tzinfo=tz)
    due = due_local.replace(tzinfo=tz).astimezone(UTC)  # fold=0: a repeated 01:30 is its first occurrence
    assert dunning.step_due_at(opened, 3, tz) == due
    case = make_case(opened)
    run_at(settings, due - timedelta(minutes=1))
    assert step_keys() == []
    run_at(settings, slot_utc - timedelta(seconds=1))
    assert step_keys() == []
    assert run_at(settings, slot_utc).slot == slot_utc
    assert step_keys() == [f"dunning:{case.id}:1"]


def test_a_step_time_inside_the_spring_gap_is_due_just_after_it():
    tz = ZoneInfo("Europe/Berlin")
    opened = datetime(2026, 3, 26, 2, 30, tzinfo=tz)  # 3 days later, 02:30 does not exist on 29 March
    assert dunning.step_due_at(opened, 3, tz) == datetime(2026, 3, 29, 3, 30, tzinfo=tz).astimezone(UTC)


@pytest.mark.parametrize("action, status", [("cancel", "lost"), ("mark_unpaid", "lost"), ("keep", "open")])
def test_the_last_step_sends_the_last_email_and_queues_the_final_action(with_settings, make_case, sent,
                                                                         action, status):
    settings = with_settings(dunning_final_action=action)
    case = make_case(OPENED)
    run = run_at(settings, OPENED + timedelta(days=14, hours=1))
    assert run.emails_queued == 1
    row = case_row(case.id)
    assert (row.status, row.step, row.final_action) == (status, 3, action)
    finals = [kwargs for name, kwargs in sent if name == "billing.tasks.apply_dunning_final_action"]
    assert finals == ([{"case_ids": [case.id]}] if action != "keep" else [])
    with session_scope() as s:
        message = s.scalar(select(OutboxMessage).where(OutboxMessage.idempotency_key == f"dunning:{case.id}:3"))
        steps = s.scalars(select(DunningStep.step).where(DunningStep.case_id == case.id)).all()
        text = render_email(message.template, message.context)
    assert message.template == "dunning_final" and steps == [3]
    assert "29.00 USD" in text.text
    assert ("cancelled" in text.text) is (action == "cancel")
    run_at(settings, OPENED + timedelta(days=15))
    assert step_keys() == [f"dunning:{case.id}:3"]  # a kept case stays open, past its last step


def test_reminder_email_says_amount_what_next_and_when_with_the_link(settings, make_case):
    case = make_case(OPENED)
    run_at(settings, OPENED + timedelta(days=3, hours=1))
    with session_scope() as s:
        message = s.scalar(select(OutboxMessage).where(OutboxMessage.kind == "dunning"))
        text = render_email(message.template, message.context)
    assert "29.00 USD" in text.text
    assert "9 March 2026" in text.text and "16 March 2026" in text.text  # the next reminder, the cancellation
    assert f"{settings.app_url}/billing/recover/tok-{case.invoice_id}" in text.text
    assert "Reminder" in text.subject
    run_at(settings, OPENED + timedelta(days=7, hours=1))
    with session_scope() as s:
        second = s.scalar(select(OutboxMessage).where(OutboxMessage.idempotency_key == f"dunning:{case.id}:2"))
        subject = render_email(second.template, second.context).subject
    assert "Action needed" in subject and "cancelled on 16 March 2026" in subject  # the tone escalates


def test_paused_and_written_off_cases_are_not_advanced(settings, make_case):
    paused = make_case(OPENED, status="paused")
    done = make_case(OPENED, status="written_off", closed_at=OPENED + HOUR)
    run_at(settings, OPENED + timedelta(days=3, hours=1))
    assert step_keys() == []
    with session_scope() as s:
        dunning.resume(s, s.get_one(DunningCase, paused.id))
    run_at(settings, OPENED + timedelta(days=3, hours=2))
    assert step_keys() == [f"dunning:{paused.id}:1"]
    assert case_row(done.id).step == 0


def test_dry_run_changes_nothing_and_lists_the_cases(settings, make_case):
    case = make_case(OPENED)
    run = run_at(settings, OPENED + timedelta(days=3, hours=1), dry_run=True)
    assert run.details["would_take_step_1"] == [case.id]
    assert step_keys() == [] and case_row(case.id).step == 0


def test_batches_resume_where_a_killed_run_stopped(settings, make_case, monkeypatch):
    import scheduled.ledger

    monkeypatch.setattr(scheduled.ledger, "BATCH_SIZE", 2)
    cases = [make_case(OPENED + timedelta(minutes=i)) for i in range(5)]

    def die_after_first(ctx):
        if ctx.changed >= 2:
            raise RuntimeError("killed")

    at = OPENED + timedelta(days=3, hours=1)
    assert run_at(settings, at, after_batch=die_after_first).status == "failed"
    assert len(step_keys()) == 2
    assert run_at(settings, at).status == "succeeded"  # the failed run is taken over at its cursor
    assert sorted(step_keys()) == sorted(f"dunning:{c.id}:1" for c in cases)


def test_sync_cases_repairs_a_lost_webhook(make_user, subscription, invoice):
    user = make_user()
    sub = subscription(user.id, status="past_due")
    inv = invoice(user.id, status="open", subscription_id=sub.id, first_failed_at=OPENED)
    with session_scope() as s:
        assert dunning.sync_cases(s, [user.id]) == {"opened": 1, "recovered": 0, "closed": 0}
        assert dunning.sync_cases(s, [user.id]) == {"opened": 0, "recovered": 0, "closed": 0}
        s.get_one(Invoice, inv.id).status = "paid"
        assert dunning.sync_cases(s, [user.id]) == {"opened": 0, "recovered": 1, "closed": 0}
        case = s.scalar(select(DunningCase).where(DunningCase.invoice_id == inv.id))
        assert (case.status, case.cause) == ("recovered", "automatic_retry")
        assert s.get_one(Subscription, sub.id).status == "past_due"  # sync_cases reads the rows, never writes them


def test_the_schedule_setting_is_validated():
    from saas.core.settings import Settings, SettingsError

    base = {"DATABASE_URL": "postgresql://x/y", "REDIS_URL": "redis://x", "SMTP_URL": "smtp://x", "SAAS_ENV": "dev"}
    assert Settings.from_env({**base}).dunning_schedule == (0, 3, 7, 14)
    assert Settings.from_env({**base, "DUNNING_SCHEDULE": "0,1,2"}).dunning_schedule == (0, 1, 2)
    for bad in ("3,7", "0,7,3", "0", "0,a", "0,3,3", "0,400"):
        with pytest.raises(SettingsError, match="DUNNING_SCHEDULE"):
            Settings.from_env({**base, "DUNNING_SCHEDULE": bad})
    with pytest.raises(SettingsError, match="DUNNING_FINAL_ACTION"):
        Settings.from_env({**base, "DUNNING_FINAL_ACTION": "delete"})
    assert dataclasses.replace(Settings.from_env(base)).dunning_final_action == "cancel"


def test_the_finance_funnel_counts_outcomes_causes_steps_and_recovered_mrr(make_case):
    from billing.finance import dunning_funnel, to_csv

    day = OPENED + timedelta(days=2)
    make_case(OPENED, status="recovered", cause="pay_now", step=1, closed_at=day)
    make_case(OPENED, amount=1000, status="recovered", cause="card_updated", step=0, closed_at=day)
    make_case(OPENED, status="lost", step=3, closed_at=day)
    make_case(OPENED, status="written_off", closed_at=day)
    make_case(OPENED, status="closed", closed_at=day)  # ended at Stripe: neither won nor lost
    make_case(OPENED)  # still open
    make_case(OPENED - timedelta(days=40), status="recovered", cause="pay_now", closed_at=OPENED - timedelta(days=30))
    with session_scope() as s:
        funnel = dunning_funnel(s, OPENED - timedelta(hours=1), OPENED + timedelta(days=3))
    assert funnel == {
        "opened": 6, "recovered": 2, "lost": 1, "written_off": 1,
        "recovered_by_cause": {"pay_now": 1, "card_updated": 1, "automatic_retry": 0, "authentication": 0},
        "recovered_by_step": {"0": 1, "1": 1}, "recovered_mrr_cents": 3900, "recovery_rate": 0.5}
    csv = to_csv("daily", {"period_start": "a", "period_end": "b", "currencies": {}, "dunning": funnel,
                           **dict.fromkeys(("active_subscriptions", "trialing_subscriptions", "new_subscriptions",
                                            "cancelled_subscriptions", "expiring_cards", "reminders_sent",
                                            "accounts_purged", "purges_pending"), 0)})
    assert "dunning_recovered_by_card_updated,,1" in csv and "dunning_recovery_rate,,0.5" in csv


@pytest.mark.parametrize("final_action", ["keep", "mark_unpaid"])
def test_an_account_in_dunning_is_never_purged(make_user, subscription, invoice, ctx, session, sent, final_action):
    """In dunning (past_due), and after a final action that leaves the debt (unpaid, the invoice open or
    uncollectible): the purge's protections hold, as today."""
    from scheduled.dormancy import protection_reason
    from scheduled.jobs import purge_dormant_accounts

    now = utc(2025, 6, 1)
    dormant = {"last_seen_at": utc(2024, 10, 1), "inactive_warned_at": utc(2025, 4, 2), "purge_due_at": utc(2025, 5, 2)}
    fabio = make_user(**dormant)
    status = "past_due" if final_action == "keep" else "unpaid"
    sub = subscription(fabio.id, status=status)
    inv = invoice(fabio.id, status="open" if final_action == "keep" else "uncollectible", subscription_id=sub.id,
                  first_failed_at=utc(2025, 5, 1))
    add(DunningCase, user_id=fabio.id, subscription_id=sub.id, invoice_id=inv.id, amount_cents=1000, mrr_cents=1000,
        opened_at=utc(2025, 5, 1), link_token="tok-purge", step=3,
        status="open" if final_action == "keep" else "lost", final_action=final_action)
    assert protection_reason(session, fabio.id) in ("subscription past_due", "unpaid invoice")
    purge_dormant_accounts(session, ctx("purge-dormant-accounts", now))
    session.commit()
    with session_scope() as s:
        assert s.get(type(fabio), fabio.id).purged_at is None
    assert sent == []
