"""The schema is made by Alembic alone, and it matches the models."""
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from saas.all_models import metadata
from saas.db import sqlalchemy_url
from saas.embedded import ensure_database
from saas.migrate import upgrade


def test_every_migration_applies_to_an_empty_database_and_matches_models(services):
    admin_url = services["database_url"].rsplit("/", 1)[0] + "/postgres"
    with create_engine(sqlalchemy_url(admin_url), isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS saas_migration_check"))
    ensure_database(admin_url, "saas_migration_check")
    url = services["database_url"].rsplit("/", 1)[0] + "/saas_migration_check"
    upgrade(url)
    engine = create_engine(sqlalchemy_url(url))
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    engine.dispose()
    assert diff == []
