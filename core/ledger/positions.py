"""The ledger's positions, stored: what is left of each charge, and each family's credit.

``core.ledger.accounts`` defines what a charge has open and what a family's credit is, from
every allocation, payment, refund and reversal. Reading that for a whole league means reading
every allocation it ever made; so the figures are also kept in two tables, a few rows per open
charge, which the league's balances (``core.reporting.balances``) read:

* ``charge_positions`` — per counting charge with something unsettled: ``open_cents`` and
  ``processing_cents``, with a copy of the charge's player, product, description, currency and
  due date (a charge is never edited);
* ``family_credits`` — per family with credit: ``credit_cents``.

They are not money rows: nothing is recorded in them. A family's rows are rewritten from the
ledger, with ``accounts``' own SQL, in the transaction of every write to its account, so they
never disagree with it:

* every ORM write of a money row (a charge, payment, adjustment, allocation or reversal added,
  a payment's state changed) marks its family, at flush;
* a bulk write that goes around the ORM (billing's inserts) marks its families itself
  (``mark_written``);
* before the transaction commits, and before the balances are read in it, the marked families'
  rows are rewritten (``bring_up_to_date``), each family locked against its account's writers;
* a savepoint rolled back marks again every family written in the transaction (a released one
  waits for the outer commit, so a loop of savepoints rewrites each family once).

``rebuild_positions`` rewrites a whole league's (a benchmark's ledger written in SQL);
``position_differences`` compares what is stored with the ledger (the tests, after every step).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import BigInteger, Select, cast, delete, event, func, insert, literal, select
from sqlalchemy.orm import Session, SessionTransaction, UOWTransaction

from core.ledger import accounts
from core.models import (
    Adjustment,
    Allocation,
    Charge,
    ChargePositionRow,
    FamilyCreditRow,
    Parent,
    Payment,
    Reversal,
)
from core.query_plans import FEW_FAMILIES, without_nested_loops

# At most this many families are rewritten by name (an IN list every database takes); more, and
# the whole league is.
CHUNK = 500

_MONEY_ROWS = (Charge, Payment, Adjustment, Allocation, Reversal)
_STALE = "ledger_positions_stale"  # (tenant id, parent id) to rewrite before the next read or commit
_WRITTEN = "ledger_positions_written"  # every family written in the transaction


def mark_written(session: Session, tenant_id: int, parent_ids: Iterable[int]) -> None:
    """The ledger of these families changed in ``session``'s transaction (by a write the ORM
    does not see): their positions are rewritten before the next read or the commit."""
    marked = {(tenant_id, int(parent_id)) for parent_id in parent_ids}
    session.info.setdefault(_STALE, set()).update(marked)
    session.info.setdefault(_WRITTEN, set()).update(marked)


def bring_up_to_date(session: Session) -> None:
    """Flush, then rewrite the positions of every family written since they were last
    rewritten in this transaction. Cheap when nothing was written."""
    if session.new or session.dirty:
        session.flush()
    stale = session.info.pop(_STALE, None)
    if not stale:
        return
    by_league: dict[int, set[int]] = {}
    for tenant_id, parent_id in stale:
        by_league.setdefault(tenant_id, set()).add(parent_id)
    for tenant_id, parent_ids in sorted(by_league.items()):
        _rewrite(session, tenant_id, sorted(parent_ids))


def rebuild_positions(session: Session, tenant_id: int) -> None:
    """Rewrite every family's positions in the league from its ledger (in the caller's
    transaction): after the ledger was written around the ORM, in SQL."""
    _rewrite(session, tenant_id, None)


def position_differences(session: Session, tenant_id: int) -> list[str]:
    """Where the stored positions differ from the ledger, in words (none: they agree)."""
    session.flush()
    stored = [getattr(ChargePositionRow, name) for name in _CHARGE_COLUMNS]
    stored_charges = {row[0]: tuple(row[2:]) for row in session.execute(
        select(*stored).where(ChargePositionRow.tenant_id == tenant_id)
    )}
    ledger_charges = {row[0]: tuple(row[2:]) for row in session.execute(_charge_rows(tenant_id, None))}
    stored_credit = {row[0]: int(row[1]) for row in session.execute(
        select(FamilyCreditRow.parent_id, FamilyCreditRow.credit_cents).where(FamilyCreditRow.tenant_id == tenant_id)
    )}
    ledger_credit = {row[0]: int(row[2]) for row in session.execute(_credit_rows(tenant_id, None))}
    differences = [f"charge {charge_id}: stored {stored_charges.get(charge_id)}, ledger {ledger_charges.get(charge_id)}"
                   for charge_id in sorted(set(stored_charges) | set(ledger_charges))
                   if stored_charges.get(charge_id) != ledger_charges.get(charge_id)]
    differences += [f"family {parent_id}: stored credit {stored_credit.get(parent_id)}, "
                    f"ledger {ledger_credit.get(parent_id)}"
                    for parent_id in sorted(set(stored_credit) | set(ledger_credit))
                    if stored_credit.get(parent_id) != ledger_credit.get(parent_id)]
    return differences


# -- rewriting ----------------------------------------------------------------------------------


def _rewrite(session: Session, tenant_id: int, parent_ids: Sequence[int] | None) -> None:
    """Rewrite the families' rows (``None``: the whole league's). More than ``CHUNK`` families
    (a billing run, a backfill) are rewritten as the whole league, in one pass over its ledger:
    the database aggregates a league at once far faster than a long list of families one IN list
    at a time, and needs no statistics of the rows just written to plan it well."""
    if parent_ids is not None and len(parent_ids) > CHUNK:
        parent_ids = None
    connection = session.connection()
    _lock(session, tenant_id, parent_ids)
    for model in (ChargePositionRow, FamilyCreditRow):
        statement = delete(model).where(model.tenant_id == tenant_id)
        if parent_ids is not None:
            statement = statement.where(model.parent_id.in_(parent_ids))
        connection.execute(statement)
    # Many families (or the whole league) aggregate much of the ledger: by hash joins, whatever
    # the statistics of rows just written say (``core.query_plans``).
    with without_nested_loops(connection, when=parent_ids is None or len(parent_ids) > FEW_FAMILIES):
        connection.execute(insert(ChargePositionRow).from_select(list(_CHARGE_COLUMNS), _charge_rows(tenant_id, parent_ids)))
        connection.execute(insert(FamilyCreditRow).from_select(
            ["parent_id", "tenant_id", "credit_cents"], _credit_rows(tenant_id, parent_ids)))


# A charge position's columns, in the order ``_charge_rows`` gives them.
_CHARGE_COLUMNS = ("charge_id", "tenant_id", "parent_id", "open_cents", "processing_cents", "player_id", "product_id",
                   "description", "currency", "due_on")


def _charge_rows(tenant_id: int, parent_ids: Sequence[int] | None) -> Select[*tuple[Any, ...]]:
    """Per counting charge with something unsettled: id, league, family, open, processing, and
    the charge's own columns the balances show (``_CHARGE_COLUMNS``)."""
    settled = accounts.charge_settlements(tenant_id, parent_ids).subquery("settled")
    processing = func.coalesce(settled.c.processing_cents, 0)
    unsettled = Charge.amount_cents - func.coalesce(settled.c.settled_cents, 0)
    statement: Select[*tuple[Any, ...]] = (
        select(Charge.id, literal(tenant_id), Charge.parent_id, cast(unsettled - processing, BigInteger),
               cast(processing, BigInteger), Charge.player_id, Charge.product_id, Charge.description, Charge.currency,
               Charge.due_on)
        .outerjoin(settled, settled.c.charge_id == Charge.id)
        .where(Charge.tenant_id == tenant_id, Charge.id.not_in(accounts.reversed_ids(tenant_id).scalar_subquery()),
               unsettled > 0)
    )
    if parent_ids is not None:
        statement = statement.where(Charge.parent_id.in_(parent_ids))
    return statement


