"""A successful GET ends its transaction with COMMIT (psycopg keeps its prepared statements); anything else rolls back."""
from __future__ import annotations

import os
from contextlib import contextmanager

import pytest
from sqlalchemy import event, text

from saas.core.db import get_engine


@pytest.fixture
def ana(make_user, auth):
    user = make_user(email="ana@example.com", name="Ana")
    auth.login("ana@example.com")
    return user


@contextmanager
def transaction_ends():
    ends: list[str] = []
    engine = get_engine()
    listeners = {name: (lambda conn, name=name: ends.append(name)) for name in ("commit", "rollback")}
    for name, listener in listeners.items():
        event.listen(engine, name, listener)
    try:
        yield ends
    finally:
        for name, listener in listeners.items():
            event.remove(engine, name, listener)


def test_a_page_read_ends_with_commit(client, ana):
    with transaction_ends() as ends:
        assert client.get("/dashboard").status_code == 200
    assert ends == ["commit"]


def test_an_error_page_and_a_post_roll_back(client, ana):
    with transaction_ends() as ends:
        assert client.get("/admin/jobs").status_code == 403  # loaded the user, then refused
    assert ends == ["rollback"]
    with transaction_ends() as ends:
        assert client.post("/contact", data={"email": "", "subject": "", "message": ""}).status_code == 400
    assert ends == ["rollback"]


def test_the_dashboard_statements_end_up_prepared(client, ana):
    """psycopg prepares a statement on its 5th run on a connection, and forgets them all on a ROLLBACK."""
    if os.environ.get("DATABASE_PREPARED_STATEMENTS") == "off":  # set by the suite's session fixture
        pytest.skip("prepared statements are off (the suite runs through PgBouncer before 1.21)")
    get_engine().dispose()  # one connection from here on: the test client runs one request at a time
    for _ in range(6):
        assert client.get("/dashboard").status_code == 200
    with get_engine().connect() as conn:
        prepared = conn.execute(text("SELECT statement FROM pg_prepared_statements")).scalars().all()
    assert any("invoices" in statement for statement in prepared), prepared
