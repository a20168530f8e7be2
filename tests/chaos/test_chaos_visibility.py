"""Chaos: a delivery retry whose countdown outlives Redis's visibility timeout runs twice, sends once.

Redis hands an unacknowledged message to another consumer once the visibility timeout has
passed; a task held for its countdown is such a message, so two workers end up holding the
same retry (same task id) and run it at the same moment. The email must still go out once.
"""
from __future__ import annotations

import collections
import re
import time
from datetime import UTC, datetime

import pytest
from celery import Celery
from chaos_cluster import Cluster, wait_until
from sqlalchemy import select

from saas.core.outbox import delivery  # the module: a task object at module level is evaluated by collection

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]
VISIBILITY_TIMEOUT = 2  # seconds; the first retry's countdown is about 3 to 5 s


def test_retry_longer_than_visibility_timeout_sends_once(services, tmp_path):
    from saas.core.db import session_scope
    from saas.core.outbox import OutboxMessage, queue_email

    with session_scope() as s:
        for i in range(3):
            queue_email(s, key=f"chaos-visibility:{i}", kind="contact", to=f"someone{i}@example.com",
                        template="contact", context={"name": "Ana", "email": "ana@example.com",
                                                     "subject": "Hi", "message": f"hello {i}"})
    cluster = Cluster(tmp_path, services["database_url"], start=datetime.now(UTC),
                      visibility_timeout=VISIBILITY_TIMEOUT)
    client = Celery(broker=cluster.redis_url, set_as_current=False)  # a plain client of the cluster's broker
    try:
        for name in ("worker-1", "worker-2"):
            cluster.start(name, "worker")
        assert wait_until(lambda: all("ready." in (tmp_path / f"{n}.log").read_text(errors="replace")
                                      for n in ("worker-1", "worker-2")), 60)
        cluster.sink.delay = 0.5  # each send takes a while: the copies overlap
        cluster.sink.fail_next = 3  # every row's first attempt gets a 451: one retry for all of them
        client.send_task(delivery.deliver_outbox.name)

        def delivered() -> bool:
            with session_scope() as s:
                return set(s.scalars(select(OutboxMessage.status))) == {"sent"}

        def sweep() -> None:  # what beat's outbox-sweep does every minute
            client.send_task(delivery.deliver_outbox.name)

        assert wait_until(delivered, 90, every=1.0, on_tick=lambda: None if int(time.time()) % 8 else sweep())
        time.sleep(VISIBILITY_TIMEOUT * 3 + 3)  # every copy of the retry has run by now
        logs = "".join((tmp_path / f"{n}.log").read_text(errors="replace") for n in ("worker-1", "worker-2"))
        with session_scope() as s:
            ids = list(s.scalars(select(OutboxMessage.id)))
        received = collections.Counter(m["Message-ID"] for m in cluster.sink.messages())
    finally:
        cluster.close()
        client.close()

    runs = collections.Counter(re.findall(r"Task scheduled\.delivery\.deliver_outbox\[([0-9a-f-]+)\] succeeded", logs))
    retries_run_twice = sum(1 for n in runs.values() if n > 1)
    duplicates = sum(n - 1 for n in received.values() if n > 1)
    print(f"\nCHAOS visibility timeout {VISIBILITY_TIMEOUT}s: delivery task ids run more than once: "
          f"{retries_run_twice} (max {max(runs.values())} times); emails {sum(received.values())} "
          f"for {len(ids)} rows, duplicates {duplicates}")
    assert retries_run_twice >= 1, "the hazard did not happen: the retry ran only once"
    assert duplicates == 0
    assert set(received) == {f"<outbox-{i}@example.com>" for i in ids}