def _credit_rows(tenant_id: int, parent_ids: Sequence[int] | None) -> Select[Any]:
    credit = accounts.family_credit(tenant_id, parent_ids).subquery("credit")
    return select(credit.c.parent_id, literal(tenant_id), cast(credit.c.credit_cents, BigInteger))


def _lock(session: Session, tenant_id: int, parent_ids: Sequence[int] | None) -> None:
    """The families' accounts, locked against a write to each (PostgreSQL; SQLite's one writer
    holds the whole database): a family's rows are rewritten by one transaction at a time, from
    what the one before it committed.

    ``FOR NO KEY UPDATE``: it waits for a family's writer (``lock_family``) and another rewrite,
    not for a transaction that merely added rows naming the family (their foreign keys' ``KEY
    SHARE`` locks): two backfills billing the same league wait for each other's charges, and must
    not also wait for each other here."""
    if session.get_bind().dialect.name != "postgresql":
        return
    families = select(Parent.id).where(Parent.tenant_id == tenant_id)
    if parent_ids is not None:
        families = families.where(Parent.id.in_(parent_ids))
    session.connection().execute(families.order_by(Parent.id).with_for_update(key_share=True)).all()


# -- following the ORM's writes -----------------------------------------------------------------


@event.listens_for(Session, "before_flush")
def _note_written_families(session: Session, flush_context: UOWTransaction, instances: object) -> None:
    written = [row for row in session.new if isinstance(row, _MONEY_ROWS)]
    written += [row for row in session.dirty if isinstance(row, Payment) and session.is_modified(row)]
    for row in written:
        mark_written(session, row.tenant_id, [row.parent_id])


@event.listens_for(Session, "before_commit")
def _rewrite_before_commit(session: Session) -> None:
    # Also called as a savepoint is released: its families are rewritten with the rest of the
    # transaction's, at the outer commit (or the next read), not once per savepoint.
    if not session.in_nested_transaction():
        bring_up_to_date(session)


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, previous_transaction: SessionTransaction) -> None:
    if previous_transaction.nested:
        # A savepoint rolled back may have undone rewrites made inside it: every family written
        # in the transaction is rewritten again before the next read or the commit.
        session.info.setdefault(_STALE, set()).update(session.info.get(_WRITTEN, ()))


@event.listens_for(Session, "after_transaction_end")
def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_STALE, None)
        session.info.pop(_WRITTEN, None)
