"""payment links deactivated here but not yet switched off in Stripe

A price change deactivates the old link's row and then asks Stripe to switch the old link
off. When Stripe refused, or the run stopped in between, nothing recorded that the old link
could still take a payment, so no later run tried again. ``stripe_deactivation_pending`` is
set in the transaction that deactivates the row and cleared once Stripe has switched the
link off; the backfill retries every row where it is still set.

A plain ``ADD COLUMN`` with a server default (false) on both databases. Then every link
already deactivated here with a Stripe id is marked: nothing recorded whether Stripe switched
it off, and switching off a link that is already off changes nothing, so the next backfill
makes sure of each once.

Downgrade: refused while any row is still waiting (dropping the column would forget that a
link can still take a payment): run the backfill again, or switch the links off in the
Stripe dashboard and then run the backfill, before downgrading below revision 0003.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 02:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        'payment_links',
        sa.Column('stripe_deactivation_pending', sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.execute(
        "UPDATE payment_links SET stripe_deactivation_pending = true "
        "WHERE status = 'deactivated' AND stripe_payment_link_id IS NOT NULL"
    )


def downgrade() -> None:
    waiting = op.get_bind().execute(
        sa.text("SELECT count(*) FROM payment_links WHERE stripe_deactivation_pending")
    ).scalar_one()
    if waiting:
        raise RuntimeError(
            f"{waiting} deactivated payment links are still active in Stripe; run the backfill again to "
            "switch them off before downgrading below revision 0003"
        )
    op.drop_column('payment_links', 'stripe_deactivation_pending')
