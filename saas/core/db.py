"""The database: one engine per process, sessions, and the declarative base every model uses."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import DateTime, MetaData, create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, scoped_session, sessionmaker

from saas.core.pg_cursor import LazyDescriptionCursor
from saas.core.pool_ping import ping_when_idle

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base: stable constraint names (quiet Alembic diffs), timestamps with time zone."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: DateTime(timezone=True)}


def utcnow() -> datetime:
    """Now, timezone-aware. Used as a column default callable (never evaluated at import)."""
    return datetime.now(UTC)


def sqlalchemy_url(url: str) -> str:
    """Point plain postgresql:// URLs at psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


_engines: dict[str, Engine] = {}
_factory: list[sessionmaker[Session]] = []
_bound: list[str] = []  # the process's DATABASE_URL, set by bind() (runtime.configure)
_connect_args: dict[str, object] = {}  # psycopg's, for every engine: set by bind()


def bind(url: str, prepared_statements: bool = True) -> None:
    """Make `url` the process's database: sessions and get_engine() use it from now on.

    prepared_statements=False turns off psycopg's automatic server-side prepares (PgBouncer in
    transaction mode before 1.21 hands the next transaction another server connection, where the
    prepared statement does not exist)."""
    url = sqlalchemy_url(url)
    args = {} if prepared_statements else {"prepare_threshold": None}
    if _bound != [url] or _connect_args != args:
        reset_engines()
        _bound[:] = [url]
        _connect_args.clear()
        _connect_args.update(args)


def get_engine(url: str | None = None) -> Engine:
    """The process's engine for `url` (default: the bound database); pooled, a connection that sat
    idle pinged on checkout (saas.core.pool_ping)."""
    if url is None:
        if not _bound:
            raise RuntimeError("the database is not configured: the entry point calls "
                               "saas.core.runtime.configure(settings)")
        url = _bound[0]
    url = sqlalchemy_url(url)
    if url not in _engines:
        engine = create_engine(url, pool_size=5, max_overflow=10,
                               connect_args={"cursor_factory": LazyDescriptionCursor, **_connect_args})
        ping_when_idle(engine)
        _engines[url] = engine
    return _engines[url]


def session_factory() -> sessionmaker[Session]:
    """The sessionmaker bound to the process's engine."""
    if not _factory:
        _factory.append(sessionmaker(bind=get_engine(), expire_on_commit=False))
    return _factory[0]


# The web request's session: removed at the end of each request by init_app's teardown.
web_session: scoped_session[Session] = scoped_session(lambda: session_factory()())  # type: ignore[arg-type]  # a factory of the bound sessionmaker, made on first use


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session for domain code outside a request: commits on success, rolls back on error."""
    session = session_factory()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def reset_engines() -> None:
    """Drop every pooled connection (after a fork, or when the database changes)."""
    web_session.remove()
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()
    _factory.clear()


def init_app(app) -> None:
    """Give each request a session and close it when the request ends."""

    @app.teardown_appcontext
    def remove_session(exc: BaseException | None = None) -> None:
        web_session.remove()
