"""Refunds through Stripe (the local stand-in) and made outside it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from core.access.permissions import Role
from core.backfill import commit_backfill, plan_backfill
from core.db import session_factory, unit_of_work
from core.errors import InvalidInput, PaymentProviderError, PermissionDenied
from core.ledger import refunds
from core.ledger.entries import record_payment, reverse_entry
from core.ledger.refunds import record_stripe_refund, refund_payment, run_refund
from core.models import Adjustment, AdjustmentKind, Payment, PaymentLink, PaymentMethod, RefundRequest
from core.payments.sync import sync_payments
from core.reporting.balances import outstanding_balances
from tests.factories import acting, make_parent, make_player, make_product, make_tenant


@pytest.fixture
def paid_through_stripe(session, stripe_gateway, stripe_stand_in):
    """Ana paid Amy's $150.00 registration through its Pay Now link; Ben owes Bo's."""
    tenant = make_tenant(session, "westside", name="Westside Hoops")
    make_product(session, tenant, "Registration", amount_cents=15000)
    ana, ben = make_parent(session, tenant, "Ana O'Neil"), make_parent(session, tenant, "Ben Zed")
    amy = make_player(session, tenant, ana, first_name="Amy")
    make_player(session, tenant, ben, first_name="Bo")
    session.commit()
    admin = acting(tenant)
    commit_backfill(session.get_bind(), admin, stripe_gateway, plan_backfill(session, admin), success_url="https://x.example/ok")
    link = session.scalars(select(PaymentLink).where(PaymentLink.player_id == amy.id)).one()
    stripe_stand_in.complete_checkout_session(link.stripe_payment_link_id)
    treasurer = acting(tenant, Role.TREASURER)
    sync_payments(session.get_bind(), treasurer, stripe_gateway)
    payment = session.scalars(select(Payment)).one()
    return {"tenant": tenant, "treasurer": treasurer, "ana": ana, "ben": ben, "payment": payment}


def owing(session, user):
    return {b.parent_name: b.total_cents for b in outstanding_balances(session, user)}


def refund_via_workflow(session, world, gateway, amount_cents, reason="half season", **options):
    """A refund as the family page makes it (``run_refund``: it commits in steps of its own)."""
    session.commit()
    outcome = run_refund(session_factory(session.get_bind()), world["treasurer"], payment_id=world["payment"].id,
                         amount_cents=amount_cents, reason=reason, gateway=gateway, **options)
    session.expire_all()
    return outcome.change


def crash_once_stripe_answered(monkeypatch):
    """The process stops once Stripe has refunded, before the ledger records the answer."""
    record_answer = refunds._record_answer
    calls = iter([None])

    def stop_then_work(*args, **kwargs):
        if next(calls, "again") is None:
            raise KeyboardInterrupt("the server stopped")
        return record_answer(*args, **kwargs)

    monkeypatch.setattr(refunds, "_record_answer", stop_then_work)


def crashed_refund(session, world, gateway, monkeypatch, amount_cents, **options):
    crash_once_stripe_answered(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        refund_via_workflow(session, world, gateway, amount_cents, **options)
    session.rollback()


def test_a_stripe_payment_is_refunded_through_stripe_and_what_it_paid_is_owed_again(
        session, paid_through_stripe, stripe_gateway, stripe_stand_in):
    world = paid_through_stripe
    change = refund_via_workflow(session, world, stripe_gateway, 5000, reason="moved to the half season")

    [request] = [r for r in stripe_stand_in.requests if (r.method, r.path) == ("POST", "/v1/refunds")]
    assert request.params["amount"] == "5000" and request.params["payment_intent"].startswith("pi_")
    [asked] = session.scalars(select(RefundRequest)).all()
    assert request.idempotency_key == f"ledger-refund:{world['tenant'].league_key}:q{asked.id}"
    assert request.params["metadata"]["refund_request"] == str(asked.id)
    assert asked.finished_at is not None and asked.stripe_refund_id is not None
    [refund] = stripe_stand_in.refunds.values()
    adjustment = session.get(Adjustment, change.entry_id)
    assert adjustment.stripe_refund_id == refund["id"]
    assert change.reopened and owing(session, world["treasurer"])["Ana O'Neil"] == 5000


def test_a_refund_with_the_charge_waived_leaves_nothing_owed(session, paid_through_stripe, stripe_gateway):
    world = paid_through_stripe
    refund_via_workflow(session, world, stripe_gateway, 15000, reason="player moved away", waive_reopened=True)
    assert "Ana O'Neil" not in owing(session, world["treasurer"])


def _stripe_refunds(stripe_stand_in):
    return [r for r in stripe_stand_in.requests if (r.method, r.path) == ("POST", "/v1/refunds")]


def test_a_refund_asked_again_after_a_crash_is_not_made_twice(session, paid_through_stripe, stripe_gateway,
                                                                stripe_stand_in, monkeypatch):
    world = paid_through_stripe
    crashed_refund(session, world, stripe_gateway, monkeypatch, 5000, waive_reopened=True)
    monkeypatch.setattr(refunds, "ANSWER_WAIT", timedelta(0))  # long enough ago: no answer is on its way
    again = refund_via_workflow(session, world, stripe_gateway, 5000)
    [stripe_refund] = stripe_stand_in.refunds.values()
    [adjustment] = session.scalars(select(Adjustment).where(Adjustment.kind == AdjustmentKind.REFUND)).all()
    assert (adjustment.id, adjustment.stripe_refund_id, adjustment.amount_cents) == (
        again.entry_id, stripe_refund["id"], 5000)
    assert "nothing more was refunded" in again.summary and len(_stripe_refunds(stripe_stand_in)) == 1
    assert "Ana O'Neil" not in owing(session, world["treasurer"])  # waived, as it was asked the first time


def test_a_refund_lost_in_a_crash_and_then_synced_is_not_made_again_when_asked_again(
        session, paid_through_stripe, stripe_gateway, stripe_stand_in, monkeypatch):
    """The crash, then payment sync records the refund from Stripe's events, then the treasurer
    asks for the same refund again: still one refund, at Stripe and in the ledger."""
    world = paid_through_stripe
    crashed_refund(session, world, stripe_gateway, monkeypatch, 5000)
    sync_payments(session.get_bind(), world["treasurer"], stripe_gateway)
    [synced] = session.scalars(select(Adjustment)).all()
    monkeypatch.setattr(refunds, "ANSWER_WAIT", timedelta(0))
    again = refund_via_workflow(session, world, stripe_gateway, 5000)
    assert len(stripe_stand_in.refunds) == 1 and len(_stripe_refunds(stripe_stand_in)) == 1
    assert [a.id for a in session.scalars(select(Adjustment)).all()] == [synced.id]
    assert again.entry_id == synced.id and "nothing more was refunded" in again.summary
    assert owing(session, world["treasurer"])["Ana O'Neil"] == 5000
    # Asked once more, now that the earlier request is finished, it is a refund of its own.
    refund_via_workflow(session, world, stripe_gateway, 5000, reason="the rest of the season")
    assert len(stripe_stand_in.refunds) == 2
    assert owing(session, world["treasurer"])["Ana O'Neil"] == 10000


def test_a_lost_answer_for_more_than_is_now_left_does_not_block_the_payment(
        session, paid_through_stripe, stripe_gateway, stripe_stand_in, monkeypatch):
    """$100 of $150 refunded, the answer lost, the sync records it: the last $50 asked later
    finishes the old request (already recorded) without refusing, and then can be refunded."""
    world = paid_through_stripe
    crashed_refund(session, world, stripe_gateway, monkeypatch, 10000)
    sync_payments(session.get_bind(), world["treasurer"], stripe_gateway)
    monkeypatch.setattr(refunds, "ANSWER_WAIT", timedelta(0))
    first = refund_via_workflow(session, world, stripe_gateway, 5000, reason="the rest")
    assert "nothing more was refunded" in first.summary and len(stripe_stand_in.refunds) == 1
    refund_via_workflow(session, world, stripe_gateway, 5000, reason="the rest")
    assert sorted(r["amount"] for r in stripe_stand_in.refunds.values()) == [5000, 10000]
    assert owing(session, world["treasurer"])["Ana O'Neil"] == 15000


def test_a_refund_asked_again_while_stripe_may_still_be_answering_is_refused(
        session, paid_through_stripe, stripe_gateway, stripe_stand_in, monkeypatch):
    world = paid_through_stripe
    crashed_refund(session, world, stripe_gateway, monkeypatch, 5000)
    with pytest.raises(InvalidInput, match=r"\$50.00 asked of Stripe by treasurer@example.org on .*\) is waiting "
                                           "for Stripe's answer"):
        refund_via_workflow(session, world, stripe_gateway, 2000, reason="something else")
    session.rollback()
    assert len(_stripe_refunds(stripe_stand_in)) == 1 and session.scalars(select(Adjustment)).all() == []


def test_a_refund_stripe_never_made_is_made_when_asked_again(session, paid_through_stripe, stripe_gateway,
                                                             stripe_stand_in, monkeypatch):
    """Stripe's answer was an error that does not say whether it refunded (a server error): the
    request waits; asked again later, Stripe's refunds show none for it, and the refund is made."""
    world = paid_through_stripe
    stripe_stand_in.inject("server_error", times=3, method="POST", path="/v1/refunds")  # the SDK tries 3 times
    with pytest.raises(PaymentProviderError):
        refund_via_workflow(session, world, stripe_gateway, 5000)
    session.rollback()
    assert stripe_stand_in.refunds == {}
    monkeypatch.setattr(refunds, "ANSWER_WAIT", timedelta(0))
    change = refund_via_workflow(session, world, stripe_gateway, 5000)
    assert len(stripe_stand_in.refunds) == 1 and "nothing more" not in change.summary
    assert [r.stripe_refund_id is None for r in session.scalars(select(RefundRequest).order_by(RefundRequest.id))] == [
        True, False]
    assert owing(session, world["treasurer"])["Ana O'Neil"] == 5000


