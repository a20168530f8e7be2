"""job pauses: a paused job's slots are recorded as skipped, with the reason, until it is resumed

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 04:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('job_pauses',
    sa.Column('job', sa.String(length=50), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('paused_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('paused_by', sa.String(length=100), nullable=False),
    sa.PrimaryKeyConstraint('job', name=op.f('pk_job_pauses'))
    )


def downgrade() -> None:
    op.drop_table('job_pauses')
