"""The schema is made by Alembic alone, and it matches the models."""
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from saas.core.db import sqlalchemy_url
from saas.core.migrate import alembic_config, upgrade
from saas.dev.embedded import ensure_database
from saas.schema import metadata


def fresh_database(services, name: str) -> str:
    admin_url = services["database_url"].rsplit("/", 1)[0] + "/postgres"
    with create_engine(sqlalchemy_url(admin_url), isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
    ensure_database(admin_url, name)
    return services["database_url"].rsplit("/", 1)[0] + "/" + name


def test_every_migration_applies_to_an_empty_database_and_matches_models(services):
    url = fresh_database(services, "saas_migration_check")
    upgrade(url)
    engine = create_engine(sqlalchemy_url(url))
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    engine.dispose()
    assert diff == []


def test_emails_queued_before_0003_are_delivered_as_they_were_rendered(services):
    """0003 moves rendering to delivery; a row rendered at queue time keeps its contents."""
    from alembic import command

    from saas.core.outbox import OutboxMessage

    url = fresh_database(services, "saas_migration_0003")
    upgrade(url, "0002")
    engine = create_engine(sqlalchemy_url(url))
    with engine.begin() as conn:
        conn.execute(text("""INSERT INTO outbox (idempotency_key, kind, to_addr, subject, text_body, html_body,
                             attachments, status, attempts, created_at, next_attempt_at)
                             VALUES ('old', 'welcome', 'a@example.com', 'Welcome, Ana', 'Hi Ana', '<p>Hi &amp; Ana</p>',
                                     '[]', 'pending', 0, now(), now())"""))
    upgrade(url)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT template, context FROM outbox")).one()
    email = OutboxMessage(template=row.template, context=row.context).render()
    assert email == ("Welcome, Ana", "Hi Ana", "<p>Hi &amp; Ana</p>")
    command.downgrade(alembic_config(url), "0002")
    with engine.connect() as conn:
        assert tuple(conn.execute(text("SELECT subject, text_body, html_body FROM outbox")).one()) == tuple(email)
    engine.dispose()
