"""initial schema: every table of the brief

Enumerations are native ENUM types on PostgreSQL and CHECK constraints on SQLite.

About downgrades and enum values: PostgreSQL can add a value to an ENUM type
(``ALTER TYPE ... ADD VALUE``) but has no ``ALTER TYPE ... DROP VALUE``. A later
migration that adds a status therefore cannot remove it on downgrade without
rebuilding the type (create a new type, rewrite every column using it, drop the
old one) and that rewrite fails if any row still holds the value. Such downgrades
leave the extra value in place and say so. This first migration owns the types
outright, so its downgrade drops the tables and then the types themselves.

Revision ID: 0001
Revises:
Create Date: 2026-11-27 23:16:22.330226
"""

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None

ENUM_TYPES = (
    "player_status",
    "product_kind",
    "order_status",
    "payment_link_status",
    "email_campaign_status",
    "email_message_status",
)


def upgrade() -> None:
    op.create_table('tenants',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('slug', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('brand_primary_color', sa.String(length=16), nullable=False),
    sa.Column('brand_accent_color', sa.String(length=16), nullable=False),
    sa.Column('logo_url', sa.String(length=500), nullable=True),
    sa.Column('sender_name', sa.String(length=200), nullable=True),
    sa.Column('reply_to', sa.String(length=320), nullable=True),
    sa.Column('footer_text', sa.Text(), nullable=True),
    sa.Column('payments_synced_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tenants')),
    sa.UniqueConstraint('slug', name=op.f('uq_tenants_slug'))
    )
    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=True),
    sa.Column('actor', sa.String(length=320), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_audit_log_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_log_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_log_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('email_campaigns',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('email_type', sa.String(length=64), nullable=False),
    sa.Column('audience', sa.JSON(), nullable=False),
    sa.Column('test_address', sa.String(length=320), nullable=True),
    sa.Column('started_by', sa.String(length=320), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('status', sa.Enum('running', 'completed', 'failed', name='email_campaign_status', create_constraint=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_email_campaigns_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_email_campaigns'))
    )
    with op.batch_alter_table('email_campaigns', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_email_campaigns_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('parents',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('email_opt_out', sa.Boolean(), nullable=False),
    sa.Column('external_ref', sa.String(length=100), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_parents_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_parents')),
    sa.UniqueConstraint('tenant_id', 'external_ref', name=op.f('uq_parents_tenant_id_external_ref'))
    )
    with op.batch_alter_table('parents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_parents_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('products',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.Enum('one_time', 'monthly', name='product_kind', create_constraint=True), nullable=False),
    sa.Column('required', sa.Boolean(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_products_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_products')),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_products_tenant_id_name'))
    )
    with op.batch_alter_table('products', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_products_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('teams',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_teams_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_teams')),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_teams_tenant_id_name'))
    )
    with op.batch_alter_table('teams', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_teams_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('email_messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=False),
    sa.Column('to_address', sa.String(length=320), nullable=True),
    sa.Column('subject', sa.String(length=500), nullable=False),
    sa.Column('amount_cents', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('status', sa.Enum('pending', 'sending', 'sent', 'failed', 'skipped', name='email_message_status', create_constraint=True), nullable=False),
    sa.Column('skip_reason', sa.String(length=200), nullable=True),
    sa.Column('message_id_header', sa.String(length=320), nullable=False),
    sa.Column('provider_message_id', sa.String(length=320), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('html_body', sa.Text(), nullable=True),
    sa.Column('text_body', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['campaign_id'], ['email_campaigns.id'], name=op.f('fk_email_messages_campaign_id_email_campaigns'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['parent_id'], ['parents.id'], name=op.f('fk_email_messages_parent_id_parents')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_email_messages_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_email_messages')),
    sa.UniqueConstraint('campaign_id', 'parent_id', name=op.f('uq_email_messages_campaign_id_parent_id'))
    )
    with op.batch_alter_table('email_messages', schema=None) as batch_op:
        batch_op.create_index('ix_email_messages_parent_status', ['parent_id', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_email_messages_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('players',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=False),
    sa.Column('team_id', sa.Integer(), nullable=True),
    sa.Column('first_name', sa.String(length=100), nullable=False),
    sa.Column('last_name', sa.String(length=100), nullable=False),
    sa.Column('status', sa.Enum('prospect', 'signed', 'withdrawn', name='player_status', create_constraint=True), nullable=False),
    sa.Column('external_ref', sa.String(length=100), nullable=True),
    sa.ForeignKeyConstraint(['parent_id'], ['parents.id'], name=op.f('fk_players_parent_id_parents')),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_players_team_id_teams')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_players_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_players')),
    sa.UniqueConstraint('tenant_id', 'external_ref', name=op.f('uq_players_tenant_id_external_ref'))
    )
    with op.batch_alter_table('players', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_players_parent_id'), ['parent_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_players_team_id'), ['team_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_players_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('price_tiers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('product_id', sa.Integer(), nullable=False),
    sa.Column('amount_cents', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('is_default', sa.Boolean(), nullable=False),
    sa.Column('stripe_price_id', sa.String(length=255), nullable=True),
    sa.CheckConstraint('amount_cents > 0', name=op.f('ck_price_tiers_amount_positive')),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], name=op.f('fk_price_tiers_product_id_products'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_price_tiers')),
    sa.UniqueConstraint('product_id', 'amount_cents', 'currency', name=op.f('uq_price_tiers_product_id_amount_cents_currency')),
    sa.UniqueConstraint('stripe_price_id', name=op.f('uq_price_tiers_stripe_price_id'))
    )
    with op.batch_alter_table('price_tiers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_price_tiers_product_id'), ['product_id'], unique=False)
        batch_op.create_index('uq_price_tiers_default_per_product', ['product_id'], unique=True, postgresql_where=sa.text('is_default'), sqlite_where=sa.text('is_default'))

    op.create_table('orders',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('player_id', sa.Integer(), nullable=False),
    sa.Column('product_id', sa.Integer(), nullable=False),
    sa.Column('amount_cents', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('status', sa.Enum('pending', 'paid', 'canceled', name='order_status', create_constraint=True), nullable=False),
    sa.Column('external_ref', sa.String(length=100), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('amount_cents > 0', name=op.f('ck_orders_amount_positive')),
    sa.ForeignKeyConstraint(['player_id'], ['players.id'], name=op.f('fk_orders_player_id_players')),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], name=op.f('fk_orders_product_id_products')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_orders_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_orders')),
    sa.UniqueConstraint('tenant_id', 'external_ref', name=op.f('uq_orders_tenant_id_external_ref'))
    )
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_orders_player_id'), ['player_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_orders_product_id'), ['product_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_orders_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('payment_links',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('player_id', sa.Integer(), nullable=False),
    sa.Column('product_id', sa.Integer(), nullable=False),
    sa.Column('price_tier_id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=True),
    sa.Column('amount_cents', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('stripe_payment_link_id', sa.String(length=255), nullable=False),
    sa.Column('url', sa.String(length=1000), nullable=False),
    sa.Column('status', sa.Enum('active', 'paid', 'deactivated', name='payment_link_status', create_constraint=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('paid_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('deactivated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('checkout_session_id', sa.String(length=255), nullable=True),
    sa.Column('paid_amount_cents', sa.Integer(), nullable=True),
    sa.Column('processing', sa.Boolean(), nullable=False),
    sa.Column('amount_mismatch', sa.Boolean(), nullable=False),
    sa.CheckConstraint('amount_cents > 0', name=op.f('ck_payment_links_amount_positive')),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_payment_links_order_id_orders')),
    sa.ForeignKeyConstraint(['player_id'], ['players.id'], name=op.f('fk_payment_links_player_id_players')),
    sa.ForeignKeyConstraint(['price_tier_id'], ['price_tiers.id'], name=op.f('fk_payment_links_price_tier_id_price_tiers')),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], name=op.f('fk_payment_links_product_id_products')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_payment_links_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payment_links')),
    sa.UniqueConstraint('stripe_payment_link_id', name=op.f('uq_payment_links_stripe_payment_link_id'))
    )
    with op.batch_alter_table('payment_links', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payment_links_order_id'), ['order_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_payment_links_player_id'), ['player_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_payment_links_price_tier_id'), ['price_tier_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_payment_links_product_id'), ['product_id'], unique=False)
        batch_op.create_index('ix_payment_links_tenant_status', ['tenant_id', 'status'], unique=False)
        batch_op.create_index('uq_payment_links_one_active_per_player_product', ['tenant_id', 'player_id', 'product_id'], unique=True, postgresql_where=sa.text("status = 'active'"), sqlite_where=sa.text("status = 'active'"))



def downgrade() -> None:
    with op.batch_alter_table('payment_links', schema=None) as batch_op:
        batch_op.drop_index('uq_payment_links_one_active_per_player_product', postgresql_where=sa.text("status = 'active'"), sqlite_where=sa.text("status = 'active'"))
        batch_op.drop_index('ix_payment_links_tenant_status')
        batch_op.drop_index(batch_op.f('ix_payment_links_product_id'))
        batch_op.drop_index(batch_op.f('ix_payment_links_price_tier_id'))
        batch_op.drop_index(batch_op.f('ix_payment_links_player_id'))
        batch_op.drop_index(batch_op.f('ix_payment_links_order_id'))

    op.drop_table('payment_links')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_orders_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_orders_product_id'))
        batch_op.drop_index(batch_op.f('ix_orders_player_id'))

    op.drop_table('orders')
    with op.batch_alter_table('price_tiers', schema=None) as batch_op:
        batch_op.drop_index('uq_price_tiers_default_per_product', postgresql_where=sa.text('is_default'), sqlite_where=sa.text('is_default'))
        batch_op.drop_index(batch_op.f('ix_price_tiers_product_id'))

    op.drop_table('price_tiers')
    with op.batch_alter_table('players', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_players_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_players_team_id'))
        batch_op.drop_index(batch_op.f('ix_players_parent_id'))

    op.drop_table('players')
    with op.batch_alter_table('email_messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_email_messages_tenant_id'))
        batch_op.drop_index('ix_email_messages_parent_status')

    op.drop_table('email_messages')
    with op.batch_alter_table('teams', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_teams_tenant_id'))

    op.drop_table('teams')
    with op.batch_alter_table('products', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_products_tenant_id'))

    op.drop_table('products')
    with op.batch_alter_table('parents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_parents_tenant_id'))

    op.drop_table('parents')
    with op.batch_alter_table('email_campaigns', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_email_campaigns_tenant_id'))

    op.drop_table('email_campaigns')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_audit_log_created_at'))

    op.drop_table('audit_log')
    op.drop_table('tenants')
    if op.get_bind().dialect.name == "postgresql":
        for enum_type in ENUM_TYPES:
            sa.Enum(name=enum_type).drop(op.get_bind(), checkfirst=True)
