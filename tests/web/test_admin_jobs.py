"""The admin jobs page: pause/resume (audited), backfill of skipped slots, "Run now" on a slot
that already ran, schedules in words, run pages, and the refresh while runs are in flight."""
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from saas.core.db import session_scope
from saas.core.models import AuditLog
from saas.core.slots import latest_slot

# the tasks module, not the task: pytest's collection would evaluate a task proxy at module level
# before the app is configured, and the in-process test worker would then never start
from scheduled import ledger, tasks
from scheduled.models import JobPause, JobRun
from tests.helpers import utc

JOB = "flag-expiring-cards"
NOW = datetime.now(UTC)


@pytest.fixture
def admin(make_user, auth):
    user = make_user(email="root@example.com", role="admin", name="Root")
    auth.login("root@example.com")
    return user


def audits() -> list[AuditLog]:
    with session_scope() as s:
        rows = list(s.scalars(select(AuditLog).order_by(AuditLog.id)))
        s.expunge_all()
        return rows


def add_run(**values) -> int:
    with session_scope() as s:
        run = JobRun(**{"job": JOB, "status": "succeeded", "started_at": NOW - timedelta(seconds=3),
                        "finished_at": NOW, "heartbeat_at": NOW, **values})
        s.add(run)
        s.flush()
        return run.id


def test_pause_and_resume_from_the_page_are_audited_with_actor_and_reason(client, admin):
    page = client.get("/admin/jobs").get_data(as_text=True)
    assert f'action="/admin/jobs/{JOB}/pause"' in page and "Every day at 00:00" in page
    assert "Every day at 06:00; and at 06:00, on day 1 of the month" in page  # the finance summary, in words
    assert client.post(f"/admin/jobs/{JOB}/pause", data={"reason": "  "}).status_code == 400
    response = client.post(f"/admin/jobs/{JOB}/pause", data={"reason": "Stripe incident"}, follow_redirects=True)
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and 'data-paused="yes"' in page and "Stripe incident" in page
    assert f'action="/admin/jobs/{JOB}/resume"' in page and "none while paused" in page
    assert client.post(f"/admin/jobs/{JOB}/pause", data={"reason": "again"}).status_code == 400  # already paused
    assert client.post(f"/admin/jobs/{JOB}/resume").status_code == 302
    with session_scope() as s:
        assert s.get(JobPause, JOB) is None
    rows = audits()
    assert [(r.action, r.subject_id, r.actor, r.actor_id) for r in rows] == [
        ("job.pause", JOB, f"admin:{admin.id}", admin.id), ("job.resume", JOB, f"admin:{admin.id}", admin.id)]
    assert rows[0].details == {"reason": "Stripe incident"} and rows[1].details["paused_reason"] == "Stripe incident"
    assert client.post("/admin/jobs/rm-rf/pause", data={"reason": "x"}).status_code == 404


def test_pause_needs_the_forms_csrf_token(csrf_app, make_user):
    make_user(email="root@example.com", role="admin")
    client = csrf_app.test_client()
    import re

    token = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', client.get("/login").data).group(1)
    client.post("/login", data={"email": "root@example.com", "password": "correct-horse-42", "csrf_token": token})
    assert client.post(f"/admin/jobs/{JOB}/pause", data={"reason": "no token"}).status_code == 400
    page = client.get("/admin/jobs").data
    token = re.search(rb'name="csrf_token" value="([^"]+)"', page).group(1)
    assert client.post(f"/admin/jobs/{JOB}/pause", data={"reason": "ok", "csrf_token": token}).status_code == 302
    assert [a.action for a in audits()] == ["job.pause"]


def test_run_now_on_a_slot_that_already_ran_says_so_at_once_and_links_the_run(client, admin, settings, sent):
    slot = latest_slot(settings.schedules[JOB], settings.tz, datetime.now(UTC))
    run_id = add_run(slot=slot)
    response = client.post(f"/admin/jobs/{JOB}/run")
    assert response.status_code == 302 and f"already={run_id}" in response.location
    page = client.get(response.location).get_data(as_text=True)
    assert "Nothing was done" in page and f'href="/admin/jobs/runs/{run_id}"' in page
    assert sent == [] and audits() == []
    # A dry run is still allowed: it never takes the slot.
    assert client.post(f"/admin/jobs/{JOB}/run", data={"dry_run": "1"}).status_code == 302 and len(sent) == 1


def test_run_now_on_a_paused_job_goes_ahead_with_a_note(client, admin, sent):
    client.post(f"/admin/jobs/{JOB}/pause", data={"reason": "maintenance"})
    page = client.post(f"/admin/jobs/{JOB}/run", follow_redirects=True).get_data(as_text=True)
    assert "is paused" in page and "goes ahead because you asked" in page
    [(name, kwargs)] = sent
    assert name == "scheduled.tasks.run_job" and kwargs["explicit"] is True
    assert audits()[-1].action == "job.run-now" and audits()[-1].details["paused"] is True


