"""Slot dispatch: several schedulers on one fake clock, catch-up after an outage, skipped slots, the watchdog."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from saas.core.db import session_scope
from scheduled.beat import dispatch_due
from scheduled.models import JobRun
from scheduled.runner import run_job
from tests.helpers import utc


def runs(job: str | None = None) -> list[JobRun]:
    with session_scope() as s:
        stmt = select(JobRun).order_by(JobRun.slot)
        if job:
            stmt = stmt.where(JobRun.job == job)
        return list(s.scalars(stmt))


def test_three_schedulers_one_clock_one_run_per_slot(with_settings, redis_client):
    settings = with_settings(schedules={"flag-expiring-cards": "0 0 * * *", "finance-summary": "0 6 * * *;0 6 1 * *"})
    sent: list[tuple[str, str]] = []
    for job, slot in (("flag-expiring-cards", utc(2025, 1, 28)), ("finance-summary", utc(2025, 1, 28, 6))):
        run_job(job, settings, slot, now=slot)  # each job has run before: this is a restart, not a fresh install
    clock = utc(2025, 1, 30, 23, 0)

    def deliver(job: str, slot: str) -> None:  # a worker runs what beat sends, at once
        sent.append((job, slot))
        run_job(job, settings, datetime.fromisoformat(slot), now=clock)

    while clock < utc(2025, 2, 2, 12):
        for _instance in range(3):
            with session_scope() as s:
                dispatch_due(clock, redis_client, s, settings, send=deliver)
        clock += timedelta(minutes=20)
    assert len(sent) == len(set(sent))
    expected = {("flag-expiring-cards", utc(2025, 1, d).isoformat()) for d in (29, 30, 31)} \
        | {("flag-expiring-cards", utc(2025, 2, d).isoformat()) for d in (1, 2)} \
        | {("finance-summary", utc(2025, 1, d, 6).isoformat()) for d in (29, 30, 31)} \
        | {("finance-summary", utc(2025, 2, d, 6).isoformat()) for d in (1, 2)}
    # The first tick catches up what is within the 36 h window; nothing older is sent.
    assert set(sent) <= expected and ("finance-summary", utc(2025, 2, 1, 6).isoformat()) in sent
    for job, slot in sent:  # every message delivered a second time: still one run each
        run_job(job, settings, datetime.fromisoformat(slot), now=utc(2025, 2, 2, 12))
    assert len([r for r in runs() if r.status == "succeeded"]) == len(set(sent)) + 2


def test_claimed_slot_is_not_sent_again_and_oldest_goes_first(with_settings, redis_client):
    settings = with_settings(schedules={"remind-inactive-users": "0 */6 * * *"})
    run_job("remind-inactive-users", settings, utc(2025, 2, 27, 6), now=utc(2025, 2, 27, 6))  # ran before beat went down
    sent = []
    with session_scope() as s:
        dispatch_due(utc(2025, 3, 2, 0, 5), redis_client, s, settings, send=lambda j, slot: sent.append(slot))
    assert sent == sorted(sent) and len(sent) == 6  # 36 h of six-hourly slots
    redis_client.flushdb()  # the SET NX keys expire; the ledger alone still stops a resend
    for slot in sent:
        run_job("remind-inactive-users", settings, datetime.fromisoformat(slot), now=utc(2025, 3, 2, 0, 6))
    again = []
    with session_scope() as s:
        dispatch_due(utc(2025, 3, 2, 0, 10), redis_client, s, settings, send=lambda j, slot: again.append(slot))
    assert again == []


def test_fresh_install_starts_at_the_next_slot(with_settings, redis_client):
    settings = with_settings(schedules={"purge-dormant-accounts": "0 0 * * *"})
    sent = []
    now = utc(2025, 6, 4, 11)
    with session_scope() as s:
        dispatch_due(now, redis_client, s, settings, send=lambda j, slot: sent.append(slot))
        dispatch_due(now, redis_client, s, settings, send=lambda j, slot: sent.append(slot))
    assert sent == []  # deploying does not run last night's purge
    rows = runs("purge-dormant-accounts")
    assert [(r.slot, r.status) for r in rows] == [(utc(2025, 6, 3), "skipped"), (utc(2025, 6, 4), "skipped")]
    assert all("first run" in r.error for r in rows)
    with session_scope() as s:
        dispatch_due(utc(2025, 6, 5, 0, 1), redis_client, s, settings, send=lambda j, slot: sent.append(slot))
    assert sent == [utc(2025, 6, 5).isoformat()]


def test_catch_up_after_three_days_down_and_skipped_slots(with_settings, redis_client):
    settings = with_settings(schedules={"flag-expiring-cards": "0 0 * * *"})
    run_job("flag-expiring-cards", settings, utc(2025, 6, 1), now=utc(2025, 6, 1, 0, 1))
    sent = []
    now = utc(2025, 6, 4, 11)  # every beat down since June 1st; the window reaches June 2, 23:00
    with session_scope() as s:
        dispatch_due(now, redis_client, s, settings, send=lambda j, slot: sent.append(slot))
    # 36 h window: June 3 and June 4 midnights run, oldest first; June 2 is recorded as skipped.
    assert sent == [utc(2025, 6, 3).isoformat(), utc(2025, 6, 4).isoformat()]
    rows = runs("flag-expiring-cards")
    assert [(r.slot, r.status) for r in rows] == [(utc(2025, 6, 1), "succeeded"), (utc(2025, 6, 2), "skipped")]
    assert "catch-up window" in rows[1].error
    for slot in sent:
        run_job("flag-expiring-cards", settings, datetime.fromisoformat(slot), now=now)
    with session_scope() as s:
        assert dispatch_due(now + timedelta(minutes=1), redis_client, s, settings, send=lambda *a: None) == []
    assert [r.status for r in runs("flag-expiring-cards")] == ["succeeded", "skipped", "succeeded", "succeeded"]


def test_watchdog_emails_admins_once_per_missed_slot(with_settings, outbox_keys):
    from scheduled.watchdog import check_missed_slots

    settings = with_settings(schedules={"purge-dormant-accounts": "0 0 * * *"})
    with session_scope() as s:
        assert check_missed_slots(s, utc(2025, 6, 4, 0, 9), settings) == [("purge-dormant-accounts", utc(2025, 6, 3))]
    with session_scope() as s:  # the slot of 00:00 is only 9 minutes late: not yet reported
        assert check_missed_slots(s, utc(2025, 6, 4, 0, 9), settings) == []
    with session_scope() as s:
        assert check_missed_slots(s, utc(2025, 6, 4, 0, 11), settings) == [("purge-dormant-accounts", utc(2025, 6, 4))]
    assert outbox_keys("missed-slot") == [f"missed-slot:purge-dormant-accounts:{utc(2025, 6, 3).isoformat()}",
                                          f"missed-slot:purge-dormant-accounts:{utc(2025, 6, 4).isoformat()}"]


def test_a_dead_runs_slot_is_sent_again_and_taken_over(with_settings, redis_client):
    from scheduled import ledger

    settings = with_settings(schedules={"remind-inactive-users": "0 0 * * *"})
    run_job("remind-inactive-users", settings, utc(2025, 6, 2), now=utc(2025, 6, 2, 0, 1))  # it has run before
    with session_scope() as s:  # tonight's worker was SIGKILLed mid-run: its row stays `running`
        ledger.claim(s, "remind-inactive-users", utc(2025, 6, 3), utc(2025, 6, 3, 0, 1))
    sent = []
    with session_scope() as s:
        dispatch_due(utc(2025, 6, 3, 0, 5), redis_client, s, settings, send=lambda j, slot: sent.append(slot))
    assert sent == []  # its heartbeat is fresh: the run may still be alive
    with session_scope() as s:
        dispatch_due(utc(2025, 6, 3, 0, 30), redis_client, s, settings, send=lambda j, slot: sent.append(slot))
    assert sent == [utc(2025, 6, 3).isoformat()]
    run = run_job("remind-inactive-users", settings, utc(2025, 6, 3), now=utc(2025, 6, 3, 0, 31))
    assert run.status == "succeeded" and run.attempts == 2


def test_a_dead_runs_slot_is_resent_though_its_first_send_is_marked(with_settings, redis_client):
    """The first attempt's sent-marker (30 min) must not hold back the takeover of a run dead for 15."""
    from scheduled import ledger

    settings = with_settings(schedules={"remind-inactive-users": "0 0 * * *"})
    run_job("remind-inactive-users", settings, utc(2025, 6, 2), now=utc(2025, 6, 2, 0, 1))  # it has run before
    sent = []

    def claim_and_die(job: str, slot: str) -> None:  # a worker claims the slot, then is SIGKILLed
        sent.append(slot)
        with session_scope() as s:
            ledger.claim(s, job, datetime.fromisoformat(slot), utc(2025, 6, 3, 0, 1))

    with session_scope() as s:
        dispatch_due(utc(2025, 6, 3, 0, 1), redis_client, s, settings, send=claim_and_die)
    for minute in (5, 15):  # its heartbeat is not 15 minutes old yet: the run may still be alive
        with session_scope() as s:
            dispatch_due(utc(2025, 6, 3, 0, minute), redis_client, s, settings, send=claim_and_die)
    assert sent == [utc(2025, 6, 3).isoformat()]
    with session_scope() as s:
        dispatch_due(utc(2025, 6, 3, 0, 17), redis_client, s, settings, send=lambda j, slot: sent.append(slot))
        dispatch_due(utc(2025, 6, 3, 0, 18), redis_client, s, settings, send=lambda j, slot: sent.append(slot))
    assert sent == [utc(2025, 6, 3).isoformat()] * 2  # the second attempt, once
    run = run_job("remind-inactive-users", settings, utc(2025, 6, 3), now=utc(2025, 6, 3, 0, 19))
    assert run.status == "succeeded" and run.attempts == 2