def test_another_leagues_refund_with_the_same_request_number_is_not_taken_for_ours(
        session, paid_through_stripe, stripe_gateway, stripe_stand_in, monkeypatch):
    """A trial database on the same Stripe account made request 1 too, on a payment numbered
    the same: its refund is not this league's answer."""
    world = paid_through_stripe
    stripe_stand_in.inject("server_error", times=3, method="POST", path="/v1/refunds")
    with pytest.raises(PaymentProviderError):
        refund_via_workflow(session, world, stripe_gateway, 5000)
    session.rollback()
    [asked] = session.scalars(select(RefundRequest)).all()
    intent = stripe_gateway.payment_intent_of(world["payment"].reference)
    stripe_stand_in.make_refund(intent, 5000, metadata={"league_key": "another-database", "refund_request": str(asked.id),
                                                        "payment_id": str(world["payment"].id)})
    monkeypatch.setattr(refunds, "ANSWER_WAIT", timedelta(0))
    change = refund_via_workflow(session, world, stripe_gateway, 5000)
    assert "nothing more" not in change.summary and len(stripe_stand_in.refunds) == 2


def test_stripe_refusing_a_refund_writes_nothing(session, paid_through_stripe, stripe_gateway, stripe_stand_in):
    world = paid_through_stripe
    stripe_stand_in.inject("error", method="POST", path="/v1/refunds", status=402, message="Insufficient funds")
    with pytest.raises(Exception, match="Insufficient funds"):
        refund_via_workflow(session, world, stripe_gateway, 5000, reason="x")
    session.rollback()
    assert session.scalars(select(Adjustment)).all() == []
    # A refusal is certain: nothing waits, and the refund can be asked again at once.
    refund_via_workflow(session, world, stripe_gateway, 5000, reason="x")
    assert len(stripe_stand_in.refunds) == 1


