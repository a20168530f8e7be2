"""Alembic, configured in code: the one way the schema is made."""
from __future__ import annotations

from alembic import command
from alembic.config import Config

from saas.core.db import sqlalchemy_url
from saas.core.settings import ROOT


def alembic_config(database_url: str) -> Config:
    """An Alembic Config pointing at migrations/ and the database at `database_url`."""
    config = Config()
    config.set_main_option("script_location", str(ROOT / "migrations"))
    url = sqlalchemy_url(database_url)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Apply migrations up to `revision`."""
    command.upgrade(alembic_config(database_url), revision)
