"""invoice action required: the link where the subscriber confirms a payment their bank holds

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 02:10:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('invoices', sa.Column('hosted_invoice_url', sa.Text(), nullable=True))
    op.add_column('invoices', sa.Column('action_required_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column('invoices', 'action_required_at')
    op.drop_column('invoices', 'hosted_invoice_url')
