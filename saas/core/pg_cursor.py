"""The psycopg cursor every engine uses: `description` built when it is read, not when it is asked for.

psycopg 3 builds a `Column` object for every column of a result each time `cursor.description`
is read (a name decode and type lookups per column; psycopg issues #446 and #457). SQLAlchemy
reads it after every execution, but for a cached compiled statement (all of ours) it only
checks that it is not None: the result's columns come from the compiled form. At about 2 µs a
column, the dashboard's 80 or so columns cost some 0.15 ms a request, built and thrown away
(about 3% of its CPU; docs/benchmarks.md, issue 18). This cursor answers with a sequence that
builds the same columns, through psycopg's own code, the first time something looks inside.
Set on every connection through SQLAlchemy's documented `connect_args={"cursor_factory": ...}`.
"""
from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from typing import Any, cast

import psycopg
from psycopg import Column

_PSYCOPG_DESCRIPTION: property = inspect.getattr_static(psycopg.Cursor, "description")


class LazyDescriptionCursor(psycopg.Cursor):
    @property
    def description(self) -> Sequence[Column] | None:  # type: ignore[override]  # a sequence standing for the list
        result = self.pgresult
        if result is not None and result.nfields:
            return _Description(self, result)
        return _PSYCOPG_DESCRIPTION.fget(self)  # type: ignore[misc]  # no columns: psycopg's own answer (None, or [] for "SELECT ;")


class _Description(Sequence[Column]):
    """The columns of one result, built on first use by psycopg (Cursor.description)."""

    __slots__ = ("_columns", "_cursor", "_result")

    def __init__(self, cursor: LazyDescriptionCursor, result: Any) -> None:
        self._cursor, self._result = cursor, result
        self._columns: list[Column] | None = None

    def _built(self) -> list[Column]:
        if self._columns is None:
            if self._cursor.pgresult is not self._result:  # psycopg reads the cursor's current result
                raise psycopg.InterfaceError("cursor.description read after the cursor moved to another result")
            self._columns = cast(list[Column], _PSYCOPG_DESCRIPTION.fget(self._cursor))  # type: ignore[misc]
        return self._columns

    def __len__(self) -> int:
        return self._result.nfields

    def __getitem__(self, index):  # an int or a slice, as a list's
        return self._built()[index]

    def __iter__(self) -> Iterator[Column]:
        return iter(self._built())

    def __eq__(self, other: object) -> bool:
        return self._built() == (list(other) if isinstance(other, _Description) else other)

    __hash__ = None  # type: ignore[assignment]  # like the list it stands for

    def __repr__(self) -> str:
        return repr(self._built())
