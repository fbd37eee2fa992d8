"""charge positions carry the charge: its player, product, description, currency and due date

A copy of the charge's own columns in each ``charge_positions`` row, so the balances read the
positions without the league's charges (a charge is never edited: the copy cannot go stale).
The columns are added, filled from ``charges`` and then made NOT NULL where the charge's are;
then the table is analyzed (PostgreSQL). The downgrade drops them.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 20:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

_COPIED = ('player_id', 'product_id', 'description', 'currency', 'due_on')

FILL = """
UPDATE charge_positions SET
    player_id = (SELECT c.player_id FROM charges c WHERE c.id = charge_positions.charge_id),
    product_id = (SELECT c.product_id FROM charges c WHERE c.id = charge_positions.charge_id),
    description = (SELECT c.description FROM charges c WHERE c.id = charge_positions.charge_id),
    currency = (SELECT c.currency FROM charges c WHERE c.id = charge_positions.charge_id),
    due_on = (SELECT c.due_on FROM charges c WHERE c.id = charge_positions.charge_id)
"""

FILL_POSTGRESQL = """
UPDATE charge_positions SET player_id = c.player_id, product_id = c.product_id, description = c.description,
                            currency = c.currency, due_on = c.due_on
FROM charges c WHERE c.id = charge_positions.charge_id
"""


def upgrade() -> None:
    with op.batch_alter_table('charge_positions') as batch:
        batch.add_column(sa.Column('player_id', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('product_id', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('description', sa.String(length=300), nullable=True))
        batch.add_column(sa.Column('currency', sa.String(length=3), nullable=True))
        batch.add_column(sa.Column('due_on', sa.Date(), nullable=True))
    postgresql = op.get_bind().dialect.name == 'postgresql'
    op.execute(FILL_POSTGRESQL if postgresql else FILL)
    with op.batch_alter_table('charge_positions') as batch:
        for name, kind in (('description', sa.String(length=300)), ('currency', sa.String(length=3)),
                           ('due_on', sa.Date())):
            batch.alter_column(name, existing_type=kind, nullable=False)
    if postgresql:
        op.execute('ANALYZE charge_positions')


def downgrade() -> None:
    with op.batch_alter_table('charge_positions') as batch:
        for name in reversed(_COPIED):
            batch.drop_column(name)
