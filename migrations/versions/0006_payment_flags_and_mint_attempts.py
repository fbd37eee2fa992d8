"""payment flags in a table of their own; a random attempt token on each link reservation

Payment flags. Payment sync decided which flagged payments were new by reading back the
``flags`` of earlier ``sync`` entries of the audit log. They get a table, ``payment_flags``
(league, link, Checkout Session, kind, still processing or not, the sentence shown, when),
unique on (league, session, kind, processing): what made two audit entries the same flag.
The flags recorded in the audit log so far are carried over once, here, the earliest entry of
each; the code never reads the audit log. Downgrade drops the table: the audit log still holds
every flag (sync keeps writing them there), which is what the code before 0006 reads.

Attempt tokens. A reservation's idempotency key was made from its row id alone. A reservation
Stripe refuses is deleted, and SQLite gives the next row the same id (the highest id is
reused), so the next attempt sent the same key and Stripe replayed the refusal forever.
``payment_links.mint_attempt`` holds a random token set when a row is reserved, and the key
includes it. Rows reserved before 0006 keep NULL, and with it the key they were first sent
with, so a reservation an interrupted run left is still finished with its very request.
A plain ``ADD COLUMN`` (nullable) on both databases.

Downgrade: refused while a reservation with a token exists (the code before 0006 would send
it with another key, and could mint a second link): run the backfill again to finish it first.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 09:00:00.000000
"""

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

FLAG_KINDS = ('amount_mismatch', 'duplicate_payment', 'paid_after_deactivation', 'unknown_link')
# Stripe's payment statuses that mean the checkout's money has arrived (CompletedCheckout.paid).
SETTLED = ('paid', 'no_payment_required')

audit_log = sa.table(
    'audit_log',
    sa.column('id', sa.Integer), sa.column('tenant_id', sa.Integer), sa.column('action', sa.String),
    sa.column('details', sa.JSON), sa.column('created_at', sa.DateTime(timezone=True)),
)
payment_links = sa.table(
    'payment_links',
    sa.column('id', sa.Integer), sa.column('tenant_id', sa.Integer), sa.column('stripe_payment_link_id', sa.String),
)


def upgrade() -> None:
    op.add_column('payment_links', sa.Column('mint_attempt', sa.String(length=32), nullable=True))
    flags = op.create_table(
        'payment_flags',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('tenant_id', sa.Integer(), nullable=False),
        sa.Column('payment_link_id', sa.Integer(), nullable=True),
        sa.Column('stripe_payment_link_id', sa.String(length=255), nullable=True),
        sa.Column('checkout_session_id', sa.String(length=255), nullable=False),
        sa.Column('kind', sa.Enum(*FLAG_KINDS, name='payment_flag_kind', create_constraint=True), nullable=False),
        sa.Column('processing', sa.Boolean(), nullable=False),
        sa.Column('detail', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['payment_link_id'], ['payment_links.id'],
                                name=op.f('fk_payment_flags_payment_link_id_payment_links')),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_payment_flags_tenant_id_tenants'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_payment_flags')),
        sa.UniqueConstraint('tenant_id', 'checkout_session_id', 'kind', 'processing',
                            name=op.f('uq_payment_flags_tenant_id_checkout_session_id_kind_processing')),
    )
    with op.batch_alter_table('payment_flags', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payment_flags_payment_link_id'), ['payment_link_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_payment_flags_tenant_id'), ['tenant_id'], unique=False)
    assert flags is not None
    rows = list(_flags_in_the_audit_log(op.get_bind()))
    if rows:
        op.bulk_insert(flags, rows)


def _flags_in_the_audit_log(connection: sa.Connection) -> Iterable[dict[str, Any]]:
    """Each flag the audit log holds, once (its earliest entry), as a ``payment_flags`` row."""
    links = {
        link_id: (tenant_id, stripe_id)
        for link_id, tenant_id, stripe_id in connection.execute(
            sa.select(payment_links.c.id, payment_links.c.tenant_id, payment_links.c.stripe_payment_link_id)
        )
    }
    entries = connection.execute(
        sa.select(audit_log.c.tenant_id, audit_log.c.details, audit_log.c.created_at)
        .where(audit_log.c.action == 'sync', audit_log.c.tenant_id.is_not(None))
        .order_by(audit_log.c.created_at, audit_log.c.id)
    )
    seen: set[tuple[int, str, str, bool]] = set()
    for tenant_id, details, created_at in entries:
        for flag in (details or {}).get('flags', []) if isinstance(details, Mapping) else []:
            row = _flag_row(tenant_id, flag, created_at, links)
            if row is None:
                continue
            key = (tenant_id, row['checkout_session_id'], row['kind'], row['processing'])
            if key not in seen:
                seen.add(key)
                yield row


def _flag_row(tenant_id: int, flag: Any, created_at: Any,
              links: Mapping[int, tuple[int, str | None]]) -> dict[str, Any] | None:
    """An audit entry's flag (``{"key": "kind:session:payment status", "kind", "session",
    "link_id", "message"}``) as a row; None for anything that does not read as one."""
    if not isinstance(flag, Mapping):
        return None
    kind, session_id = flag.get('kind'), flag.get('session')
    if kind not in FLAG_KINDS or not isinstance(session_id, str) or not session_id:
        return None
    key = str(flag.get('key') or '')
    payment_status = key.rsplit(':', 1)[-1] if ':' in key else 'paid'
    link_id = flag.get('link_id')
    link = links.get(link_id) if isinstance(link_id, int) else None
    if link is not None and link[0] != tenant_id:
        link = None  # never tie a flag to another league's link
    return {
        'tenant_id': tenant_id,
        'payment_link_id': link_id if link is not None else None,
        'stripe_payment_link_id': link[1] if link is not None else None,
        'checkout_session_id': session_id[:255],
        'kind': kind,
        'processing': payment_status not in SETTLED,
        'detail': str(flag.get('message') or ''),
        'created_at': created_at,
    }


def downgrade() -> None:
    bind = op.get_bind()
    waiting = bind.execute(
        sa.text("SELECT count(*) FROM payment_links WHERE status = 'minting' AND mint_attempt IS NOT NULL")
    ).scalar_one()
    if waiting:
        raise RuntimeError(
            f"{waiting} payment links are still being minted with an attempt token; run the backfill again to "
            "finish them before downgrading below revision 0006"
        )
    with op.batch_alter_table('payment_flags', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payment_flags_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_payment_flags_payment_link_id'))
    op.drop_table('payment_flags')
    if bind.dialect.name == 'postgresql':
        sa.Enum(name='payment_flag_kind').drop(bind, checkfirst=True)
    op.drop_column('payment_links', 'mint_attempt')
