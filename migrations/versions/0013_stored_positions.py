"""stored positions: what is left of each charge, and each family's credit

* ``charge_positions``: per counting charge with something unsettled, ``open_cents`` and
  ``processing_cents`` (``core.ledger.positions`` keeps them from then on);
* ``family_credits``: per family with credit, ``credit_cents``;
* ``ix_allocations_tenant_parent``: a family's allocations, found without reading the league's.

Both tables are filled from the ledger as it stands, by the definition of this revision
(``core.ledger.accounts``): an allocation counts unless it, its charge, its payment or its
adjustment was reversed or its payment failed; what a processing payment covers is processing;
a family's credit is what its settled payments brought in, less refunds, less what they paid
on counting charges (on PostgreSQL by hash joins: the whole ledger is read). Then both are
analyzed (PostgreSQL). Nothing else changes; the downgrade
drops them.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 16:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

_COUNTED = """
WITH void AS (SELECT reversed_entry_id AS id FROM reversals),
counted AS (
    SELECT a.tenant_id, a.parent_id, a.charge_id, a.payment_id, a.amount_cents, p.state
    FROM allocations a LEFT JOIN payments p ON p.id = a.payment_id
    WHERE a.id NOT IN (SELECT id FROM void) AND a.charge_id NOT IN (SELECT id FROM void)
      AND (a.payment_id IS NULL OR a.payment_id NOT IN (SELECT id FROM void))
      AND (a.adjustment_id IS NULL OR a.adjustment_id NOT IN (SELECT id FROM void))
      AND (p.id IS NULL OR p.state <> 'failed')
)
"""

FILL_CHARGE_POSITIONS = _COUNTED + """,
settled AS (
    SELECT charge_id,
           SUM(CASE WHEN state IS NULL OR state <> 'processing' THEN amount_cents ELSE 0 END) AS settled,
           SUM(CASE WHEN state = 'processing' THEN amount_cents ELSE 0 END) AS processing
    FROM counted GROUP BY charge_id
)
INSERT INTO charge_positions (charge_id, tenant_id, parent_id, open_cents, processing_cents)
SELECT c.id, c.tenant_id, c.parent_id,
       c.amount_cents - COALESCE(s.settled, 0) - COALESCE(s.processing, 0), COALESCE(s.processing, 0)
FROM charges c LEFT JOIN settled s ON s.charge_id = c.id
WHERE c.id NOT IN (SELECT id FROM void) AND c.amount_cents - COALESCE(s.settled, 0) > 0
"""

FILL_FAMILY_CREDITS = _COUNTED + """
INSERT INTO family_credits (parent_id, tenant_id, credit_cents)
SELECT parent_id, MIN(tenant_id), SUM(cents) FROM (
    SELECT parent_id, tenant_id, amount_cents AS cents FROM payments
    WHERE state = 'settled' AND id NOT IN (SELECT id FROM void)
    UNION ALL
    SELECT parent_id, tenant_id, -amount_cents FROM adjustments
    WHERE kind = 'refund' AND id NOT IN (SELECT id FROM void)
    UNION ALL
    SELECT parent_id, tenant_id, -amount_cents FROM counted
    WHERE payment_id IS NOT NULL AND state <> 'processing'
) movements
GROUP BY parent_id
HAVING SUM(cents) > 0
"""


def upgrade() -> None:
    op.create_index('ix_allocations_tenant_parent', 'allocations', ['tenant_id', 'parent_id'])
    op.create_table(
        'charge_positions',
        sa.Column('charge_id', sa.Integer(), nullable=False),
        sa.Column('tenant_id', sa.Integer(), nullable=False),
        sa.Column('parent_id', sa.Integer(), nullable=False),
        sa.Column('open_cents', sa.BigInteger(), nullable=False),
        sa.Column('processing_cents', sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(['charge_id'], ['charges.id'], name=op.f('fk_charge_positions_charge_id_charges')),
        sa.ForeignKeyConstraint(['parent_id'], ['parents.id'], name=op.f('fk_charge_positions_parent_id_parents')),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_charge_positions_tenant_id_tenants'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('charge_id', name=op.f('pk_charge_positions')),
    )
    op.create_index('ix_charge_positions_tenant_parent', 'charge_positions', ['tenant_id', 'parent_id'])
    op.create_table(
        'family_credits',
        sa.Column('parent_id', sa.Integer(), nullable=False),
        sa.Column('tenant_id', sa.Integer(), nullable=False),
        sa.Column('credit_cents', sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(['parent_id'], ['parents.id'], name=op.f('fk_family_credits_parent_id_parents')),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_family_credits_tenant_id_tenants'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('parent_id', name=op.f('pk_family_credits')),
    )
    op.create_index(op.f('ix_family_credits_tenant_id'), 'family_credits', ['tenant_id'])
    postgresql = op.get_bind().dialect.name == 'postgresql'
    if postgresql:  # every league at once: hash joins, whatever the statistics say
        op.execute('SET LOCAL enable_nestloop = off')
    op.execute(FILL_CHARGE_POSITIONS)
    op.execute(FILL_FAMILY_CREDITS)
    if postgresql:
        op.execute('SET LOCAL enable_nestloop TO DEFAULT')
        op.execute('ANALYZE charge_positions, family_credits, allocations')


def downgrade() -> None:
    op.drop_index(op.f('ix_family_credits_tenant_id'), table_name='family_credits')
    op.drop_table('family_credits')
    op.drop_index('ix_charge_positions_tenant_parent', table_name='charge_positions')
    op.drop_table('charge_positions')
    op.drop_index('ix_allocations_tenant_parent', table_name='allocations')