def test_a_stripe_payment_needs_stripe_unless_the_refund_was_made_outside_it(session, paid_through_stripe):
    world = paid_through_stripe
    with pytest.raises(InvalidInput, match="refund it through Stripe"):
        refund_payment(session, world["treasurer"], payment_id=world["payment"].id, amount_cents=100, reason="x")
    change = refund_payment(session, world["treasurer"], payment_id=world["payment"].id, amount_cents=15000,
                            reason="refunded in the Stripe dashboard", outside_stripe=True)
    session.commit()
    assert session.get(Adjustment, change.entry_id).stripe_refund_id is None
    assert owing(session, world["treasurer"])["Ana O'Neil"] == 15000


def test_refunding_an_overpayment_by_check_reopens_nothing(session, paid_through_stripe):
    world = paid_through_stripe
    overpaid = record_payment(session, world["treasurer"], parent_id=world["ben"].id, amount_cents=18000,
                              method=PaymentMethod.CHECK, reference="311")
    assert overpaid.overpaid_cents == 3000
    change = refund_payment(session, world["treasurer"], payment_id=overpaid.entry_id, amount_cents=3000,
                            reason="paid too much; check 5005")
    session.commit()
    assert (change.reopened, change.balance_cents, change.credit_cents) == ((), 0, 0)


