"""The positions the balances read are the ledger's, whenever and however it is written.

``core.ledger.positions`` keeps per charge what is left and per family its credit; these tests
write the ledger in the ways that could leave them behind (not yet committed, rolled back, a
savepoint undone, another session reading, a migration) and check the balances and the stored
rows against the ledger.
"""

from __future__ import annotations

from sqlalchemy import select, text

from core.db import downgrade_database, make_engine, session_factory, unit_of_work, upgrade_database
from core.demo import build_demo_league
from core.ledger.entries import record_payment, reverse_entry
from core.ledger.positions import position_differences, rebuild_positions
from core.models import ChargePositionRow, FamilyCreditRow, PaymentMethod, Tenant
from core.reporting.balances import BalanceFilter, balance_summary, outstanding_balances
from tests.factories import acting


def total_of(session, books, parent) -> int:
    balances = outstanding_balances(session, books.treasurer, BalanceFilter(parent_ids=frozenset({parent.id})))
    return balances[0].total_cents if balances else 0


def cash(session, books, parent, cents):
    return record_payment(session, books.treasurer, parent_id=parent.id, amount_cents=cents, method=PaymentMethod.CASH)


def test_a_payment_shows_in_the_balances_of_its_own_transaction_before_it_commits(session, books):
    cash(session, books, books.zed, 5000)
    assert total_of(session, books, books.zed) == 10000
    assert balance_summary(session, books.treasurer).total_cents == 10000 + 36000
    session.commit()
    assert position_differences(session, books.tenant.id) == []


def test_a_payment_rolled_back_leaves_the_balances_as_they_were(session, books):
    cash(session, books, books.zed, 5000)
    assert total_of(session, books, books.zed) == 10000
    session.rollback()
    assert total_of(session, books, books.zed) == 15000
    assert position_differences(session, books.tenant.id) == []


def test_a_savepoint_rolled_back_undoes_only_what_it_wrote(session, books):
    cash(session, books, books.zed, 5000)
    assert total_of(session, books, books.zed) == 10000  # stored inside the transaction
    savepoint = session.begin_nested()
    cash(session, books, books.zed, 2500)
    cash(session, books, books.okafor, 15000)
    assert total_of(session, books, books.zed) == 7500
    savepoint.rollback()
    session.commit()
    assert (total_of(session, books, books.zed), total_of(session, books, books.okafor)) == (10000, 36000)
    assert position_differences(session, books.tenant.id) == []


def test_payments_in_released_savepoints_are_stored_by_the_commit(session, books):
    for cents in (1000, 2000):
        with session.begin_nested():
            cash(session, books, books.zed, cents)
    session.commit()
    assert total_of(session, books, books.zed) == 12000
    assert position_differences(session, books.tenant.id) == []


def test_another_session_reads_a_committed_payment_at_once(engine, session, books):
    cash(session, books, books.okafor, 20000)
    session.commit()
    with session_factory(engine)() as other:
        assert total_of(other, books, books.okafor) == 16000


def test_a_reversed_overpayment_takes_the_credit_away_again(session, books):
    change = cash(session, books, books.zed, 20000)
    session.commit()
    assert session.scalars(select(FamilyCreditRow.credit_cents)).all() == [5000]
    reverse_entry(session, books.treasurer, entry_id=change.entry_id, reason="bounced check")
    session.commit()
    assert session.scalars(select(FamilyCreditRow.credit_cents)).all() == []
    assert total_of(session, books, books.zed) == 15000
    assert position_differences(session, books.tenant.id) == []


def test_a_league_rebuilt_from_its_ledger_has_the_same_positions(session, books):
    cash(session, books, books.okafor, 17000)
    session.commit()
    before = session.execute(select(ChargePositionRow.charge_id, ChargePositionRow.open_cents)
                             .order_by(ChargePositionRow.charge_id)).all()
    session.execute(text("DELETE FROM charge_positions"))
    assert total_of(session, books, books.okafor) == 0  # nothing stored: nothing shown
    rebuild_positions(session, books.tenant.id)
    session.commit()
    assert session.execute(select(ChargePositionRow.charge_id, ChargePositionRow.open_cents)
                           .order_by(ChargePositionRow.charge_id)).all() == before


def test_the_migration_stores_the_positions_of_the_ledger_it_finds(database_url):
    engine = make_engine(database_url)
    try:
        with unit_of_work(engine) as session:
            build_demo_league(session, ledger_examples=True)
        with session_factory(engine)() as session:
            tenant = session.scalars(select(Tenant)).one()
            admin = acting(tenant)
            before = [(b.parent_id, b.total_cents, b.processing_cents, b.credit_cents, b.items)
                      for b in outstanding_balances(session, admin)]
        downgrade_database(database_url, "0012")
        upgrade_database(database_url)
        with session_factory(engine)() as session:
            assert position_differences(session, tenant.id) == []
            after = [(b.parent_id, b.total_cents, b.processing_cents, b.credit_cents, b.items)
                     for b in outstanding_balances(session, admin)]
        assert after == before and len(before) > 50
    finally:
        engine.dispose()
