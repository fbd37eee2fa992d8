"""Recording payments, charges and adjustments, and reversing entries: what a treasurer sees after."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select

from core.errors import InvalidInput, NotFound
from core.ledger.accounts import family_account
from core.ledger.entries import record_adjustment, record_charge, record_payment, reverse_entry
from core.ledger.statement import family_statement
from core.models import AdjustmentKind, AuditEntry, LedgerEntry, PaymentMethod
from core.reporting.balances import BalanceFilter, outstanding_balances
from tests.factories import make_tenant


def owed(session, books, parent) -> dict[str, int]:
    """What the balances page shows for one family: item -> amount."""
    balances = outstanding_balances(session, books.treasurer, BalanceFilter(parent_ids=frozenset({parent.id})))
    if not balances:
        return {}
    return {f"{item.player_name} {item.product_name}": item.amount_cents for item in balances[0].items}


def pay(session, books, parent=None, cents=15000, **kwargs):
    change = record_payment(session, books.treasurer, parent_id=(parent or books.okafor).id, amount_cents=cents,
                            method=kwargs.pop("method", PaymentMethod.CASH), **kwargs)
    session.commit()
    return change


# -- payments ------------------------------------------------------------------------------------


def test_a_cash_payment_settles_the_oldest_charge_first(session, books):
    change = pay(session, books, cents=15000)
    assert owed(session, books, books.okafor) == {"Al Okafor Registration": 15000, "Amy Okafor Monthly dues": 6000}
    assert change.balance_cents == 21000 and change.credit_cents == 0 and change.overpaid_cents == 0
    assert "settles Registration for Amy (settled, $150.00)" in change.summary


def test_a_payment_settles_the_charges_its_payer_chose_first(session, books):
    pay(session, books, cents=6000, charge_ids=[books.dues_amy.id])
    assert owed(session, books, books.okafor) == {"Al Okafor Registration": 15000, "Amy Okafor Registration": 15000}


def test_a_partial_payment_leaves_the_rest_of_the_charge_owed(session, books):
    pay(session, books, parent=books.zed, cents=5000, reference="check 1042", method=PaymentMethod.CHECK)
    balances = outstanding_balances(session, books.treasurer, BalanceFilter(parent_ids=frozenset({books.zed.id})))
    [item] = balances[0].items
    assert (item.amount_cents, item.charge_id, balances[0].total_cents) == (10000, books.registration_bo.id, 10000)


def test_an_overpayment_is_credit_flagged_for_the_treasurer_and_the_family_owes_nothing(session, books):
    change = pay(session, books, parent=books.zed, cents=20000)
    assert (change.overpaid_cents, change.credit_cents, change.balance_cents) == (5000, 5000, -5000)
    assert "$50.00 more than was owed is credit (refund or keep it)" in change.summary
    assert owed(session, books, books.zed) == {}
    statement = family_statement(session, books.treasurer, books.zed.id)
    assert (statement.balance_cents, statement.credit_cents, statement.open) == (-5000, 5000, None)


def test_credit_settles_the_next_charge_billed(session, books):
    pay(session, books, parent=books.zed, cents=20000)  # $50.00 credit
    change = record_charge(session, books.treasurer, parent_id=books.zed.id, amount_cents=8000,
                           description="Tournament fee")
    session.commit()
    assert change.balance_cents == 3000 and change.credit_cents == 0
    assert owed(session, books, books.zed) == {" Tournament fee": 3000}


def test_every_entry_is_in_the_audit_log(session, books):
    change = pay(session, books, cents=16000)
    [row] = session.scalars(select(AuditEntry).where(AuditEntry.action == "ledger.payment")).all()
    assert row.details["entries"] == list(change.entry_ids) and len(change.entry_ids) == 3  # payment + two allocations
    assert row.actor == books.treasurer.identity and row.details["entry_id"] == change.entry_id


def test_a_stripe_payment_is_not_recorded_by_hand(session, books):
    with pytest.raises(InvalidInput, match="recorded by payment sync"):
        record_payment(session, books.treasurer, parent_id=books.okafor.id, amount_cents=100,
                       method=PaymentMethod.STRIPE)


@pytest.mark.parametrize(("cents", "currency", "error"), [
    (0, None, "positive number of cents"), (-500, None, "positive number of cents"),
    (500, "cad", "CAD is not this league's currency"),
])
def test_a_bad_amount_or_another_currency_writes_nothing(session, books, cents, currency, error):
    before = session.scalar(select(func.count()).select_from(LedgerEntry))
    with pytest.raises(InvalidInput, match=error):
        record_payment(session, books.treasurer, parent_id=books.okafor.id, amount_cents=cents,
                       method=PaymentMethod.CASH, currency=currency)
    session.rollback()
    assert session.scalar(select(func.count()).select_from(LedgerEntry)) == before


def test_a_parent_of_another_league_is_not_found(session, books):
    other = make_tenant(session)
    session.commit()
    from tests.factories import acting

    with pytest.raises(NotFound):
        record_payment(session, acting(other), parent_id=books.okafor.id, amount_cents=100, method=PaymentMethod.CASH)


def test_a_payment_in_the_future_is_refused(session, books):
    with pytest.raises(InvalidInput, match="in the future"):
        record_payment(session, books.treasurer, parent_id=books.okafor.id, amount_cents=100,
                       method=PaymentMethod.CASH, received_on=date(2999, 1, 1))


# -- adjustments ---------------------------------------------------------------------------------


def test_a_sibling_discount_on_one_charge(session, books):
    change = record_adjustment(session, books.treasurer, parent_id=books.okafor.id, amount_cents=2500,
                               kind=AdjustmentKind.DISCOUNT, reason="sibling discount", charge_id=books.registration_al.id)
    session.commit()
    assert owed(session, books, books.okafor)["Al Okafor Registration"] == 12500
    assert change.balance_cents == 33500


def test_an_adjustment_above_what_is_open_on_its_charge_is_refused(session, books):
    with pytest.raises(InvalidInput, match=r"\$60.01 is more than the \$60.00 open on charge"):
        record_adjustment(session, books.treasurer, parent_id=books.okafor.id, amount_cents=6001,
                          kind=AdjustmentKind.WAIVER, reason="coach's kid", charge_id=books.dues_amy.id)


def test_financial_aid_for_the_family_is_spread_oldest_first(session, books):
    record_adjustment(session, books.treasurer, parent_id=books.okafor.id, amount_cents=20000,
                      kind=AdjustmentKind.AID, reason="scholarship")
    session.commit()
    assert sum(owed(session, books, books.okafor).values()) == 36000 - 20000
    assert "Amy Okafor Monthly dues" in owed(session, books, books.okafor)


def test_an_adjustment_needs_a_reason(session, books):
    with pytest.raises(InvalidInput, match="Give a reason"):
        record_adjustment(session, books.treasurer, parent_id=books.okafor.id, amount_cents=100,
                          kind=AdjustmentKind.DISCOUNT, reason="  ")


# -- reversals -----------------------------------------------------------------------------------


def test_reversing_a_payment_restores_the_balance(session, books):
    before = family_account(session, books.treasurer, books.okafor.id, currency="usd").balance_cents
    change = pay(session, books, cents=15000)
    reversal = reverse_entry(session, books.treasurer, entry_id=change.entry_id, reason="entered twice")
    session.commit()
    assert reversal.balance_cents == before == 36000
    assert owed(session, books, books.okafor)["Amy Okafor Registration"] == 15000


def test_reversing_a_charge_turns_what_paid_it_into_credit_for_the_next_charge(session, books):
    pay(session, books, cents=15000)  # settles Amy's registration
    change = reverse_entry(session, books.treasurer, entry_id=books.registration_amy.id, reason="billed in error")
    session.commit()
    # The $150.00 now settles Al's registration instead.
    assert owed(session, books, books.okafor) == {"Amy Okafor Monthly dues": 6000}
    assert change.balance_cents == 6000


def test_reversing_a_discount_reopens_what_it_took_off(session, books):
    discount = record_adjustment(session, books.treasurer, parent_id=books.zed.id, amount_cents=5000,
                                 kind=AdjustmentKind.DISCOUNT, reason="early bird")
    reverse_entry(session, books.treasurer, entry_id=discount.entry_id, reason="not eligible")
    session.commit()
    assert owed(session, books, books.zed) == {"Bo Zed Registration": 15000}


def test_an_entry_is_reversed_once_and_a_reversal_is_not_reversed(session, books):
    change = pay(session, books, cents=100)
    reversal = reverse_entry(session, books.treasurer, entry_id=change.entry_id, reason="typo")
    session.commit()
    with pytest.raises(InvalidInput, match=f"already reversed \\(by entry {reversal.entry_id}\\)"):
        reverse_entry(session, books.treasurer, entry_id=change.entry_id, reason="again")
    with pytest.raises(InvalidInput, match="is a reversal"):
        reverse_entry(session, books.treasurer, entry_id=reversal.entry_id, reason="undo")


def test_an_unknown_entry_is_not_found(session, books):
    with pytest.raises(NotFound, match="no ledger entry 999999"):
        reverse_entry(session, books.treasurer, entry_id=999999, reason="?")


def test_a_withdrawn_players_charge_is_not_billed_and_credit_counts_when_they_sign_again(session, books):
    from core.models import PlayerStatus

    books.bo.status = PlayerStatus.WITHDRAWN
    session.commit()
    assert owed(session, books, books.zed) == {}
    change = pay(session, books, parent=books.zed, cents=10000)  # nothing billed: all of it is credit
    assert (change.overpaid_cents, change.balance_cents) == (10000, -10000)
    books.bo.status = PlayerStatus.SIGNED  # signed again: the charge is billed, next to the credit
    session.commit()
    assert owed(session, books, books.zed) == {"Bo Zed Registration": 5000}
    assert family_statement(session, books.treasurer, books.zed.id).balance_cents == 5000