def test_a_refund_above_what_is_left_of_the_payment_is_refused(session, paid_through_stripe):
    world = paid_through_stripe
    refund_payment(session, world["treasurer"], payment_id=world["payment"].id, amount_cents=10000, reason="a",
                   outside_stripe=True)
    with pytest.raises(InvalidInput, match=r"\$60.00 is more than the \$50.00 left of payment"):
        refund_payment(session, world["treasurer"], payment_id=world["payment"].id, amount_cents=6000, reason="b",
                       outside_stripe=True)


def test_a_refund_made_by_mistake_outside_stripe_can_be_reversed_and_a_stripe_one_cannot(
        session, paid_through_stripe, stripe_gateway):
    world = paid_through_stripe
    by_mistake = refund_payment(session, world["treasurer"], payment_id=world["payment"].id, amount_cents=15000,
                                reason="wrong family", outside_stripe=True)
    reverse_entry(session, world["treasurer"], entry_id=by_mistake.entry_id, reason="recorded for the wrong family")
    session.commit()
    assert "Ana O'Neil" not in owing(session, world["treasurer"])
    real = refund_via_workflow(session, world, stripe_gateway, 100, reason="c")
    with pytest.raises(InvalidInput, match="cannot take a refund back"):
        reverse_entry(session, world["treasurer"], entry_id=real.entry_id, reason="oops")
    with pytest.raises(InvalidInput, match="reverse its refund first"):
        reverse_entry(session, world["treasurer"], entry_id=world["payment"].id, reason="oops")


def _refund_recorded_by_sync_when_stripe_answers(monkeypatch, stripe_gateway, world, into):
    """Stripe's gateway, hooked: once Stripe has refunded, payment sync records (and commits)
    that refund from Stripe's ``charge.refunded`` event before the refund being made here is
    written."""
    refund_at_stripe = stripe_gateway.refund

    def refund_then_sync(**kwargs):
        receipt = refund_at_stripe(**kwargs)
        with unit_of_work(into["sessions"]) as session:
            into["synced"] = record_stripe_refund(
                session, world["treasurer"], payment_id=world["payment"].id, stripe_refund_id=receipt.id,
                amount_cents=receipt.amount_cents, reason=f"refunded in Stripe (refund {receipt.id})").entry_id
        return receipt

    monkeypatch.setattr(stripe_gateway, "refund", refund_then_sync)


def _refund_through_the_workflow(session, world, stripe_gateway, into):
    into["sessions"] = session_factory(session.get_bind())
    return run_refund(into["sessions"], world["treasurer"], payment_id=world["payment"].id, amount_cents=5000,
                      reason="moved to the half season", gateway=stripe_gateway)


@pytest.mark.parametrize("sync_commits_first", [False, True], ids=["seen-when-stripe-answers", "race-at-insert"])
def test_a_stripe_refund_payment_sync_recorded_first_is_reported_once_and_not_as_an_error(
        session, paid_through_stripe, stripe_gateway, stripe_stand_in, monkeypatch, sync_commits_first):
    world = paid_through_stripe
    session.commit()
    into: dict = {}
    _refund_recorded_by_sync_when_stripe_answers(monkeypatch, stripe_gateway, world, into)
    if sync_commits_first:  # the check finds nothing: the sync's row lands between the check and the insert
        looked_up = refunds._recorded_refund
        calls = iter([lambda *args: None])
        monkeypatch.setattr(refunds, "_recorded_refund", lambda *args: next(calls, looked_up)(*args))

    outcome = _refund_through_the_workflow(session, world, stripe_gateway, into)

    [stripe_refund] = stripe_stand_in.refunds.values()
    ledger_refunds = session.scalars(select(Adjustment).where(Adjustment.kind == AdjustmentKind.REFUND)).all()
    assert [(r.id, r.stripe_refund_id, r.amount_cents) for r in ledger_refunds] == [
        (into["synced"], stripe_refund["id"], 5000)]
    assert outcome.change.entry_id == into["synced"]
    assert f"entry {into['synced']}" in outcome.change.summary
    assert outcome.change.balance_cents == 5000 and outcome.balance == "owes $50.00"
    assert owing(session, world["treasurer"])["Ana O'Neil"] == 5000


def test_only_who_refunds_may_run_a_refund(session, paid_through_stripe, stripe_gateway, stripe_stand_in):
    world = paid_through_stripe
    session.commit()
    for role in (Role.COACH,):
        with pytest.raises(PermissionDenied):
            run_refund(session_factory(session.get_bind()), acting(world["tenant"], role),
                       payment_id=world["payment"].id, amount_cents=100, reason="x", gateway=stripe_gateway)
    assert stripe_stand_in.refunds == {} and session.scalars(select(RefundRequest)).all() == []
