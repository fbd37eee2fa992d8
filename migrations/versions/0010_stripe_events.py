"""Stripe's events as the incremental payment sync: a cursor per league, the events applied

``stripe_event_cursor`` holds, per league, when the last complete reading of ``GET /v1/events``
started; the next one lists from there minus an overlap. ``stripe_events_seen`` holds every
event a league applied (unique on the league and the event id): Stripe delivers an event at
least once and in no fixed order, and the row is written in the transaction of the event's
effect, so an event is applied once whatever happens. Its ``object_id`` (the session, charge or
dispute the event is about) lets a late, older snapshot of a failed session be recognised; its ``payment_intent_id`` tells
which session a refund or a dispute (which name only the PaymentIntent) is about, without asking
Stripe.

``payment_flag_kind`` gains ``dispute``, ``dispute_closed`` and ``refund_not_recorded``: on
PostgreSQL ``ALTER TYPE ... ADD VALUE`` outside the transaction (as 0002 does); on SQLite the
CHECK constraint is rebuilt in batch mode (``payment_flags`` is referred to by no other table).

Downgrade drops both tables and the flags of the new kinds (the sync before 0010 cannot show
them); on SQLite the CHECK goes back to four values. PostgreSQL keeps the values in the type:
there is no ``ALTER TYPE ... DROP VALUE``.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 09:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

OLD_KINDS = ('amount_mismatch', 'duplicate_payment', 'paid_after_deactivation', 'unknown_link')
NEW_KINDS = ('dispute', 'dispute_closed', 'refund_not_recorded')
OLD_KIND = sa.Enum(*OLD_KINDS, name='payment_flag_kind', create_constraint=True)
NEW_KIND = sa.Enum(*OLD_KINDS, *NEW_KINDS, name='payment_flag_kind', create_constraint=True)


def upgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        with op.get_context().autocommit_block():
            for kind in NEW_KINDS:
                op.execute(f"ALTER TYPE payment_flag_kind ADD VALUE IF NOT EXISTS '{kind}'")
    else:
        with op.batch_alter_table('payment_flags', schema=None) as batch_op:
            batch_op.alter_column('kind', existing_type=OLD_KIND, type_=NEW_KIND, existing_nullable=False)
    op.create_table(
        'stripe_event_cursor',
        sa.Column('tenant_id', sa.Integer(), nullable=False),
        sa.Column('read_until', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_stripe_event_cursor_tenant_id_tenants'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('tenant_id', name=op.f('pk_stripe_event_cursor')),
    )
    op.create_table(
        'stripe_events_seen',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('tenant_id', sa.Integer(), nullable=False),
        sa.Column('event_id', sa.String(length=255), nullable=False),
        sa.Column('event_type', sa.String(length=100), nullable=False),
        sa.Column('object_id', sa.String(length=255), nullable=True),
        sa.Column('payment_intent_id', sa.String(length=255), nullable=True),
        sa.Column('event_created', sa.DateTime(timezone=True), nullable=False),
        sa.Column('applied_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_stripe_events_seen_tenant_id_tenants'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_stripe_events_seen')),
        sa.UniqueConstraint('tenant_id', 'event_id', name=op.f('uq_stripe_events_seen_tenant_id_event_id')),
    )
    op.create_index('ix_stripe_events_seen_tenant_object', 'stripe_events_seen', ['tenant_id', 'object_id'])
    op.create_index('ix_stripe_events_seen_tenant_payment_intent', 'stripe_events_seen',
                    ['tenant_id', 'payment_intent_id'])


def downgrade() -> None:
    op.drop_index('ix_stripe_events_seen_tenant_payment_intent', table_name='stripe_events_seen')
    op.drop_index('ix_stripe_events_seen_tenant_object', table_name='stripe_events_seen')
    op.drop_table('stripe_events_seen')
    op.drop_table('stripe_event_cursor')
    kinds = ', '.join(f"'{kind}'" for kind in NEW_KINDS)
    op.execute(f"DELETE FROM payment_flags WHERE kind IN ({kinds})")
    if op.get_bind().dialect.name != 'postgresql':
        with op.batch_alter_table('payment_flags', schema=None) as batch_op:
            batch_op.alter_column('kind', existing_type=NEW_KIND, type_=OLD_KIND, existing_nullable=False)
