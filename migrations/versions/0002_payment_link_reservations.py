"""payment link reservations: a ``minting`` status, Stripe id and URL empty until minted

The backfill now writes a payment link row *before* it asks Stripe for the link, so the
row's id can go into the request's idempotency key and the link's metadata. Such a row is
``minting`` and has no Stripe id or URL yet:

* ``payment_link_status`` gains ``minting``;
* ``stripe_payment_link_id`` and ``url`` become nullable, and a CHECK constraint keeps them
  set on every row that is not ``minting``;
* a second partial unique index allows one ``minting`` row per (tenant, player, product).
  The one-active-link index is unchanged: a price change reserves the new link while the
  old one is still active, so the two states need separate indexes.

On PostgreSQL the enum value is added outside the migration's transaction
(``autocommit_block``): a value added in a transaction cannot be used in it (the index
predicate and the CHECK constraint use it), and PostgreSQL before 12 refuses
``ALTER TYPE ... ADD VALUE`` in a transaction block altogether. SQLite has no enum type:
the status CHECK constraint is rebuilt in batch mode.

Downgrade: refused while any ``minting`` row exists (a reservation may already have a
Stripe link; finish it by running the backfill again, or delete the row once you have
checked Stripe). Otherwise it drops the index and the CHECK constraint and makes the
columns NOT NULL again. On SQLite the status CHECK goes back to three values. On
PostgreSQL the ``minting`` value stays in the ``payment_link_status`` type: PostgreSQL
cannot drop an enum value (see 0001), and no row uses it after the check above; upgrading
again adds it ``IF NOT EXISTS``.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

OLD_STATUS = sa.Enum('active', 'paid', 'deactivated', name='payment_link_status', create_constraint=True)
NEW_STATUS = sa.Enum('active', 'paid', 'deactivated', 'minting', name='payment_link_status', create_constraint=True)
MINTED_CHECK = "status = 'minting' OR (stripe_payment_link_id IS NOT NULL AND url IS NOT NULL)"
MINTING_INDEX = 'uq_payment_links_one_minting_per_player_product'
ACTIVE_INDEX = 'uq_payment_links_one_active_per_player_product'
PAIR = ['tenant_id', 'player_id', 'product_id']


def _partial(predicate: str) -> dict:
    return {'postgresql_where': sa.text(predicate), 'sqlite_where': sa.text(predicate)}


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == 'postgresql'
    if postgresql:
        with op.get_context().autocommit_block():
            op.execute("ALTER TYPE payment_link_status ADD VALUE IF NOT EXISTS 'minting'")
    else:
        # SQLite rebuilds the table: drop the partial index and create it again afterwards, so
        # it cannot be carried over without its WHERE clause.
        op.drop_index(ACTIVE_INDEX, table_name='payment_links', **_partial("status = 'active'"))
    with op.batch_alter_table('payment_links', schema=None) as batch_op:
        if not postgresql:
            batch_op.alter_column('status', existing_type=OLD_STATUS, type_=NEW_STATUS, existing_nullable=False)
        batch_op.alter_column('stripe_payment_link_id', existing_type=sa.String(length=255), nullable=True)
        batch_op.alter_column('url', existing_type=sa.String(length=1000), nullable=True)
        batch_op.create_check_constraint(op.f('ck_payment_links_stripe_link_once_minted'), MINTED_CHECK)
    if not postgresql:
        op.create_index(ACTIVE_INDEX, 'payment_links', PAIR, unique=True, **_partial("status = 'active'"))
    op.create_index(MINTING_INDEX, 'payment_links', PAIR, unique=True, **_partial("status = 'minting'"))


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == 'postgresql'
    reserved = op.get_bind().execute(
        sa.text("SELECT count(*) FROM payment_links WHERE status = 'minting'")
    ).scalar_one()
    if reserved:
        raise RuntimeError(
            f"{reserved} payment links are still being minted (status 'minting'); run the backfill "
            "again to finish them before downgrading below revision 0002"
        )
    op.drop_index(MINTING_INDEX, table_name='payment_links', **_partial("status = 'minting'"))
    if not postgresql:
        op.drop_index(ACTIVE_INDEX, table_name='payment_links', **_partial("status = 'active'"))
    with op.batch_alter_table('payment_links', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_payment_links_stripe_link_once_minted'), type_='check')
        batch_op.alter_column('url', existing_type=sa.String(length=1000), nullable=False)
        batch_op.alter_column('stripe_payment_link_id', existing_type=sa.String(length=255), nullable=False)
        if not postgresql:
            batch_op.alter_column('status', existing_type=NEW_STATUS, type_=OLD_STATUS, existing_nullable=False)
    if not postgresql:
        op.create_index(ACTIVE_INDEX, 'payment_links', PAIR, unique=True, **_partial("status = 'active'"))
    # PostgreSQL keeps 'minting' in payment_link_status: there is no ALTER TYPE ... DROP VALUE.
