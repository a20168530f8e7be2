"""card flag indexes: the small ranges flag-expiring-cards reads instead of the whole cards table

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 21:40:00
"""
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Cards to flag tonight: unflagged default cards, in expiry order (a range below the horizon).
    op.create_index('ix_cards_to_flag', 'cards', ['expires_on', 'id'], unique=False,
                    postgresql_where='NOT is_expiring AND is_default')
    # Cards to clear: flagged cards no longer default, or default with an expiry past the horizon.
    op.create_index('ix_cards_to_clear', 'cards', ['is_default', 'expires_on', 'id'], unique=False,
                    postgresql_where='is_expiring')
    # Flagged cards changed since the last run (a webhook may flag a card without its email).
    op.create_index('ix_cards_flagged_updated_at', 'cards', ['updated_at', 'id'], unique=False,
                    postgresql_where='is_expiring')


def downgrade() -> None:
    op.drop_index('ix_cards_flagged_updated_at', table_name='cards', postgresql_where='is_expiring')
    op.drop_index('ix_cards_to_clear', table_name='cards', postgresql_where='is_expiring')
    op.drop_index('ix_cards_to_flag', table_name='cards', postgresql_where='NOT is_expiring AND is_default')
