"""dunning: a case per open invoice of a past_due subscription, and the steps taken on it

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 04:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

STATUSES = "('open', 'paused', 'recovered', 'lost', 'written_off', 'closed')"
CAUSES = "('pay_now', 'card_updated', 'automatic_retry', 'authentication')"


def upgrade() -> None:
    op.create_table(
        'dunning_cases',
        sa.Column('id', sa.BigInteger(), nullable=False),
        sa.Column('user_id', sa.BigInteger(), nullable=True),
        sa.Column('subscription_id', sa.BigInteger(), nullable=True),
        sa.Column('invoice_id', sa.BigInteger(), nullable=True),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('step', sa.Integer(), nullable=False),
        sa.Column('amount_cents', sa.BigInteger(), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('mrr_cents', sa.BigInteger(), nullable=False),
        sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('cause', sa.String(length=20), nullable=True),
        sa.Column('pending_cause', sa.String(length=20), nullable=True),
        sa.Column('final_action', sa.String(length=20), nullable=True),
        sa.Column('final_action_done_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('paused_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('note', sa.Text(), nullable=True),
        sa.Column('link_token', sa.String(length=64), nullable=False),
        sa.CheckConstraint(f'status IN {STATUSES}', name=op.f('ck_dunning_cases_status')),
        sa.CheckConstraint(f'cause IS NULL OR cause IN {CAUSES}', name=op.f('ck_dunning_cases_cause')),
        sa.CheckConstraint(f'pending_cause IS NULL OR pending_cause IN {CAUSES}',
                           name=op.f('ck_dunning_cases_pending_cause')),
        sa.ForeignKeyConstraint(['invoice_id'], ['invoices.id'], name=op.f('fk_dunning_cases_invoice_id_invoices'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['subscription_id'], ['subscriptions.id'],
                                name=op.f('fk_dunning_cases_subscription_id_subscriptions'), ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_dunning_cases_user_id_users'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_dunning_cases')),
        sa.UniqueConstraint('invoice_id', name=op.f('uq_dunning_cases_invoice_id')),
        sa.UniqueConstraint('link_token', name=op.f('uq_dunning_cases_link_token')),
    )
    op.create_index('ix_dunning_cases_due', 'dunning_cases', ['opened_at', 'id'], unique=False,
                    postgresql_where="status = 'open'")
    op.create_index('ix_dunning_cases_user_id', 'dunning_cases', ['user_id'], unique=False)
    op.create_index('ix_dunning_cases_opened_at', 'dunning_cases', ['opened_at'], unique=False)
    op.create_index('ix_dunning_cases_closed_at', 'dunning_cases', ['closed_at'], unique=False,
                    postgresql_where='closed_at IS NOT NULL')
    op.create_table(
        'dunning_steps',
        sa.Column('id', sa.BigInteger(), nullable=False),
        sa.Column('case_id', sa.BigInteger(), nullable=False),
        sa.Column('step', sa.Integer(), nullable=False),
        sa.Column('days', sa.Integer(), nullable=False),
        sa.Column('final', sa.Boolean(), nullable=False),
        sa.Column('taken_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['case_id'], ['dunning_cases.id'], name=op.f('fk_dunning_steps_case_id_dunning_cases'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_dunning_steps')),
        sa.UniqueConstraint('case_id', 'step', name='uq_dunning_steps_case_step'),
    )


def downgrade() -> None:
    op.drop_table('dunning_steps')
    op.drop_index('ix_dunning_cases_closed_at', table_name='dunning_cases')
    op.drop_index('ix_dunning_cases_opened_at', table_name='dunning_cases')
    op.drop_index('ix_dunning_cases_user_id', table_name='dunning_cases')
    op.drop_index('ix_dunning_cases_due', table_name='dunning_cases')
    op.drop_table('dunning_cases')
