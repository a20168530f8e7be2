"""finance period indexes: the daily summary reads the day's flows, not whole tables

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 23:05:00
"""
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_subscriptions_created_at', 'subscriptions', ['created_at'], unique=False)
    op.create_index('ix_subscriptions_canceled_at', 'subscriptions', ['canceled_at'], unique=False,
                    postgresql_where='canceled_at IS NOT NULL')
    op.create_index('ix_invoices_first_failed_at', 'invoices', ['first_failed_at'], unique=False,
                    postgresql_where='first_failed_at IS NOT NULL')
    op.create_index('ix_invoices_recovered_paid_at', 'invoices', ['paid_at'], unique=False,
                    postgresql_where='first_failed_at IS NOT NULL')


def downgrade() -> None:
    op.drop_index('ix_invoices_recovered_paid_at', table_name='invoices')
    op.drop_index('ix_invoices_first_failed_at', table_name='invoices')
    op.drop_index('ix_subscriptions_canceled_at', table_name='subscriptions')
    op.drop_index('ix_subscriptions_created_at', table_name='subscriptions')
