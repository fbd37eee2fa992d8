"""a random Stripe namespace per league: idempotency keys and link metadata

Idempotency keys and link metadata named a league by its database id (``t1``). Two databases
on one Stripe account (a trial install, a copy) both have a league 1, so each got the other's
answers for 24 hours ("Keys for idempotent requests can only be used with the same
parameters") and could take the other's links for its own. New leagues get a random
``stripe_namespace``; the keys and metadata use it.

Leagues that exist already keep NULL, and with it their ``t<id>`` keys: a reservation an
interrupted backfill left must be finished with the key it was first sent with, or Stripe
would make a second link.

Downgrade drops the column: leagues created since then fall back to ``t<id>`` keys, so let any
interrupted backfill finish first (a reservation would otherwise be sent with a new key).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 03:00:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('tenants', sa.Column('stripe_namespace', sa.String(length=32), nullable=True))


def downgrade() -> None:
    op.drop_column('tenants', 'stripe_namespace')
