"""Payment links follow charges: backfill, cash at the gym, payment sync, and Stripe (the local stand-in)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from core.access.permissions import Role
from core.backfill import PlanAction, commit_backfill, plan_backfill
from core.email.campaigns import build_manifest
from core.email.registry import OUTSTANDING_BALANCE
from core.errors import PermissionDenied
from core.ledger.entries import record_adjustment, record_payment
from core.ledger.links import switch_off_retired_links
from core.models import AdjustmentKind, Charge, LinkStatus, Payment, PaymentLink, PaymentMethod, PaymentState
from core.payments.sync import sync_payments
from core.reporting.balances import BalanceFilter, outstanding_balances
from tests.factories import acting, make_parent, make_player, make_product, make_tenant

SUCCESS_URL = "https://westside.example/thanks"


@pytest.fixture
def league(session):
    tenant = make_tenant(session, "westside", name="Westside Hoops")
    registration = make_product(session, tenant, "Registration", amount_cents=15000)
    ana = make_parent(session, tenant, "Ana O'Neil", "ana@example.org")
    ben = make_parent(session, tenant, "Ben Zed", "ben@example.org")
    amy = make_player(session, tenant, ana, first_name="Amy")
    bo = make_player(session, tenant, ben, first_name="Bo")
    session.commit()
    return {"tenant": tenant, "admin": acting(tenant), "treasurer": acting(tenant, Role.TREASURER),
                "registration": registration, "ana": ana, "ben": ben, "amy": amy, "bo": bo}


def backfill(session, league, gateway):
    result = commit_backfill(session.get_bind(), league["admin"], gateway, plan_backfill(session, league["admin"]),
                             success_url=SUCCESS_URL)
    assert result.ok, result.summary()
    return result


def link_of(session, player) -> PaymentLink:
    return session.scalars(select(PaymentLink).where(PaymentLink.player_id == player.id)
                           .order_by(PaymentLink.id.desc())).first()


def owing(session, league) -> dict[str, int]:
    return {b.parent_name: b.total_cents for b in outstanding_balances(session, league["admin"])}


def test_the_backfill_bills_what_is_owed_and_ties_each_link_to_its_charge(session, league, stripe_gateway):
    backfill(session, league, stripe_gateway)
    link = link_of(session, league["amy"])
    charge = session.get(Charge, link.charge_id)
    assert (charge.amount_cents, charge.charge_key) == (15000, f"product:pl{league['amy'].id}:pr{league['registration'].id}")
    [item] = outstanding_balances(session, league["admin"], BalanceFilter(parent_ids=frozenset({league["ana"].id})))[0].items
    assert (item.pay_url, item.charge_id) == (link.url, charge.id)


def test_a_second_backfill_bills_nothing_twice(session, league, stripe_gateway):
    backfill(session, league, stripe_gateway)
    backfill(session, league, stripe_gateway)
    assert session.scalar(select(func.count()).select_from(Charge)) == 2


def test_a_cash_payment_switches_the_paid_charges_link_off_and_the_family_is_not_reminded(
        session, league, stripe_gateway, stripe_stand_in):
    backfill(session, league, stripe_gateway)
    link = link_of(session, league["amy"])
    change = record_payment(session, league["treasurer"], parent_id=league["ana"].id, amount_cents=15000,
                            method=PaymentMethod.CASH)
    session.commit()
    assert change.links_to_switch_off == (link.id,)
    session.refresh(link)
    assert (link.status, link.stripe_deactivation_pending) == (LinkStatus.DEACTIVATED, True)

    result = switch_off_retired_links(session_factory_of(session), league["treasurer"], stripe_gateway,
                                      change.links_to_switch_off)

    assert result.ok and result.switched_off == [link.id]
    assert stripe_stand_in.payment_links[link.stripe_payment_link_id]["active"] is False
    session.refresh(link)
    assert not link.stripe_deactivation_pending
    manifest = build_manifest(session, league["admin"], OUTSTANDING_BALANCE)
    assert [entry.parent_name for entry in manifest.recipients] == ["Ben Zed"]
    assert {entry.parent_name: entry.skip_reason for entry in manifest.skipped} == {"Ana O'Neil": "nothing owed"}


def test_a_link_stripe_could_not_switch_off_is_left_for_the_next_backfill(
        session, league, stripe_gateway, stripe_stand_in):
    backfill(session, league, stripe_gateway)
    link = link_of(session, league["amy"])
    change = record_payment(session, league["treasurer"], parent_id=league["ana"].id, amount_cents=15000,
                            method=PaymentMethod.CASH)
    session.commit()
    stripe_stand_in.inject("server_error", times=None, method="POST", path="/v1/payment_links/")
    result = switch_off_retired_links(session_factory_of(session), league["treasurer"], stripe_gateway,
                                      change.links_to_switch_off)
    assert not result.ok and [link_id for link_id, _ in result.still_on] == [link.id]
    stripe_stand_in.clear_faults()

    backfill(session, league, stripe_gateway)  # retries every link still marked

    assert stripe_stand_in.payment_links[link.stripe_payment_link_id]["active"] is False


def test_a_partly_paid_charge_loses_its_link_and_the_next_backfill_links_what_is_open(
        session, league, stripe_gateway, stripe_stand_in):
    backfill(session, league, stripe_gateway)
    old = link_of(session, league["amy"])
    record_payment(session, league["treasurer"], parent_id=league["ana"].id, amount_cents=5000,
                   method=PaymentMethod.CHECK, reference="1042")
    session.commit()
    [item] = outstanding_balances(session, league["admin"], BalanceFilter(parent_ids=frozenset({league["ana"].id})))[0].items
    assert (item.amount_cents, item.pay_url) == (10000, "")  # a partly paid charge has no per-item link

    plan = plan_backfill(session, league["admin"])
    [minting] = [i for i in plan.items if i.player_id == league["amy"].id]
    assert (minting.action, minting.amount_cents) == (PlanAction.MINT, 10000)
    backfill(session, league, stripe_gateway)

    new = link_of(session, league["amy"])
    assert new.id != old.id and (new.amount_cents, new.status, new.charge_id) == (10000, LinkStatus.ACTIVE, old.charge_id)
    assert stripe_stand_in.payment_links[old.stripe_payment_link_id]["active"] is False
    [item] = outstanding_balances(session, league["admin"], BalanceFilter(parent_ids=frozenset({league["ana"].id})))[0].items
    assert item.pay_url == new.url


def test_cash_received_before_any_link_is_credit_that_settles_the_charge_when_it_is_billed(
        session, league, stripe_gateway, stripe_stand_in):
    change = record_payment(session, league["treasurer"], parent_id=league["ana"].id, amount_cents=15000,
                            method=PaymentMethod.CASH)
    session.commit()
    assert change.overpaid_cents == 15000  # nothing billed yet: all credit, flagged

    backfill(session, league, stripe_gateway)

    assert link_of(session, league["amy"]) is None  # settled by the credit: no link minted
    assert owing(session, league) == {"Ben Zed": 15000}


def test_a_waiver_retires_the_link_too(session, league, stripe_gateway, stripe_stand_in):
    backfill(session, league, stripe_gateway)
    link = link_of(session, league["bo"])
    change = record_adjustment(session, league["treasurer"], parent_id=league["ben"].id, amount_cents=15000,
                               kind=AdjustmentKind.WAIVER, reason="coach's family", charge_id=link.charge_id)
    session.commit()
    assert change.links_to_switch_off == (link.id,) and owing(session, league) == {"Ana O'Neil": 15000}


def test_a_stripe_payment_becomes_one_ledger_payment_however_often_sync_sees_it(
        session, league, stripe_gateway, stripe_stand_in):
    backfill(session, league, stripe_gateway)
    link = link_of(session, league["amy"])
    checkout = stripe_stand_in.complete_checkout_session(link.stripe_payment_link_id)

    sync_payments(session.get_bind(), league["treasurer"], stripe_gateway)
    sync_payments(session.get_bind(), league["treasurer"], stripe_gateway, full=True)

    [payment] = session.scalars(select(Payment)).all()
    assert (payment.method, payment.reference, payment.amount_cents, payment.state, payment.payment_link_id) == (
        PaymentMethod.STRIPE, checkout["id"], 15000, PaymentState.SETTLED, link.id)
    assert owing(session, league) == {"Ben Zed": 15000}


def test_a_stripe_payment_processing_is_shown_as_processing_then_settles(
        session, league, stripe_gateway, stripe_stand_in):
    backfill(session, league, stripe_gateway)
    link = link_of(session, league["amy"])
    checkout = stripe_stand_in.complete_checkout_session(link.stripe_payment_link_id, paid=False)
    sync_payments(session.get_bind(), league["treasurer"], stripe_gateway)
    ana = next(b for b in outstanding_balances(session, league["admin"]) if b.parent_name == "Ana O'Neil")
    assert [(i.amount_cents, i.processing) for i in ana.items] == [(15000, True)] and ana.total_cents == 0

    stripe_stand_in.settle_checkout_session(checkout["id"])
    sync_payments(session.get_bind(), league["treasurer"], stripe_gateway)

    [payment] = session.scalars(select(Payment)).all()
    assert (payment.state, payment.reference) == (PaymentState.SETTLED, checkout["id"])
    assert owing(session, league) == {"Ben Zed": 15000}


def test_a_stripe_payment_above_the_charge_is_credit_for_the_next_one(session, league, stripe_gateway, stripe_stand_in):
    backfill(session, league, stripe_gateway)
    link = link_of(session, league["amy"])
    stripe_stand_in.complete_checkout_session(link.stripe_payment_link_id, amount_total=20000)
    result = sync_payments(session.get_bind(), league["treasurer"], stripe_gateway)
    assert result.flags and result.flags[0].kind.value == "amount_mismatch"
    from core.ledger.entries import record_charge

    change = record_charge(session, league["treasurer"], parent_id=league["ana"].id, amount_cents=8000,
                           description="Tournament fee")
    session.commit()
    assert change.balance_cents == 3000  # $50.00 of credit settled part of it


def test_a_price_change_bills_an_unpaid_charge_again_at_the_new_price(session, league, stripe_gateway, stripe_stand_in):
    from core.roster.importing import import_roster

    backfill(session, league, stripe_gateway)
    old = link_of(session, league["amy"])
    products = b"product,kind,required,amount\nRegistration,one_time,yes,175.00\n"
    assert not import_roster(session, league["admin"], products, commit=True).errors
    session.commit()

    backfill(session, league, stripe_gateway)

    new = link_of(session, league["amy"])
    assert (new.amount_cents, session.get(Charge, new.charge_id).amount_cents) == (17500, 17500)
    assert new.charge_id != old.charge_id
    assert owing(session, league) == {"Ana O'Neil": 17500, "Ben Zed": 17500}


def test_only_who_records_payments_may_switch_links_off(session, league, stripe_gateway):
    coach = acting(league["tenant"], Role.COACH)
    with pytest.raises(PermissionDenied):
        switch_off_retired_links(session_factory_of(session), coach, stripe_gateway, [1])
    with pytest.raises(PermissionDenied):
        switch_off_retired_links(session_factory_of(session), None, stripe_gateway, [1])  # type: ignore[arg-type]


def session_factory_of(session):
    from core.db import session_factory

    return session_factory(session.get_bind())


def test_a_coach_cannot_apply_a_ledger_change(session, league, stripe_gateway):
    from core.ledger.workflows import apply_ledger_change

    coach = acting(league["tenant"], Role.COACH)
    with pytest.raises(PermissionDenied):
        apply_ledger_change(session_factory_of(session), coach,
                            lambda s: record_payment(s, coach, parent_id=league["ana"].id, amount_cents=100,
                                                     method=PaymentMethod.CASH),
                            gateway=stripe_gateway)
    assert session.scalars(select(Payment)).all() == []
