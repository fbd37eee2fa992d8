"""payments by state: an index for the balances

The balances look up a league's payments still processing and those that failed (few) on
every read; without an index each lookup read every payment of the league.
``ix_payments_tenant_state`` on ``payments (tenant_id, state)``, on both databases; the
downgrade drops it. Nothing is rebuilt.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 14:30:00.000000
"""

from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_payments_tenant_state', 'payments', ['tenant_id', 'state'])


def downgrade() -> None:
    op.drop_index('ix_payments_tenant_state', table_name='payments')
