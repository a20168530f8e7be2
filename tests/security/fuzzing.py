"""Fuzzing helpers for the security tests: deterministic hypothesis settings, case counts, snapshots."""
from __future__ import annotations

from hypothesis import HealthCheck, settings

# Deterministic: the same cases on every run and machine, no example database under the tree.
# The number of cases each target ran is printed at the end of the session (docs/reliability.md).
FUZZ = dict(derandomize=True, database=None, deadline=None, print_blob=False,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                   HealthCheck.function_scoped_fixture])
CASES: dict[str, int] = {}


def fuzz(max_examples: int):
    """@fuzz(n): hypothesis settings for a security property, the same n cases on every run."""
    return settings(max_examples=max_examples, **FUZZ)


def tried(target: str) -> None:
    """Count one generated case for `target`."""
    CASES[target] = CASES.get(target, 0) + 1


def table_counts(*models) -> dict[str, int]:
    """Row count of each table, to prove a rejected request wrote nothing."""
    from sqlalchemy import func, select

    from saas.core.db import session_scope

    with session_scope() as s:
        return {m.__tablename__: s.scalar(select(func.count()).select_from(m)) for m in models}


def table_rows(*models) -> dict[str, list[tuple]]:
    """Every row of each table as plain tuples (sorted by primary key), to compare before/after."""
    from sqlalchemy import inspect, select

    from saas.core.db import session_scope

    snapshot = {}
    with session_scope() as s:
        for model in models:
            columns = [c.key for c in inspect(model).column_attrs]
            pk = inspect(model).primary_key
            rows = s.execute(select(*[getattr(model, c) for c in columns]).order_by(*pk)).all()
            snapshot[model.__tablename__] = [tuple(r) for r in rows]
    return snapshot
