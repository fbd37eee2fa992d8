"""The rules that turn one link's completed Checkout Sessions into what is recorded and flagged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.models import LinkStatus
from core.payments.gateway import CompletedCheckout
from core.payments.reconciliation import FlagKind, LinkState, reconcile_link

T0 = datetime(2025, 9, 1, 12, 0, tzinfo=UTC)


def _link(**changes: object) -> LinkState:
    fields = {"status": LinkStatus.ACTIVE, "amount_cents": 15000, "currency": "usd", "checkout_session_id": None,
                  "processing": False, "single_payment": True}
    fields.update(changes)
    return LinkState(**fields)  # type: ignore[arg-type]


def _checkout(id: str, *, minutes: int = 0, status: str = "paid", amount: int | None = 15000) -> CompletedCheckout:
    return CompletedCheckout(id=id, payment_link_id="plink_1", payment_status=status, amount_total=amount,
                             currency="usd", created=T0 + timedelta(minutes=minutes))


def test_the_earliest_paid_session_wins_whatever_order_they_arrive_in():
    decision = reconcile_link(
        _link(), [_checkout("cs_late", minutes=5), _checkout("cs_early")], complete_history=False
    )
    assert decision.pay_with is not None and decision.pay_with.id == "cs_early"
    assert [(f.kind, f.checkout.id) for f in decision.flags] == [(FlagKind.DUPLICATE_PAYMENT, "cs_late")]
    assert "accepts one payment only" in decision.flags[0].message


def test_a_different_amount_is_recorded_as_paid_and_flagged():
    decision = reconcile_link(_link(), [_checkout("cs_1", amount=12000)], complete_history=False)
    assert decision.pay_with is not None and decision.amount_mismatch
    assert [f.kind for f in decision.flags] == [FlagKind.AMOUNT_MISMATCH]
    assert "$120.00" in decision.flags[0].message and "$150.00" in decision.flags[0].message


def test_a_payment_in_another_currency_is_a_mismatch():
    checkout = CompletedCheckout("cs_1", "plink_1", "paid", 15000, "cad", T0)
    assert reconcile_link(_link(), [checkout], complete_history=False).amount_mismatch


def test_a_session_still_processing_marks_the_link_processing_only():
    decision = reconcile_link(_link(), [_checkout("cs_1", status="unpaid")], complete_history=False)
    assert (decision.pay_with, decision.processing, decision.flags) == (None, True, ())


def test_processing_is_cleared_only_by_a_check_that_saw_every_session_of_the_link():
    link = _link(processing=True)
    assert reconcile_link(link, [], complete_history=False).processing is None
    assert reconcile_link(link, [], complete_history=True).processing is False


def test_an_already_recorded_session_changes_nothing_and_is_not_flagged():
    link = _link(status=LinkStatus.PAID, checkout_session_id="cs_1")
    decision = reconcile_link(link, [_checkout("cs_1")], complete_history=False)
    assert not decision.changes_link and decision.flags == ()


def test_a_second_payment_on_a_paid_link_is_flagged_not_recorded():
    link = _link(status=LinkStatus.PAID, checkout_session_id="cs_1", single_payment=False)
    decision = reconcile_link(link, [_checkout("cs_1"), _checkout("cs_2", minutes=60)], complete_history=False)
    assert not decision.changes_link
    assert [(f.kind, f.checkout.id) for f in decision.flags] == [(FlagKind.DUPLICATE_PAYMENT, "cs_2")]
    assert "one payment only" not in decision.flags[0].message


def test_a_payment_on_a_deactivated_link_is_recorded_and_flagged():
    decision = reconcile_link(_link(status=LinkStatus.DEACTIVATED), [_checkout("cs_1")], complete_history=True)
    assert decision.pay_with is not None
    assert [f.kind for f in decision.flags] == [FlagKind.PAID_AFTER_DEACTIVATION]


def test_a_payment_stripe_gave_no_currency_for_is_shown_in_the_links():
    link = _link(currency="cad", status=LinkStatus.DEACTIVATED)
    checkout = CompletedCheckout("cs_1", "plink_1", "paid", 15000, None, T0)
    [flag] = reconcile_link(link, [checkout], complete_history=False).flags
    assert "paid CA$150.00 on a link that had been deactivated" in flag.message
