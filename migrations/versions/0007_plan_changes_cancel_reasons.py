"""plan changes and cancellations: an invoice's PDF link, why a subscriber cancelled

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 04:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('invoices', sa.Column('invoice_pdf', sa.Text(), nullable=True))
    op.add_column('subscriptions', sa.Column('cancel_reason', sa.String(30), nullable=True))
    op.add_column('subscriptions', sa.Column('cancel_comment', sa.String(500), nullable=True))


def downgrade() -> None:
    op.drop_column('subscriptions', 'cancel_comment')
    op.drop_column('subscriptions', 'cancel_reason')
    op.drop_column('invoices', 'invoice_pdf')
