"""The outbox: one row per email, delivered once over SMTP, retried with backoff, never lost."""
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from saas.core.db import session_scope
from saas.core.outbox import OutboxMessage, delivery, queue_email


def queue(key="k1", to="ana@example.com", **extra) -> bool:
    with session_scope() as s:
        return queue_email(s, key=key, kind="welcome", to=to, template="welcome", context={"name": "Ana"}, **extra)


def rows() -> list[OutboxMessage]:
    with session_scope() as s:
        return list(s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def test_same_key_is_queued_once():
    assert queue("welcome:1") is True
    assert queue("welcome:1") is False
    assert len(rows()) == 1


def test_rolled_back_caller_leaves_no_row():
    with pytest.raises(RuntimeError):
        with session_scope() as s:
            queue_email(s, key="k", kind="welcome", to="a@example.com", template="welcome", context={"name": "A"})
            raise RuntimeError("the state change failed")
    assert rows() == []


def test_delivery_sends_text_html_reply_to_and_row_message_id(settings, mail):
    queue("contact:1", reply_to="visitor@example.org")
    assert delivery.deliver_rows(delivery.claim_batch("t1"), settings) == (1, None)
    [msg] = mail.messages()
    [row] = rows()
    assert row.status == "sent" and row.attempts == 1 and row.sent_at is not None
    assert msg["Message-ID"] == row.message_id
    assert msg["Reply-To"] == "visitor@example.org"
    assert msg["From"] == "Billing <billing@example.com>"
    assert {p.get_content_type() for p in msg.walk()} >= {"text/plain", "text/html"}


def test_the_row_is_rendered_when_it_is_delivered_and_escaped_in_html(settings, mail):
    with session_scope() as s:
        queue_email(s, key="w", kind="welcome", to="ana@example.com", template="welcome", context={"name": "Ana <b>"})
    [row] = rows()
    assert (row.template, row.context) == ("welcome", {"name": "Ana <b>"})  # nothing rendered yet
    delivery.deliver_rows(delivery.claim_batch("t1"), settings)
    [msg] = mail.messages()
    text, html = (msg.get_body(("plain",)).get_content(), msg.get_body(("html",)).get_content())
    assert "Ana <b>" in text and "Ana &lt;b&gt;" in html and msg["Subject"] == row.subject


def test_a_row_that_cannot_render_fails_at_once_and_the_rest_are_sent(settings, mail):
    with session_scope() as s:
        queue_email(s, key="broken", kind="welcome", to="a@example.com", template="card_expiring", context={})
    queue("fine")
    assert delivery.deliver_rows(delivery.claim_batch("t1"), settings) == (1, None)
    broken, fine = rows()
    assert (broken.status, broken.attempts) == ("failed", 1) and "cannot render email/card_expiring" in broken.last_error
    assert fine.status == "sent" and len(mail.messages()) == 1
    assert broken.subject.startswith("[cannot render")


def test_attachments_are_sent(settings, mail):
    queue("report:1", attachments=[{"filename": "summary.csv", "content_type": "text/csv", "content": "a,b\n1,2\n"}])
    delivery.deliver_rows(delivery.claim_batch("t1"), settings)
    [msg] = mail.messages()
    [attachment] = list(msg.iter_attachments())
    assert attachment.get_filename() == "summary.csv" and attachment.get_content() == "a,b\n1,2\n"


def test_a_sent_row_is_never_claimed_again(settings, mail):
    queue()
    delivery.deliver_rows(delivery.claim_batch("t1"), settings)
    assert delivery.claim_batch("t2") == []
    assert len(mail.messages()) == 1


def test_temporary_failure_retries_with_backoff_then_fails(settings, mail):
    queue()
    mail.fail_next = 100
    waits = []
    for attempt in range(1, delivery.MAX_ATTEMPTS + 1):
        claimed = delivery.claim_batch(f"t{attempt}")
        assert len(claimed) == 1
        _sent, retry_at = delivery.deliver_rows(claimed, settings)
        [row] = rows()
        if attempt < delivery.MAX_ATTEMPTS:
            assert row.status == "pending" and row.attempts == attempt and "451" in row.last_error
            waits.append((row.next_attempt_at - datetime.now(UTC)).total_seconds())
            _make_due(row.id)
        else:
            assert row.status == "failed" and row.attempts == delivery.MAX_ATTEMPTS and retry_at is None
    for wait, base in zip(waits, (4, 8, 16, 32, 64)):
        assert base * 0.7 <= wait <= base * 1.3
    assert mail.messages() == []


def test_smtp_down_keeps_rows_pending_without_using_attempts(with_settings):
    queue("a")
    queue("b")
    sent, retry_at = delivery.deliver_rows(delivery.claim_batch("t1"), with_settings(smtp_url="smtp://127.0.0.1:1"))
    assert sent == 0 and retry_at is not None
    assert [(r.status, r.attempts) for r in rows()] == [("pending", 0), ("pending", 0)]
    assert all("unreachable" in r.last_error for r in rows())


def test_crashed_batch_resumes_where_it_stopped(settings, mail):
    for i in range(5):
        queue(f"k{i}", to=f"u{i}@example.com")
    claimed = delivery.claim_batch("task-A")
    delivery.deliver_rows(claimed[:2], settings)  # the worker dies after two messages
    # The broker redelivers the same task (same id): it reclaims its own rows at once.
    again = delivery.claim_batch("task-A")
    assert [r.idempotency_key for r in again] == ["k2", "k3", "k4"]
    delivery.deliver_rows(again, settings)
    assert sorted(m["To"] for m in mail.messages()) == [f"u{i}@example.com" for i in range(5)]
    assert {r.status for r in rows()} == {"sent"}


def test_stale_claim_of_a_dead_worker_is_taken_over():
    queue()
    delivery.claim_batch("dead-task")
    assert delivery.claim_batch("other") == []
    with session_scope() as s:
        s.execute(update(OutboxMessage).values(claimed_at=datetime.now(UTC) - timedelta(hours=1)))
    assert len(delivery.claim_batch("other")) == 1


def test_commit_enqueues_delivery_and_the_worker_sends(celery_worker, mail):
    queue("e2e:1")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not mail.messages():
        time.sleep(0.1)
    assert len(mail.messages()) == 1
    assert rows()[0].status == "sent"


def _make_due(row_id: int) -> None:
    with session_scope() as s:
        s.execute(update(OutboxMessage).where(OutboxMessage.id == row_id)
                  .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1)))


def test_a_full_batch_enqueues_the_next_before_it_sends(monkeypatch, mail):
    """So that a backlog fans out over every idle worker instead of one worker's batches in turn."""
    from saas.core import queue as queue_module

    for i in range(3):
        queue(key=f"fan:{i}", to=f"u{i}@example.com")
    published = []  # (task name, messages the sink had when it was published)
    monkeypatch.setattr(queue_module, "publish",
                        lambda task, kwargs, countdown: published.append((task.name, len(mail.messages()))))
    monkeypatch.setattr(delivery, "BATCH_SIZE", 2)
    monkeypatch.setattr(delivery, "claim_batch", lambda claimer, limit=2, claim=delivery.claim_batch: claim(claimer, limit))
    assert delivery.deliver_outbox.apply(task_id="fan-1").get() == 2
    assert published == [("scheduled.delivery.deliver_outbox", 0)]
    assert delivery.deliver_outbox.apply(task_id="fan-2").get() == 1  # a part batch: nothing more is due
    assert len(published) == 1
