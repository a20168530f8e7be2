"""Pooled connections are pinged on checkout once they sat idle (saas.core.pool_ping), not on every checkout."""
from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from saas.core import pool_ping
from saas.core.db import get_engine, sqlalchemy_url


@pytest.fixture
def engine(services, monkeypatch):
    """An engine like the process's, with its pings counted, on PostgreSQL itself: through PgBouncer a
    terminated server connection is the bouncer's to replace, and the client's connection lives on."""
    engine = create_engine(sqlalchemy_url(services["postgres_url"]), pool_size=2, max_overflow=0)
    pool_ping.ping_when_idle(engine)
    pings = []
    real = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda conn: pings.append(conn) or real(conn))
    engine.pings = pings
    yield engine
    engine.dispose()


def backend_pid(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT pg_backend_pid()")).scalar_one()


def test_the_process_engine_has_it(services):
    engine = get_engine()
    assert not engine.pool._pre_ping  # one check, not both
    with engine.connect() as conn:
        assert pool_ping._LAST_USED in conn.connection._connection_record.info


def test_a_connection_checked_in_moments_ago_is_not_pinged(engine):
    first = backend_pid(engine)  # a new connection: not pinged either
    assert [backend_pid(engine) for _ in range(20)] == [first] * 20
    assert engine.pings == []


def test_a_connection_that_sat_idle_is_pinged(engine, monkeypatch):
    backend_pid(engine)
    monkeypatch.setattr(pool_ping, "IDLE_BEFORE_PING", 0.0)  # any pause is longer than that
    backend_pid(engine)
    assert len(engine.pings) == 1


def test_a_connection_killed_while_idle_is_replaced_on_checkout(engine, monkeypatch, services):
    """A restarted database, a failover, an idle timeout: the ping fails and the pool reconnects."""
    with engine.connect() as a, engine.connect() as b:  # two pooled connections
        pids = [c.execute(text("SELECT pg_backend_pid()")).scalar_one() for c in (a, b)]
    with create_engine(sqlalchemy_url(services["postgres_url"])).connect() as admin:
        for pid in pids:
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    monkeypatch.setattr(pool_ping, "IDLE_BEFORE_PING", 0.0)
    with engine.connect() as conn:  # no error: the dead connection was found and replaced
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
    assert engine.pings  # it was the ping that found it
    with engine.connect() as a, engine.connect() as b:  # the other pooled connection was dropped too
        assert [c.execute(text("SELECT 1")).scalar_one() for c in (a, b)] == [1, 1]
