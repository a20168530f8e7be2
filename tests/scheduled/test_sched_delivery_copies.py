"""Two running copies of one delivery task (a retry redelivered past the visibility timeout) send once."""
from contextlib import contextmanager

from sqlalchemy import select, text

from saas.core.db import session_scope
from saas.core.outbox import OutboxMessage, delivery, queue_email


def test_second_copy_of_a_running_delivery_sends_nothing(mail):
    with session_scope() as s:
        for i in range(3):
            queue_email(s, key=f"copy:{i}", kind="welcome", to=f"u{i}@example.com", template="welcome",
                        context={"name": "Ana"})
    with delivery.running_alone("retry-1") as alone:  # copy A: running, its rows claimed, not sent yet
        assert alone
        delivery.claim_batch("retry-1")
        assert delivery.deliver_outbox.apply(task_id="retry-1").get() == 0  # copy B, same task id
        assert mail.messages() == []
    # Copy A crashed (its lock is gone with its connection): the redelivery resumes its rows.
    assert delivery.deliver_outbox.apply(task_id="retry-1").get() == 3
    assert sorted(m["To"] for m in mail.messages()) == [f"u{i}@example.com" for i in range(3)]
    with session_scope() as s:
        assert set(s.scalars(select(OutboxMessage.status))) == {"sent"}


def test_a_copy_that_finds_its_task_running_looks_again_and_resumes_the_rows(mail, monkeypatch):
    """RabbitMQ redelivers a SIGKILLed worker's task within milliseconds, sometimes before PostgreSQL
    has ended the dead copy's transaction: the redelivery finds the lock held, and looks again."""
    from saas.core.db import get_engine

    with session_scope() as s:
        for i in range(2):
            queue_email(s, key=f"dead:{i}", kind="welcome", to=f"d{i}@example.com", template="welcome",
                        context={"name": "Ana"})
    dead = get_engine().connect()  # the dead copy's transaction, not yet ended: its lock and its claimed rows
    dead.begin()
    assert dead.execute(text("SELECT pg_try_advisory_xact_lock(:cls, hashtext('task-7'))"),
                        {"cls": delivery.RUNNING_LOCK_CLASS}).scalar()
    delivery.claim_batch("task-7")
    looks = []
    real = delivery.running_alone

    @contextmanager
    def first_look_ends_the_dead_transaction(claimer):
        with real(claimer) as alone:
            looks.append(alone)
            yield alone
        if not alone:
            dead.close()  # PostgreSQL noticed the closed socket

    monkeypatch.setattr(delivery, "running_alone", first_look_ends_the_dead_transaction)
    assert delivery.deliver_outbox.apply(task_id="task-7").get() == 2  # the retry, eager here: no countdown
    assert looks == [False, True]
    assert sorted(m["To"] for m in mail.messages()) == ["d0@example.com", "d1@example.com"]
