"""Two running copies of one delivery task (a retry redelivered past the visibility timeout) send once."""
from sqlalchemy import select

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
