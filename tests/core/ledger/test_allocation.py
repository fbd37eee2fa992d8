"""The allocation rules on their own: no database."""

from __future__ import annotations

from datetime import date

import pytest

from core.ledger.allocation import (
    AboveWhatIsOpen,
    OpenCharge,
    allocate,
    apply_credit,
    reopen_for_refund,
    spread_reduction,
)

SEPT, OCT, NOV = date(2026, 9, 1), date(2026, 10, 1), date(2026, 11, 1)
REGISTRATION = OpenCharge(1, SEPT, 15000)
OCTOBER_DUES = OpenCharge(2, OCT, 6000)
NOVEMBER_DUES = OpenCharge(3, NOV, 6000)
CHARGES = [NOVEMBER_DUES, REGISTRATION, OCTOBER_DUES]  # in no particular order


def test_a_payment_settles_the_oldest_due_charge_first():
    split = allocate(15000, CHARGES)
    assert split.parts == ((1, 15000),) and split.remainder_cents == 0


def test_a_payment_larger_than_one_charge_moves_on_to_the_next_oldest():
    assert allocate(18000, CHARGES).parts == ((1, 15000), (2, 3000))


def test_chosen_charges_come_first_then_the_oldest():
    split = allocate(9000, CHARGES, chosen=[3])
    assert split.parts == ((3, 6000), (1, 3000))


def test_a_partial_payment_leaves_the_rest_of_the_charge_open():
    split = allocate(5000, CHARGES)
    assert split.parts == ((1, 5000),) and split.remainder_cents == 0


def test_what_no_charge_takes_is_the_remainder_credit():
    split = allocate(30000, CHARGES)
    assert split.allocated_cents == 27000 and split.remainder_cents == 3000


def test_a_charge_billed_earlier_on_the_same_day_is_settled_first():
    same_day = [OpenCharge(9, SEPT, 100), OpenCharge(4, SEPT, 100)]
    assert allocate(100, same_day).parts == ((4, 100),)


def test_credit_is_carried_to_the_next_charge_oldest_payment_first():
    parts = apply_credit([(20, 4000), (10, 3000)], [OCTOBER_DUES, NOVEMBER_DUES])
    assert [(p.payment_id, p.charge_id, p.cents) for p in parts] == [(10, 2, 3000), (20, 2, 3000), (20, 3, 1000)]


def test_credit_with_nothing_open_stays_credit():
    assert apply_credit([(10, 3000)], []) == []


def test_a_reduction_on_one_charge_may_not_exceed_what_is_open_on_it():
    assert spread_reduction(6000, CHARGES, charge_id=2).parts == ((2, 6000),)
    with pytest.raises(AboveWhatIsOpen, match=r"\$60.01 is more than the \$60.00 open on charge 2"):
        spread_reduction(6001, CHARGES, charge_id=2)


def test_a_family_reduction_is_spread_oldest_first_and_never_becomes_credit():
    assert spread_reduction(16000, CHARGES).parts == ((1, 15000), (2, 1000))
    with pytest.raises(AboveWhatIsOpen, match=r"the \$270.00 the family has open"):
        spread_reduction(27001, CHARGES)


def test_a_refund_takes_back_the_overpayment_before_reopening_anything():
    assert reopen_for_refund(2000, unallocated_cents=3000, settled=[(5, 1, 15000)]) == []


def test_a_refund_reopens_what_the_payment_settled_latest_first():
    settled = [(5, 1, 15000), (7, 2, 6000)]
    assert reopen_for_refund(10000, unallocated_cents=1000, settled=settled) == [(2, 6000), (1, 3000)]
