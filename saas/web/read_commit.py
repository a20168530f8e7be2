"""A successful GET ends its transaction with COMMIT, not the ROLLBACK that closing the session sends.

For a transaction that only read, the two are the same to PostgreSQL. But psycopg forgets its
prepared statements on every ROLLBACK (`Connection.rollback` clears its prepare manager, counts
included), so a request path whose transactions always rolled back never reached psycopg's
prepare threshold: every statement of every page was parsed and planned again by the server. On
the dashboard that was about a fifth of its wall time (docs/benchmarks.md, issue 18).

Only a safe method (GET, HEAD) whose response is not an error, with nothing pending in the ORM
session, is committed here; any other request rolls back at teardown as before (saas.core.db).
Views that write commit what they write themselves; a GET that wrote and then failed answers an
error status and is rolled back.
"""
from __future__ import annotations

import logging

from flask import request

from saas.core.db import web_session

log = logging.getLogger(__name__)
SAFE_METHODS = frozenset({"GET", "HEAD"})


def init_app(app) -> None:
    @app.after_request
    def commit_read(response):
        if request.method not in SAFE_METHODS or response.status_code >= 400 or not web_session.registry.has():
            return response
        session = web_session()
        if session.in_transaction() and not (session.new or session.dirty or session.deleted):
            try:
                session.commit()
            except Exception:  # the page is built; the teardown rolls back and the pool drops a dead connection
                log.warning("could not end a read transaction with COMMIT", exc_info=True)
        return response
