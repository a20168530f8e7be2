"""The liveness check of pooled connections: a ping on checkout, for connections that sat idle.

SQLAlchemy's `pool_pre_ping` runs `SELECT 1` on every checkout: a round trip more per request,
about 8% of the contact POST and of the dashboard GET (docs/benchmarks.md, issue 18). What kills a
pooled connection (a database or PgBouncer restart, a failover, an idle timeout, a firewall that
drops quiet connections) is found on connections that sat idle through it, and an outage lasts
longer than a moment. So, as HikariCP does by default (its `aliveBypassWindowMs`, 500 ms), a
connection checked in less than IDLE_BEFORE_PING ago is handed out without a ping; an older one is
pinged, and a failed ping invalidates every pooled connection older than it so the pool reconnects,
as `pool_pre_ping` does (SQLAlchemy's documented checkout-event recipe, raising DisconnectionError).
"""
from __future__ import annotations

import time

from sqlalchemy import event, exc
from sqlalchemy.engine import Engine

IDLE_BEFORE_PING = 0.5  # seconds
_LAST_USED = "saas_last_used"  # in each connection record's info: when it was last connected or checked in


def ping_when_idle(engine: Engine) -> None:
    """Install the check on `engine` (created with pool_pre_ping off)."""
    dialect = engine.dialect

    @event.listens_for(engine, "connect")
    def _connected(_dbapi_connection, record) -> None:
        record.info[_LAST_USED] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection, record) -> None:
        record.info[_LAST_USED] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection, record, _proxy) -> None:
        if time.monotonic() - record.info.get(_LAST_USED, 0.0) <= IDLE_BEFORE_PING:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as err:
            if dialect.is_disconnect(err, dbapi_connection, None):
                raise exc.InvalidatePoolError(f"ping failed: {err}") from err  # the pool reconnects
            raise
