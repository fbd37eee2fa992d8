"""refund requests: a Stripe refund is on record before Stripe is asked

``refund_requests``: per refund of a Stripe payment asked of Stripe, the payment, the amount,
the reason, who asked and when, and once finished, the refund Stripe made (or none) and when. At most one
unfinished request per payment (a partial unique index, on both databases). A refund whose
answer was lost (the process stopped after Stripe refunded, before the ledger recorded it) is
then finished from Stripe's own record the next time the payment is refunded, never made twice
(``core.ledger.refunds``). The table starts empty; the downgrade drops it.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 22:40:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'refund_requests',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('tenant_id', sa.Integer(), nullable=False),
        sa.Column('payment_id', sa.Integer(), nullable=False),
        sa.Column('amount_cents', sa.Integer(), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('requested_by', sa.String(length=255), nullable=False),
        sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('stripe_refund_id', sa.String(length=255), nullable=True),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint('amount_cents > 0', name=op.f('ck_refund_requests_amount_positive')),
        sa.ForeignKeyConstraint(['payment_id'], ['payments.id'], name=op.f('fk_refund_requests_payment_id_payments')),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_refund_requests_tenant_id_tenants'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_refund_requests')),
    )
    op.create_index(op.f('ix_refund_requests_tenant_id'), 'refund_requests', ['tenant_id'])
    op.create_index('ix_refund_requests_unfinished', 'refund_requests', ['payment_id'], unique=True,
                    postgresql_where=sa.text('finished_at IS NULL'), sqlite_where=sa.text('finished_at IS NULL'))


def downgrade() -> None:
    op.drop_index('ix_refund_requests_unfinished', table_name='refund_requests')
    op.drop_index(op.f('ix_refund_requests_tenant_id'), table_name='refund_requests')
    op.drop_table('refund_requests')
