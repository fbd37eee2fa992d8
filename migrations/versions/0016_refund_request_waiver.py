"""refund requests remember the waiver: a request finished later waives as it was asked

``refund_requests.waive_reopened`` (false for the requests already there): whether what the
refund re-opens is waived with it. A request whose answer was lost is finished the next time the
payment is refunded, as it was asked. The downgrade drops the column.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 23:10:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('refund_requests') as table:
        table.add_column(sa.Column('waive_reopened', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('refund_requests') as table:
        table.drop_column('waive_reopened')
