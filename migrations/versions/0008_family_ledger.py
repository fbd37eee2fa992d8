"""the family ledger: charges, payments, allocations, adjustments, reversals

"Owed" was "an active payment link". Now a ledger is the source of truth and a link is one way
to pay a charge. Every money row shares its id with a ``ledger_entries`` row (who recorded it,
when, how), so one id names one entry whatever its kind.

Existing data moves in, so every family owes what it owed before:

* every active or paid link gets its charge (what it is for: the order, or the player's
  product), due the day the link was made, and ``payment_links.charge_id`` names it. Links
  deactivated here (replaced, withdrawn) were not owed and get none. Two links for the same
  thing (a replaced link paid after all, next to its successor) get ``#2`` on the second key;
* a paid link's payment (method ``stripe``, its Checkout Session as the reference, the amount
  Stripe reported or else the link's) settles its charge; a payment above the charge is the
  family's credit, one below leaves the rest open (both were flagged by payment sync);
* a link whose payment is processing gets a ``processing`` payment on its charge.

Money rows are append-only, in the database too: triggers refuse an UPDATE or DELETE of a
charge, payment, allocation, adjustment, reversal or ledger entry, except a payment's
``state``. Removing a whole league (its ``tenants`` row first, the rest by cascade) is allowed.

Downgrade: refused while the ledger holds what payment links cannot hold (a payment that is
not through Stripe, an adjustment, a reversal): those would be lost. Otherwise it drops the
triggers, the ``charge_id`` column and the tables; the links are as they were. On PostgreSQL
the enum types are dropped too (nothing else uses them).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10 09:00:00.000000
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

ENTRY_KIND = sa.Enum('charge', 'payment', 'allocation', 'adjustment', 'reversal',
                     name='ledger_entry_kind', create_constraint=True)
ENTRY_ORIGIN = sa.Enum('manual', 'backfill', 'payment_sync', 'credit', 'price_change', 'refund', 'migration',
                       name='ledger_entry_origin', create_constraint=True)
CHARGE_PURPOSE = sa.Enum('product', 'order', 'period', 'installment', 'fee', name='charge_purpose',
                         create_constraint=True)
PAYMENT_METHOD = sa.Enum('stripe', 'cash', 'check', 'bank', 'other', name='payment_method', create_constraint=True)
PAYMENT_STATE = sa.Enum('processing', 'settled', 'failed', name='payment_state', create_constraint=True)
ADJUSTMENT_KIND = sa.Enum('discount', 'waiver', 'aid', 'write_off', 'refund', name='adjustment_kind',
                          create_constraint=True)
ENUMS = (ENTRY_KIND, ENTRY_ORIGIN, CHARGE_PURPOSE, PAYMENT_METHOD, PAYMENT_STATE, ADJUSTMENT_KIND)

MONEY_TABLES = ('ledger_entries', 'charges', 'payments', 'allocations', 'adjustments', 'reversals')
# The one column of a money row that changes (a processing payment settles or fails).
CHANGING_COLUMNS = {'payments': {'state'}}

ACTIVE_INDEX = 'uq_payment_links_one_active_per_player_product'
MINTING_INDEX = 'uq_payment_links_one_minting_per_player_product'
PAIR = ['tenant_id', 'player_id', 'product_id']
MIGRATED_BY = 'migration 0008'


def _partial(predicate: str) -> dict:
    return {'postgresql_where': sa.text(predicate), 'sqlite_where': sa.text(predicate)}


def _owner_columns(table: str) -> list[sa.Column]:
    """id (the entry's), tenant and parent: the first columns of every money table but the entries'."""
    return [
        sa.Column('id', sa.Integer(), sa.ForeignKey('ledger_entries.id', name=f'fk_{table}_id_ledger_entries'),
                  nullable=False),
        sa.Column('tenant_id', sa.Integer(), sa.ForeignKey('tenants.id', name=f'fk_{table}_tenant_id_tenants',
                                                           ondelete='CASCADE'), nullable=False),
        sa.Column('parent_id', sa.Integer(), sa.ForeignKey('parents.id', name=f'fk_{table}_parent_id_parents'),
                  nullable=False),
    ]


def upgrade() -> None:
    _create_tables()
    _add_link_charge_column()
    _move_links_into_the_ledger()
    _create_append_only_triggers()


def _create_tables() -> None:
    op.create_table(
        'ledger_entries',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('tenant_id', sa.Integer(), nullable=False),
        sa.Column('parent_id', sa.Integer(), nullable=False),
        sa.Column('kind', ENTRY_KIND, nullable=False),
        sa.Column('origin', ENTRY_ORIGIN, nullable=False),
        sa.Column('recorded_by', sa.String(length=320), nullable=False),
        sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['parent_id'], ['parents.id'], name='fk_ledger_entries_parent_id_parents'),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name='fk_ledger_entries_tenant_id_tenants',
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name='pk_ledger_entries'),
    )
    op.create_index('ix_ledger_entries_tenant_parent', 'ledger_entries', ['tenant_id', 'parent_id'])

    op.create_table(
        'charges',
        *_owner_columns('charges'),
        sa.Column('player_id', sa.Integer(), sa.ForeignKey('players.id', name='fk_charges_player_id_players'),
                  nullable=True),
        sa.Column('purpose', CHARGE_PURPOSE, nullable=False),
        sa.Column('product_id', sa.Integer(), sa.ForeignKey('products.id', name='fk_charges_product_id_products'),
                  nullable=True),
        sa.Column('order_id', sa.Integer(), sa.ForeignKey('orders.id', name='fk_charges_order_id_orders'),
                  nullable=True),
        sa.Column('period', sa.String(length=16), nullable=True),
        sa.Column('charge_key', sa.String(length=200), nullable=False),
        sa.Column('description', sa.String(length=300), nullable=False),
        sa.Column('amount_cents', sa.Integer(), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('due_on', sa.Date(), nullable=False),
        sa.CheckConstraint('amount_cents > 0', name='ck_charges_amount_positive'),
        sa.PrimaryKeyConstraint('id', name='pk_charges'),
        sa.UniqueConstraint('tenant_id', 'charge_key', name='uq_charges_tenant_id_charge_key'),
    )
    op.create_index('ix_charges_tenant_parent', 'charges', ['tenant_id', 'parent_id'])
    for column in ('player_id', 'product_id', 'order_id'):
        op.create_index(f'ix_charges_{column}', 'charges', [column])

    op.create_table(
        'payments',
        *_owner_columns('payments'),
        sa.Column('method', PAYMENT_METHOD, nullable=False),
        sa.Column('amount_cents', sa.Integer(), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('received_on', sa.Date(), nullable=False),
        sa.Column('reference', sa.String(length=255), nullable=True),
        sa.Column('state', PAYMENT_STATE, nullable=False),
        sa.Column('payment_link_id', sa.Integer(),
                  sa.ForeignKey('payment_links.id', name='fk_payments_payment_link_id_payment_links'), nullable=True),
        sa.Column('note', sa.Text(), nullable=True),
        sa.CheckConstraint('amount_cents > 0', name='ck_payments_amount_positive'),
        sa.PrimaryKeyConstraint('id', name='pk_payments'),
    )
    op.create_index('ix_payments_tenant_parent', 'payments', ['tenant_id', 'parent_id'])
    op.create_index('ix_payments_payment_link_id', 'payments', ['payment_link_id'])
    op.create_index('uq_payments_stripe_reference', 'payments', ['tenant_id', 'reference'], unique=True,
                    **_partial("method = 'stripe'"))

    op.create_table(
        'adjustments',
        *_owner_columns('adjustments'),
        sa.Column('kind', ADJUSTMENT_KIND, nullable=False),
        sa.Column('amount_cents', sa.Integer(), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('charge_id', sa.Integer(), sa.ForeignKey('charges.id', name='fk_adjustments_charge_id_charges'),
                  nullable=True),
        sa.Column('payment_id', sa.Integer(),
                  sa.ForeignKey('payments.id', name='fk_adjustments_payment_id_payments'), nullable=True),
        sa.Column('stripe_refund_id', sa.String(length=255), nullable=True),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.CheckConstraint('amount_cents > 0', name='ck_adjustments_amount_positive'),
        sa.CheckConstraint(
            "(kind = 'refund' AND payment_id IS NOT NULL AND charge_id IS NULL) "
            "OR (kind <> 'refund' AND payment_id IS NULL AND stripe_refund_id IS NULL)",
            name='ck_adjustments_refund_of_a_payment',
        ),
        sa.PrimaryKeyConstraint('id', name='pk_adjustments'),
        sa.UniqueConstraint('stripe_refund_id', name='uq_adjustments_stripe_refund_id'),
    )
    op.create_index('ix_adjustments_tenant_parent', 'adjustments', ['tenant_id', 'parent_id'])
    op.create_index('ix_adjustments_charge_id', 'adjustments', ['charge_id'])
    op.create_index('ix_adjustments_payment_id', 'adjustments', ['payment_id'])

    op.create_table(
        'allocations',
        *_owner_columns('allocations'),
        sa.Column('charge_id', sa.Integer(), sa.ForeignKey('charges.id', name='fk_allocations_charge_id_charges'),
                  nullable=False),
        sa.Column('payment_id', sa.Integer(),
                  sa.ForeignKey('payments.id', name='fk_allocations_payment_id_payments'), nullable=True),
        sa.Column('adjustment_id', sa.Integer(),
                  sa.ForeignKey('adjustments.id', name='fk_allocations_adjustment_id_adjustments'), nullable=True),
        sa.Column('amount_cents', sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "(amount_cents > 0 AND (payment_id IS NULL) <> (adjustment_id IS NULL)) "
            "OR (amount_cents < 0 AND payment_id IS NOT NULL AND adjustment_id IS NOT NULL)",
            name='ck_allocations_settles_or_reopens',
        ),
        sa.PrimaryKeyConstraint('id', name='pk_allocations'),
    )
    op.create_index('ix_allocations_tenant_charge', 'allocations', ['tenant_id', 'charge_id'])
    for column in ('charge_id', 'payment_id', 'adjustment_id'):
        op.create_index(f'ix_allocations_{column}', 'allocations', [column])

    op.create_table(
        'reversals',
        *_owner_columns('reversals'),
        sa.Column('reversed_entry_id', sa.Integer(),
                  sa.ForeignKey('ledger_entries.id', name='fk_reversals_reversed_entry_id_ledger_entries'),
                  nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.CheckConstraint('reversed_entry_id <> id', name='ck_reversals_not_itself'),
        sa.PrimaryKeyConstraint('id', name='pk_reversals'),
        sa.UniqueConstraint('reversed_entry_id', name='uq_reversals_reversed_entry_id'),
    )
    op.create_index('ix_reversals_tenant_parent', 'reversals', ['tenant_id', 'parent_id'])


def _add_link_charge_column() -> None:
    postgresql = op.get_bind().dialect.name == 'postgresql'
    if not postgresql:
        # SQLite rebuilds the table: the partial indexes are dropped and made again so their
        # WHERE clauses are kept (see 0002).
        op.drop_index(ACTIVE_INDEX, table_name='payment_links', **_partial("status = 'active'"))
        op.drop_index(MINTING_INDEX, table_name='payment_links', **_partial("status = 'minting'"))
    # SQLite rebuilds payment_links: with foreign keys on, dropping the old table would fail (or
    # cascade) for the rows that refer to it (payment_flags), so they are off while it is rebuilt.
    with _sqlite_foreign_keys_off(postgresql), op.batch_alter_table('payment_links', schema=None) as batch_op:
        batch_op.add_column(sa.Column('charge_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_payment_links_charge_id_charges', 'charges', ['charge_id'], ['id'])
        batch_op.create_index('ix_payment_links_charge_id', ['charge_id'], unique=False)
    if not postgresql:
        op.create_index(ACTIVE_INDEX, 'payment_links', PAIR, unique=True, **_partial("status = 'active'"))
        op.create_index(MINTING_INDEX, 'payment_links', PAIR, unique=True, **_partial("status = 'minting'"))


# -- the data move ---------------------------------------------------------------------------

_meta = sa.MetaData()
_links = sa.Table(
    'payment_links', _meta,
    *(sa.Column(name, sa.Integer()) for name in ('id', 'tenant_id', 'player_id', 'product_id', 'order_id',
                                                 'amount_cents', 'paid_amount_cents', 'charge_id')),
    sa.Column('currency', sa.String()), sa.Column('status', sa.String()), sa.Column('processing', sa.Boolean()),
    sa.Column('checkout_session_id', sa.String()), sa.Column('created_at', sa.DateTime(timezone=True)),
    sa.Column('paid_at', sa.DateTime(timezone=True)),
)
_players = sa.Table('players', _meta, sa.Column('id', sa.Integer()), sa.Column('parent_id', sa.Integer()))
_products = sa.Table('products', _meta, sa.Column('id', sa.Integer()), sa.Column('name', sa.String()))
_entries = sa.Table(
    'ledger_entries', _meta,
    *(sa.Column(name, sa.Integer()) for name in ('id', 'tenant_id', 'parent_id')),
    sa.Column('kind', ENTRY_KIND), sa.Column('origin', ENTRY_ORIGIN), sa.Column('recorded_by', sa.String()),
    sa.Column('recorded_at', sa.DateTime(timezone=True)),
)
_charges = sa.Table(
    'charges', _meta,
    *(sa.Column(name, sa.Integer()) for name in ('id', 'tenant_id', 'parent_id', 'player_id', 'product_id',
                                                 'order_id', 'amount_cents')),
    sa.Column('purpose', CHARGE_PURPOSE),
    *(sa.Column(name, sa.String()) for name in ('charge_key', 'description', 'currency')),
    sa.Column('due_on', sa.Date()),
)
_payments = sa.Table(
    'payments', _meta,
    *(sa.Column(name, sa.Integer()) for name in ('id', 'tenant_id', 'parent_id', 'amount_cents', 'payment_link_id')),
    sa.Column('method', PAYMENT_METHOD), sa.Column('state', PAYMENT_STATE),
    *(sa.Column(name, sa.String()) for name in ('currency', 'reference', 'note')),
    sa.Column('received_on', sa.Date()),
)
_allocations = sa.Table(
    'allocations', _meta,
    *(sa.Column(name, sa.Integer()) for name in ('id', 'tenant_id', 'parent_id', 'charge_id', 'payment_id',
                                                 'amount_cents')),
)
_BATCH = 5000


def _move_links_into_the_ledger() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(_links, _players.c.parent_id, _products.c.name.label('product_name'))
        .join(_players, _players.c.id == _links.c.player_id)
        .join(_products, _products.c.id == _links.c.product_id)
        .where(sa.text("payment_links.status IN ('active', 'paid')"))
        .order_by(_links.c.id)
    ).all()
    next_id = 1
    keys_used: dict[tuple[int, str], int] = defaultdict(int)
    entries, charges, payments, allocations, link_charges = [], [], [], [], []

    def entry(row, kind: str, at: datetime | None) -> int:  # type: ignore[no-untyped-def]
        nonlocal next_id
        entry_id, next_id = next_id, next_id + 1
        entries.append({'id': entry_id, 'tenant_id': row.tenant_id, 'parent_id': row.parent_id, 'kind': kind,
                        'origin': 'migration', 'recorded_by': MIGRATED_BY, 'recorded_at': at or row.created_at})
        return entry_id

    for row in rows:
        base_key = f'order:o{row.order_id}' if row.order_id is not None else f'product:pl{row.player_id}:pr{row.product_id}'
        keys_used[(row.tenant_id, base_key)] += 1
        seen = keys_used[(row.tenant_id, base_key)]
        charge_id = entry(row, 'charge', row.created_at)
        charges.append({
            'id': charge_id, 'tenant_id': row.tenant_id, 'parent_id': row.parent_id, 'player_id': row.player_id,
            'purpose': 'order' if row.order_id is not None else 'product', 'product_id': row.product_id,
            'order_id': row.order_id, 'charge_key': base_key if seen == 1 else f'{base_key}#{seen}',
            'description': row.product_name[:300], 'amount_cents': row.amount_cents, 'currency': row.currency,
            'due_on': _day(row.created_at),
        })
        link_charges.append({'link_id': row.id, 'charge_id': charge_id})
        if row.status == 'paid':
            amount = row.paid_amount_cents if row.paid_amount_cents and row.paid_amount_cents > 0 else row.amount_cents
            state, reference, received = 'settled', row.checkout_session_id, row.paid_at or row.created_at
        elif row.processing:
            amount, state, reference, received = row.amount_cents, 'processing', None, row.created_at
        else:
            continue
        payment_id = entry(row, 'payment', received)
        payments.append({
            'id': payment_id, 'tenant_id': row.tenant_id, 'parent_id': row.parent_id, 'method': 'stripe',
            'amount_cents': amount, 'currency': row.currency, 'received_on': _day(received), 'reference': reference,
            'state': state, 'payment_link_id': row.id,
            'note': 'paid through a payment link before the ledger' if state == 'settled'
            else 'processing through a payment link before the ledger',
        })
        allocation_id = entry(row, 'allocation', received)
        allocations.append({'id': allocation_id, 'tenant_id': row.tenant_id, 'parent_id': row.parent_id,
                            'charge_id': charge_id, 'payment_id': payment_id,
                            'amount_cents': min(amount, row.amount_cents)})
    for table, values in ((_entries, entries), (_charges, charges), (_payments, payments),
                          (_allocations, allocations)):
        for start in range(0, len(values), _BATCH):
            bind.execute(sa.insert(table), values[start:start + _BATCH])
    for start in range(0, len(link_charges), _BATCH):
        bind.execute(
            sa.update(_links).where(_links.c.id == sa.bindparam('link_id')).values(charge_id=sa.bindparam('charge_id')),
            link_charges[start:start + _BATCH],
        )
    if bind.dialect.name == 'postgresql' and entries:
        # The ids were given explicitly; the sequence must continue after them.
        bind.execute(sa.text("SELECT setval(pg_get_serial_sequence('ledger_entries', 'id'), :last)"),
                     {'last': next_id - 1})


def _day(moment: datetime | None) -> date:
    if moment is None:
        return datetime.now(UTC).date()
    if moment.tzinfo is None:  # SQLite hands back naive UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).date()


# -- append-only, in the database ------------------------------------------------------------

_REFUSAL = '{table} are append-only: record a reversal instead of changing or deleting one'


def _create_append_only_triggers() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(
            """
            CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                -- Removing a whole league (its tenants row first, then the rest by cascade) is allowed.
                IF TG_OP = 'DELETE' AND NOT EXISTS (SELECT 1 FROM tenants WHERE id = OLD.tenant_id) THEN
                    RETURN OLD;
                END IF;
                RAISE EXCEPTION '% are append-only: record a reversal instead of changing or deleting one',
                    TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
            END $$
            """
        )
        for table in MONEY_TABLES:
            changes = _guarded_columns(table)
            update = f"UPDATE OF {', '.join(changes)}" if table in CHANGING_COLUMNS else 'UPDATE'
            op.execute(f'CREATE TRIGGER {table}_append_only BEFORE {update} OR DELETE ON {table} '
                       f'FOR EACH ROW EXECUTE FUNCTION ledger_append_only()')
        return
    for table in MONEY_TABLES:
        refusal = _REFUSAL.format(table=table)
        update = f"UPDATE OF {', '.join(_guarded_columns(table))}" if table in CHANGING_COLUMNS else 'UPDATE'
        op.execute(f"CREATE TRIGGER {table}_append_only_update BEFORE {update} ON {table} "
                   f"BEGIN SELECT RAISE(ABORT, '{refusal}'); END")
        op.execute(f"CREATE TRIGGER {table}_append_only_delete BEFORE DELETE ON {table} "
                   f"WHEN EXISTS (SELECT 1 FROM tenants WHERE id = OLD.tenant_id) "
                   f"BEGIN SELECT RAISE(ABORT, '{refusal}'); END")


def _guarded_columns(table: str) -> list[str]:
    columns = [column['name'] for column in sa.inspect(op.get_bind()).get_columns(table)]
    return [name for name in columns if name not in CHANGING_COLUMNS.get(table, set())]


def _drop_append_only_triggers() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for table in MONEY_TABLES:
            op.execute(f'DROP TRIGGER IF EXISTS {table}_append_only ON {table}')
        op.execute('DROP FUNCTION IF EXISTS ledger_append_only()')
        return
    for table in MONEY_TABLES:
        op.execute(f'DROP TRIGGER IF EXISTS {table}_append_only_update')
        op.execute(f'DROP TRIGGER IF EXISTS {table}_append_only_delete')


# -- downgrade -------------------------------------------------------------------------------


def downgrade() -> None:
    bind = op.get_bind()
    kept = bind.execute(sa.text(
        "SELECT (SELECT count(*) FROM payments WHERE method <> 'stripe') "
        "+ (SELECT count(*) FROM adjustments) + (SELECT count(*) FROM reversals)"
    )).scalar_one()
    if kept:
        raise RuntimeError(
            f"the ledger holds {kept} entries payment links cannot hold (payments by cash, check, bank or "
            "other, adjustments, reversals); downgrading below revision 0008 would lose them"
        )
    _drop_append_only_triggers()
    postgresql = bind.dialect.name == 'postgresql'
    # What refers to payment_links goes first (SQLite rebuilds that table below), the charges it
    # refers to last.
    for table in ('reversals', 'allocations', 'adjustments', 'payments'):
        op.drop_table(table)
    if not postgresql:
        op.drop_index(ACTIVE_INDEX, table_name='payment_links', **_partial("status = 'active'"))
        op.drop_index(MINTING_INDEX, table_name='payment_links', **_partial("status = 'minting'"))
    with _sqlite_foreign_keys_off(postgresql), op.batch_alter_table('payment_links', schema=None) as batch_op:
        batch_op.drop_index('ix_payment_links_charge_id')
        batch_op.drop_constraint('fk_payment_links_charge_id_charges', type_='foreignkey')
        batch_op.drop_column('charge_id')
    if not postgresql:
        op.create_index(ACTIVE_INDEX, 'payment_links', PAIR, unique=True, **_partial("status = 'active'"))
        op.create_index(MINTING_INDEX, 'payment_links', PAIR, unique=True, **_partial("status = 'minting'"))
    op.drop_table('charges')
    op.drop_table('ledger_entries')
    if postgresql:
        for enum_type in ENUMS:
            enum_type.drop(bind, checkfirst=True)


@contextmanager
def _sqlite_foreign_keys_off(postgresql: bool) -> Iterator[None]:
    """On SQLite, foreign keys off while a table others refer to is rebuilt; on again and checked
    after (``PRAGMA foreign_keys`` changes nothing inside a transaction, hence the autocommit
    blocks). Nothing on PostgreSQL, which alters the table in place."""
    if postgresql:
        yield
        return
    context = op.get_context()
    enabled = bool(op.get_bind().exec_driver_sql('PRAGMA foreign_keys').scalar())
    with context.autocommit_block():
        op.execute('PRAGMA foreign_keys=OFF')
    try:
        yield
    finally:
        if enabled:
            with context.autocommit_block():
                op.execute('PRAGMA foreign_keys=ON')
    broken = op.get_bind().exec_driver_sql('PRAGMA foreign_key_check').all()
    if broken:
        raise RuntimeError(f"rebuilding payment_links broke {len(broken)} foreign keys: {broken[:5]}")