def test_skipped_slots_shown_can_be_backfilled_oldest_first(client, admin, sent, settings):
    with session_scope() as s:
        ledger.record_skipped(s, JOB, [utc(2025, 2, 1), utc(2025, 2, 2)], utc(2025, 2, 2), "paused by admin:1: x")
        s.commit()
    page = client.get("/admin/jobs").get_data(as_text=True)
    assert page.count(">Run this slot</button>") == 2 and "Run the 2 skipped slots shown, oldest first" in page
    slots = [utc(2025, 2, 2).isoformat(), utc(2025, 2, 1).isoformat()]
    assert client.post(f"/admin/jobs/{JOB}/backfill", data={"slot": slots}).status_code == 302
    [(name, kwargs)] = sent
    assert name == "scheduled.tasks.backfill_slots" and kwargs["slots_iso"] == sorted(slots)
    assert audits()[-1].action == "job.backfill"
    assert tasks.backfill_slots.run(**kwargs) == ["succeeded", "succeeded"]  # what the worker does with it
    assert tasks.backfill_slots.run(**kwargs) == []  # both ran: nothing to do the second time
    with session_scope() as s:
        runs = list(s.scalars(select(JobRun).where(JobRun.job == JOB).order_by(JobRun.slot)))
        assert [(r.status, r.attempts) for r in runs] == [("succeeded", 1), ("succeeded", 1)]
        assert runs[0].started_at < runs[1].started_at  # oldest first
    sent.clear()
    response = client.post(f"/admin/jobs/{JOB}/backfill", data={"slot": slots[0]})
    assert "already=" in response.location and sent == []


@pytest.mark.parametrize("slot", ["", "yesterday", "2025-02-01T00:00:00", "2025-02-01T00:30:00+00:00",
                                  "2999-01-01T00:00:00+00:00"])
def test_backfill_refuses_what_is_not_a_past_slot(client, admin, sent, slot):
    assert client.post(f"/admin/jobs/{JOB}/backfill", data={"slot": slot}).status_code == 400
    assert sent == [] and audits() == []


def test_run_page_shows_counts_error_attempts_and_dry_run_details(client, admin):
    run_id = add_run(slot=utc(2025, 3, 1), status="failed", attempts=3, scanned=40, changed=7, emails_queued=5,
                     error="OperationalError: connection lost")
    page = client.get(f"/admin/jobs/runs/{run_id}").get_data(as_text=True)
    for text in (f"Run #{run_id} of {JOB}", "OperationalError: connection lost", "<dd>3</dd>", "<dd>40</dd>",
                 "(its latest attempt)"):
        assert text in page, text
    dry = add_run(slot=utc(2025, 3, 1), dry_run=True, details={"would_purge": [{"user_id": 12}, {"user_id": 13}],
                                                               "cursor": 13})
    page = client.get(f"/admin/jobs/runs/{dry}").get_data(as_text=True)
    assert "dry run" in page and "2 items" in page and '"user_id": 13' in page
    assert client.get("/admin/jobs/runs/999999999").status_code == 404
    jobs_page = client.get("/admin/jobs").get_data(as_text=True)
    assert f'href="/admin/jobs/runs/{run_id}"' in jobs_page


def test_duration_is_the_runs_own_and_skipped_slots_were_not_run(client, admin, settings):
    with session_scope() as s:
        ledger.record_skipped(s, JOB, [utc(2025, 3, 1)], utc(2025, 3, 1, 0, 0, 5), "missed")
        ledger.record_skipped(s, JOB, [utc(2025, 3, 2)], utc(2025, 3, 2, 0, 0, 5), "missed")
        s.commit()
    from scheduled.runner import run_job

    run_job(JOB, settings, utc(2025, 3, 1), now=utc(2025, 3, 4, 9), explicit=True)  # frozen clock: 0 s
    page = client.get("/admin/jobs").get_data(as_text=True)
    assert "0.0 s" in page and "not run" in page
    assert "259" not in page  # not the three days since the slot was recorded as skipped


def test_page_refreshes_only_while_runs_are_in_flight(client, admin, sent):
    page = client.get("/admin/jobs").get_data(as_text=True)
    assert 'http-equiv="refresh"' not in page and 'data-in-flight="no"' in page
    assert client.get("/admin/jobs/status.json").get_json()["in_flight"] is False
    running = add_run(slot=utc(2025, 3, 1), status="running", finished_at=None, heartbeat_at=datetime.now(UTC))
    page = client.get("/admin/jobs").get_data(as_text=True)
    assert '<noscript><meta http-equiv="refresh" content="5"></noscript>' in page and 'data-in-flight="yes"' in page
    assert "jobs-refresh.js" in page
    state = client.get("/admin/jobs/status.json").get_json()
    assert state["in_flight"] is True and state["running"] == [running]
    before = state["fingerprint"]
    with session_scope() as s:
        ledger.finish(s, running, "succeeded", datetime.now(UTC))
    state = client.get("/admin/jobs/status.json").get_json()
    assert state["in_flight"] is False and state["fingerprint"] != before
    # A run just queued: the page waits for it to start, then stops.
    redirect = client.post(f"/admin/jobs/{JOB}/run", data={"dry_run": "1"}).location
    assert 'data-in-flight="yes"' in client.get(redirect).get_data(as_text=True)
    add_run(slot=utc(2025, 3, 2), dry_run=True, started_at=datetime.now(UTC) + timedelta(seconds=1))
    assert 'data-in-flight="no"' in client.get(redirect).get_data(as_text=True)
