"""a random Stripe namespace per league: idempotency keys and link metadata

Idempotency keys and link metadata named a league by its database id (``t1``). Two databases
on one Stripe account (a trial install, a copy) both have a league 1, so each got the other's
answers for 24 hours ("Keys for idempotent requests can only be used with the same
parameters") and could take the other's links for its own. New leagues get a random
``stripe_namespace``; the keys and metadata use it.

Leagues that exist already keep NULL, and with it their ``t<id>`` keys and metadata: a
reservation an interrupted backfill left must be finished with the very request it was first
sent with, or Stripe would refuse it.

Downgrade leaves the column in place (the code before 0004 never reads it, and the column
accepts NULL for the leagues that code creates). The namespaces cannot be made again: dropped,
a league's existing links and prices at Stripe would no longer be recognised as its own (a
reservation looked up by metadata would be minted again, a payment through an unrecorded link
would not be flagged). Upgrading again adds the column only if it is missing.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 03:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    columns = {column['name'] for column in sa.inspect(op.get_bind()).get_columns('tenants')}
    if 'stripe_namespace' not in columns:  # a downgrade keeps it (see above)
        op.add_column('tenants', sa.Column('stripe_namespace', sa.String(length=32), nullable=True))


def downgrade() -> None:
    # The column stays: the namespaces in it cannot be made again (see above).
    pass
