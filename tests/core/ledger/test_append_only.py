"""Money rows are append-only: no code in core changes or deletes one, and the database refuses it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.exc import DatabaseError

from core.ledger.entries import record_payment
from core.models import Allocation, Charge, LedgerEntry, Payment, PaymentMethod, PaymentState, Tenant

ROOT = Path(__file__).resolve().parents[3]
MONEY_MODELS = ("LedgerEntry", "Charge", "Payment", "Allocation", "Adjustment", "Reversal")
MONEY_TABLES = ("ledger_entries", "charges", "payments", "allocations", "adjustments", "reversals")
# What would change or delete a money row, as written in Python or in SQL.
WRITES = [
    re.compile(rf"\b(update|delete)\(\s*({'|'.join(MONEY_MODELS)})\b"),
    re.compile(rf"\b(UPDATE|DELETE\s+FROM)\s+({'|'.join(MONEY_TABLES)})\b", re.IGNORECASE),
    re.compile(r"\.(amount_cents|charge_id|payment_id|adjustment_id|reversed_entry_id)\s*=[^=]"),
    re.compile(r"session\.delete\("),
]
# The one change a money row allows: a processing payment's state.
ALLOWED = {("core/ledger/stripe_payments.py", "payment.state = state")}


def _code_lines():
    for path in sorted((ROOT / "core").rglob("*.py")):
        relative = str(path.relative_to(ROOT))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            yield relative, number, line


def test_no_code_in_core_updates_or_deletes_a_money_row():
    found = []
    for relative, number, line in _code_lines():
        code = line.split("#", 1)[0]
        if any(pattern.search(code) for pattern in WRITES):
            found.append(f"{relative}:{number}: {line.strip()}")
    # A link's charge_id is not a money row: it is set when a link becomes active.
    found = [hit for hit in found if "link.charge_id =" not in hit]
    assert found == []


def test_the_only_state_change_of_a_money_row_is_in_one_place():
    hits = [(relative, line.strip()) for relative, _, line in _code_lines() if re.search(r"\.state\s*=[^=]", line)
            and "core/ledger" in relative]
    assert set(hits) == ALLOWED


def test_the_scan_finds_an_update_of_a_money_row():
    assert any(p.search("session.execute(update(Payment).values(amount_cents=1))") for p in WRITES)
    assert any(p.search('session.execute(text("DELETE FROM charges"))') for p in WRITES)


@pytest.fixture
def recorded(session, books):
    change = record_payment(session, books.treasurer, parent_id=books.okafor.id, amount_cents=15000,
                            method=PaymentMethod.CASH)
    session.commit()
    return change


@pytest.mark.parametrize("statement", [
    lambda change: update(Payment).where(Payment.id == change.entry_id).values(amount_cents=1),
    lambda change: update(Charge).values(amount_cents=1),
    lambda change: update(Allocation).values(amount_cents=1),
    lambda change: update(LedgerEntry).values(recorded_by="someone else"),
    lambda change: update(Payment).where(Payment.id == change.entry_id).values(note="changed"),
    lambda change: delete(Allocation),
    lambda change: delete(Payment).where(Payment.id == change.entry_id),
])
def test_the_database_refuses_to_change_or_delete_a_money_row(session, recorded, statement):
    with pytest.raises(DatabaseError, match="append-only"):
        session.execute(statement(recorded))
    session.rollback()


def test_the_database_lets_a_payment_state_change(session, recorded):
    session.execute(update(Payment).where(Payment.id == recorded.entry_id).values(state=PaymentState.FAILED))
    session.rollback()


def test_a_whole_league_can_still_be_removed(session, books, recorded):
    session.execute(delete(Tenant).where(Tenant.id == books.tenant.id))
    session.commit()
    assert session.execute(text("SELECT count(*) FROM payments")).scalar_one() == 0
