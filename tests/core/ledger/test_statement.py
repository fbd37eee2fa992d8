"""A family's statement: every entry in date order, a running balance, and what is open."""

from __future__ import annotations

from datetime import date

import pytest

from core.access.permissions import Role
from core.errors import PermissionDenied
from core.ledger.entries import record_adjustment, record_payment, reverse_entry
from core.ledger.statement import family_statement, statement_csv
from core.models import AdjustmentKind, LedgerEntryKind, PaymentMethod
from tests.factories import acting


def test_entries_in_date_order_with_a_running_balance(session, books):
    record_payment(session, books.treasurer, parent_id=books.zed.id, amount_cents=5000, method=PaymentMethod.CHECK,
                   reference="1042", received_on=date(2026, 9, 10), note="left at the desk")
    discount = record_adjustment(session, books.treasurer, parent_id=books.zed.id, amount_cents=2500,
                                 kind=AdjustmentKind.DISCOUNT, reason="sibling discount")
    reverse_entry(session, books.treasurer, entry_id=discount.entry_id, reason="only child")
    session.commit()

    statement = family_statement(session, books.treasurer, books.zed.id)

    assert [(line.kind, line.amount_cents, line.balance_cents) for line in statement.lines] == [
        (LedgerEntryKind.CHARGE, 15000, 15000),
        (LedgerEntryKind.PAYMENT, -5000, 10000),
        (LedgerEntryKind.ADJUSTMENT, -2500, 7500),
        (LedgerEntryKind.REVERSAL, 2500, 10000),
    ]
    payment = statement.lines[1]
    assert (payment.method, payment.reference, payment.note) == ("check", "1042", "left at the desk")
    assert statement.lines[2].reversed_by == statement.lines[3].entry_id
    assert statement.balance_cents == 10000 and statement.open is not None and statement.open.total_cents == 10000
    assert statement.parent_email == "ben@example.org"


def test_the_csv_has_one_row_per_entry(session, books):
    data = statement_csv(session, books.treasurer, books.okafor.id).decode("utf-8-sig").splitlines()
    assert data[0].startswith("date,entry,kind,description") and len(data) == 1 + 3


def test_a_coach_sees_no_statement(session, books):
    with pytest.raises(PermissionDenied):
        family_statement(session, acting(books.tenant, Role.COACH), books.zed.id)


def test_a_receipt_says_what_the_payment_settled_and_what_is_owed_after(session, books):
    from core.ledger.receipts import payment_receipt

    change = record_payment(session, books.treasurer, parent_id=books.okafor.id, amount_cents=18000,
                            method=PaymentMethod.CHECK, reference="1042", charge_ids=[books.dues_amy.id])
    session.commit()
    receipt = payment_receipt(session, books.treasurer, change.entry_id)
    assert [(line.description, line.player_name, line.cents) for line in receipt.settled] == [
        ("Registration", "Amy", 12000), ("Monthly dues", "Amy", 6000)]
    assert (receipt.method, receipt.reference, receipt.credit_cents, receipt.balance_cents) == ("check", "1042", 0, 18000)
