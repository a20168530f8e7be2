"""The engines' psycopg cursor: `description` as psycopg gives it, built only when something reads it."""
from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text

from saas.core.db import get_engine
from saas.core.pg_cursor import LazyDescriptionCursor


@pytest.fixture
def cursor(services):
    with psycopg.connect(services["database_url"], cursor_factory=LazyDescriptionCursor) as conn:
        yield conn.cursor()


def plain_description(services, sql: str):
    with psycopg.connect(services["database_url"]) as conn:
        cur = conn.cursor()
        cur.execute(sql)
        return cur.description


def test_every_engine_connection_uses_it(services):
    with get_engine().connect() as conn:
        assert isinstance(conn.connection.driver_connection.cursor(), LazyDescriptionCursor)


@pytest.mark.parametrize("sql", ["SELECT 1 AS one, 'two'::text AS two, now() AS three", "SELECT ;",
                                 "CREATE TEMP TABLE t (a int)", "SELECT * FROM users LIMIT 0"])
def test_the_same_answer_as_psycopgs(services, cursor, sql):
    cursor.execute(sql)
    expected = plain_description(services, sql)
    described = cursor.description
    if expected is None:
        assert described is None
        return
    assert len(described) == len(expected)
    assert [tuple(c) for c in described] == [tuple(c) for c in expected]  # name, type, sizes, as psycopg's
    assert [tuple(c) for c in described[-1:]] == [tuple(c) for c in expected[-1:]]
    assert described == list(described)


def test_read_after_the_cursor_moved_on_is_an_error_not_another_results_columns(cursor):
    cursor.execute("SELECT 1 AS one")
    first = cursor.description
    cursor.execute("SELECT 2 AS two, 3 AS three")
    with pytest.raises(psycopg.InterfaceError, match="another result"):
        list(first)
    assert [c.name for c in cursor.description] == ["two", "three"]


def test_sqlalchemy_results_keep_their_columns(services):
    with get_engine().connect() as conn:
        rows = conn.execute(text("SELECT 1 AS one, 'x' AS two")).mappings().all()
        assert rows == [{"one": 1, "two": "x"}]
        assert conn.exec_driver_sql("SELECT 5 AS five").keys() == ["five"]
