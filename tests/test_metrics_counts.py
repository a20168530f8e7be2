"""What each counter counts, in this process (single-process mode): job failures and dry runs,
every delivery outcome, the contact form's 429. The real-process test is tests/test_metrics.py."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY
from sqlalchemy import update

from saas.core import metrics
from saas.core.db import session_scope
from saas.core.outbox import OutboxMessage, delivery, queue_email
from saas.web.views.contact import CONTACT_LIMIT
from scheduled import runner
from scheduled.jobs import JOBS
from scheduled.models import JobRun

SLOT = datetime(2025, 5, 10, tzinfo=UTC)


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Counts:
    """The change of some samples between two moments (the registry lives for the whole session)."""

    def __init__(self, *keys: tuple[str, dict]):
        self.keys = keys
        self.before = [sample(name, **labels) for name, labels in keys]

    def delta(self) -> list[float]:
        return [sample(name, **labels) - b for (name, labels), b in zip(self.keys, self.before)]


def boom(session, ctx):
    raise RuntimeError("broken")


def test_a_failed_run_counts_failed_and_a_dry_run_counts_nothing(settings, monkeypatch, make_user, card):
    job = "remind-inactive-users"
    counts = Counts(("saas_job_runs_total", {"job": job, "status": "failed"}),
                    ("saas_job_runs_total", {"job": job, "status": "succeeded"}),
                    ("saas_job_run_duration_seconds_count", {"job": job}))
    runner.run_job(job, settings, SLOT, now=SLOT, dry_run=True)
    assert counts.delta() == [0, 0, 0]
    monkeypatch.setitem(JOBS, job, boom)
    assert runner.run_job(job, settings, SLOT, now=SLOT).status == "failed"
    assert counts.delta() == [1, 0, 1]


def test_a_taken_over_run_counts_only_its_own_rows(settings, make_user, card):
    """A run resumed after a crash starts with its first attempts' rows: they were counted then."""
    for _ in range(3):
        card(make_user().id, 5, 2025)
    job = "flag-expiring-cards"
    counts = Counts(("saas_job_rows_changed_total", {"job": job}), ("saas_job_emails_queued_total", {"job": job}))
    first = runner.run_job(job, settings, SLOT, now=SLOT)
    assert (first.changed, first.emails_queued) == (3, 3)
    assert counts.delta() == [3, 3]
    with session_scope() as s:  # as if the run had failed after its batches: the retry keeps the counts
        s.execute(update(JobRun).where(JobRun.id == first.id).values(status="failed"))
    again = runner.run_job(job, settings, SLOT, now=SLOT)
    assert again.changed >= 3 and counts.delta() == [3 + again.changed - first.changed,
                                                     3 + again.emails_queued - first.emails_queued]


def _queue(key: str) -> None:
    with session_scope() as s:
        queue_email(s, key=key, kind="welcome", to="ana@example.com", template="welcome", context={"name": "Ana"})


def _make_due() -> None:
    with session_scope() as s:
        s.execute(update(OutboxMessage).values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1)))


def test_every_delivery_outcome_is_counted(settings, with_settings, mail):
    outcomes = ("sent", "retry", "failed", "unreachable")
    counts = Counts(*[("saas_outbox_delivery_attempts_total", {"outcome": o}) for o in outcomes])
    _queue("a")
    _queue("b")
    delivery.deliver_rows(delivery.claim_batch("t1"), with_settings(smtp_url="smtp://127.0.0.1:1"))
    assert counts.delta() == [0, 0, 0, 2]
    _make_due()
    mail.fail_next = 1
    delivery.deliver_rows(delivery.claim_batch("t2"), settings)  # one 451, one sent
    assert counts.delta() == [1, 1, 0, 2]
    with session_scope() as s:  # the retried row on its last attempt
        s.execute(update(OutboxMessage).where(OutboxMessage.status == "pending")
                  .values(attempts=delivery.MAX_ATTEMPTS - 1, next_attempt_at=datetime.now(UTC)))
    mail.fail_next = 1
    delivery.deliver_rows(delivery.claim_batch("t3"), settings)
    assert counts.delta() == [1, 1, 1, 2]


def test_the_contact_forms_429_is_counted_by_limit(client):
    counts = Counts(("saas_rate_limited_total", {"limit": "contact", "rule": CONTACT_LIMIT}))
    answers = []
    for i in range(10):  # the limit's window may turn between two posts: try again
        answers.append(client.post("/contact", data={
            "name": "Vera Visitor", "email": "vera@example.org", "subject": "Invoices",
            "message": "Can I get my invoices as PDF, please?", "submission": f"tok-{i}"}).status_code)
        if answers[-1] == 429:
            break
    assert 429 in answers
    assert counts.delta() == [1]


def test_multiprocess_dir_is_emptied_at_start(tmp_path, monkeypatch):
    (tmp_path / "counter_123.db").write_bytes(b"old")
    (tmp_path / "keep.txt").write_text("not ours")
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path))
    metrics.reset_multiprocess_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path / "new"))
    metrics.reset_multiprocess_dir()
    assert (tmp_path / "new").is_dir()
