"""family balance links: one Stripe Payment Link for a family's whole balance

* ``family_links``: a family's "Pay the balance" links, with the life of a payment link
  (minting, active, paid, deactivated; one active and one minting per family, partial unique
  indexes). Its status reuses the ``payment_link_status`` type (on PostgreSQL the existing type,
  not created again).
* ``balance_prices``: the league's Stripe Prices of its balance product, one per amount, shared
  by every family link for that amount.
* ``tenants.stripe_balance_product_id`` (the league's balance product at Stripe) and
  ``tenants.email_pay_links`` (what the email offers to pay; NULL: balance and items).

Nothing is rebuilt: new tables and two nullable columns (SQLite adds those in place).
Downgrade drops them; on PostgreSQL the ``payment_link_status`` type stays (older tables use it).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 13:00:00.000000
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

STATUS_VALUES = ('active', 'paid', 'deactivated', 'minting')


def _status_type() -> sa.types.TypeEngine:
    if op.get_bind().dialect.name == 'postgresql':
        return postgresql.ENUM(*STATUS_VALUES, name='payment_link_status', create_type=False)
    return sa.Enum(*STATUS_VALUES, name='payment_link_status', create_constraint=True)


def upgrade() -> None:
    op.add_column('tenants', sa.Column('stripe_balance_product_id', sa.String(length=255), nullable=True))
    op.add_column('tenants', sa.Column('email_pay_links', sa.String(length=32), nullable=True))
    op.create_table(
        'balance_prices',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('tenant_id', sa.Integer(), nullable=False),
        sa.Column('amount_cents', sa.Integer(), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('stripe_price_id', sa.String(length=255), nullable=True),
        sa.CheckConstraint('amount_cents > 0', name=op.f('ck_balance_prices_amount_positive')),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_balance_prices_tenant_id_tenants'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_balance_prices')),
        sa.UniqueConstraint('stripe_price_id', name=op.f('uq_balance_prices_stripe_price_id')),
        sa.UniqueConstraint('tenant_id', 'amount_cents', 'currency',
                            name=op.f('uq_balance_prices_tenant_id_amount_cents_currency')),
    )
    op.create_index(op.f('ix_balance_prices_tenant_id'), 'balance_prices', ['tenant_id'], unique=False)
    op.create_table(
        'family_links',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('tenant_id', sa.Integer(), nullable=False),
        sa.Column('parent_id', sa.Integer(), nullable=False),
        sa.Column('amount_cents', sa.Integer(), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('stripe_price_id', sa.String(length=255), nullable=True),
        sa.Column('stripe_payment_link_id', sa.String(length=255), nullable=True),
        sa.Column('url', sa.String(length=1000), nullable=True),
        sa.Column('status', _status_type(), nullable=False),
        sa.Column('mint_attempt', sa.String(length=32), nullable=False),
        sa.Column('stripe_deactivation_pending', sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column('checkout_session_id', sa.String(length=255), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('paid_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint('amount_cents > 0', name=op.f('ck_family_links_amount_positive')),
        sa.CheckConstraint("status = 'minting' OR (stripe_payment_link_id IS NOT NULL AND url IS NOT NULL)",
                           name=op.f('ck_family_links_stripe_link_once_minted')),
        sa.ForeignKeyConstraint(['parent_id'], ['parents.id'], name=op.f('fk_family_links_parent_id_parents')),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_family_links_tenant_id_tenants'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_family_links')),
        sa.UniqueConstraint('stripe_payment_link_id', name=op.f('uq_family_links_stripe_payment_link_id')),
    )
    op.create_index(op.f('ix_family_links_parent_id'), 'family_links', ['parent_id'], unique=False)
    op.create_index('ix_family_links_tenant_status', 'family_links', ['tenant_id', 'status'], unique=False)
    for state in ('active', 'minting'):
        op.create_index(
            f'uq_family_links_one_{state}_per_parent', 'family_links', ['tenant_id', 'parent_id'], unique=True,
            postgresql_where=sa.text(f"status = '{state}'"), sqlite_where=sa.text(f"status = '{state}'"),
        )


def downgrade() -> None:
    op.drop_table('family_links')
    op.drop_table('balance_prices')
    # As 0007: plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+), so ``tenants`` is not rebuilt.
    op.drop_column('tenants', 'email_pay_links')
    op.drop_column('tenants', 'stripe_balance_product_id')
