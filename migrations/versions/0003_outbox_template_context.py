"""outbox rows hold their template and context; delivery renders them

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 10:00:00

Rows queued before this revision keep their rendered contents through the `_prerendered`
template (context {"subject", "text", "html"}).
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('outbox', sa.Column('template', sa.String(length=100), nullable=True))
    op.add_column('outbox', sa.Column('context', postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.execute("""UPDATE outbox SET template = '_prerendered',
                  context = jsonb_build_object('subject', subject, 'text', text_body, 'html', html_body)""")
    op.alter_column('outbox', 'template', nullable=False)
    op.alter_column('outbox', 'context', nullable=False)
    op.drop_column('outbox', 'subject')
    op.drop_column('outbox', 'text_body')
    op.drop_column('outbox', 'html_body')


def downgrade() -> None:
    # Rows queued since the upgrade were never rendered: they keep their template name as the
    # subject and their context as the text.
    for column in ('subject', 'text_body', 'html_body'):
        op.add_column('outbox', sa.Column(column, sa.Text(), nullable=True))
    op.execute("""UPDATE outbox SET
                    subject = CASE WHEN template = '_prerendered' THEN context->>'subject' ELSE template END,
                    text_body = CASE WHEN template = '_prerendered' THEN context->>'text' ELSE context::text END,
                    html_body = CASE WHEN template = '_prerendered' THEN context->>'html' ELSE '' END""")
    for column in ('subject', 'text_body', 'html_body'):
        op.alter_column('outbox', column, nullable=False)
    op.drop_column('outbox', 'context')
    op.drop_column('outbox', 'template')