def test_a_lost_message_is_resent_once_its_marker_is_old_by_the_dispatch_clock(with_settings, redis_client):
    """SENT_TTL is measured on the clock slots are (scheduled.clock), not on the marker's Redis expiry."""
    from scheduled.beat import SENT_TTL

    settings = with_settings(schedules={"remind-inactive-users": "0 0 * * *"})
    run_job("remind-inactive-users", settings, utc(2025, 6, 2), now=utc(2025, 6, 2, 0, 1))
    sent = []
    sent_at = utc(2025, 6, 3, 0, 1)
    for now in (sent_at, sent_at + SENT_TTL - timedelta(minutes=1), sent_at + SENT_TTL + timedelta(seconds=1),
                sent_at + SENT_TTL + timedelta(minutes=1)):
        with session_scope() as s:  # the broker loses every message: nothing claims the slot
            dispatch_due(now, redis_client, s, settings, send=lambda j, slot: sent.append(slot))
    assert sent == [utc(2025, 6, 3).isoformat()] * 2


def test_a_person_may_run_a_skipped_slot_once_beat_never_does(with_settings, redis_client):
    settings = with_settings(schedules={"purge-dormant-accounts": "0 0 * * *"})
    with session_scope() as s:  # fresh install: tonight's slot is the skipped baseline
        dispatch_due(utc(2025, 6, 4, 11), redis_client, s, settings, send=lambda *a: None)
    assert run_job("purge-dormant-accounts", settings, utc(2025, 6, 4), now=utc(2025, 6, 4, 11)) is None
    run = run_job("purge-dormant-accounts", settings, utc(2025, 6, 4), now=utc(2025, 6, 4, 11), explicit=True)
    assert run.status == "succeeded"
    assert run_job("purge-dormant-accounts", settings, utc(2025, 6, 4), now=utc(2025, 6, 4, 12), explicit=True) is None
