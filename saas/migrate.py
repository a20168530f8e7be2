"""Alembic, configured in code: the one way the schema is made."""
from __future__ import annotations

from alembic import command
from alembic.config import Config

from saas.db import sqlalchemy_url
from saas.settings import ROOT, get_settings


def alembic_config(database_url: str | None = None) -> Config:
    """An Alembic Config pointing at migrations/ and DATABASE_URL (or the URL given)."""
    config = Config()
    config.set_main_option("script_location", str(ROOT / "migrations"))
    url = sqlalchemy_url(database_url or get_settings().database_url)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(database_url: str | None = None, revision: str = "head") -> None:
    """Apply migrations up to `revision`."""
    command.upgrade(alembic_config(database_url), revision)
