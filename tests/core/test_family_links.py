"""A family's "Pay the balance" link: minted at the balance, kept at it, paid through Stripe (the stand-in)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from core.access.permissions import Role
from core.backfill import commit_backfill, describe_totals, plan_backfill
from core.email.campaigns import build_manifest
from core.email.registry import OUTSTANDING_BALANCE
from core.errors import PermissionDenied
from core.ledger.entries import record_adjustment, record_charge, record_payment, reverse_entry
from core.ledger.workflows import apply_ledger_change
from core.models import (
    AdjustmentKind,
    Allocation,
    BalancePrice,
    Charge,
    FamilyLink,
    FlagKind,
    LinkStatus,
    Payment,
    PaymentFlag,
    PaymentMethod,
    PaymentState,
)
from core.payments import family_links
from core.payments.family_links import FamilyLinkMinting, refresh_family_links
from core.payments.sync import sync_payments
from core.reporting.balances import outstanding_balances
from core.reporting.export import ExportKind, render_csv
from tests.factories import acting, make_parent, make_player, make_product, make_tenant
from tests.stripe_stand_in import as_list

SUCCESS_URL = "https://westside.example/thanks"


@pytest.fixture
def league(session):
    tenant = make_tenant(session, "riverside", name="Riverside Basketball")
    make_product(session, tenant, "Registration", amount_cents=15000)
    make_product(session, tenant, "Uniform fee", amount_cents=4000)
    garcia = make_parent(session, tenant, "Elena García", "elena@example.org")
    make_player(session, tenant, garcia, first_name="Lucía", last_name="García")
    make_player(session, tenant, garcia, first_name="Mateo", last_name="García")
    okafor = make_parent(session, tenant, "Chidi Okafor", "chidi@example.org")
    make_player(session, tenant, okafor, first_name="Ada", last_name="Okafor")
    make_player(session, tenant, okafor, first_name="Obi", last_name="Okafor")
    session.commit()
    return {"tenant": tenant, "admin": acting(tenant), "treasurer": acting(tenant, Role.TREASURER),
            "garcia": garcia, "okafor": okafor}


@pytest.fixture
def billed(session, league, stripe_gateway):
    """The backfill bills every player and mints the item links and each family's balance link."""
    result = commit_backfill(session.get_bind(), league["admin"], stripe_gateway,
                             plan_backfill(session, league["admin"]), success_url=SUCCESS_URL, family_links=True)
    assert result.ok, result.summary()
    assert result.family_links_minted == 2
    return league


def minting(gateway) -> FamilyLinkMinting:
    return FamilyLinkMinting(gateway, SUCCESS_URL)


def balance_of(session, league, parent) -> int:
    session.expire_all()
    return sum(b.total_cents for b in outstanding_balances(session, league["admin"]) if b.parent_id == parent.id)


def family_rows(session, parent) -> list[FamilyLink]:
    session.expire_all()
    return list(session.scalars(select(FamilyLink).where(FamilyLink.parent_id == parent.id).order_by(FamilyLink.id)))


def active_link(session, parent) -> FamilyLink | None:
    return next((row for row in family_rows(session, parent) if row.status is LinkStatus.ACTIVE), None)


def change(session, league, gateway, write):
    return apply_ledger_change(sessions_of(session), league["treasurer"], write, gateway=gateway,
                               success_url=SUCCESS_URL)


def sessions_of(session):
    from core.db import session_factory

    return session_factory(session.get_bind())


def test_each_family_gets_one_link_for_its_whole_balance_on_the_leagues_balance_product(
        session, billed, stripe_stand_in):
    garcia = active_link(session, billed["garcia"])
    assert garcia is not None and garcia.amount_cents == balance_of(session, billed, billed["garcia"]) == 38000
    params = stripe_stand_in.link_params(garcia.stripe_payment_link_id)
    [item] = as_list(params["line_items"])
    price = stripe_stand_in.prices[item["price"]]
    assert price["unit_amount"] == 38000 and item["quantity"] == "1"
    assert stripe_stand_in.products[price["product"]]["name"] == "Riverside Basketball — family balance"
    assert params["custom_text"]["submit"]["message"] == "Riverside Basketball — García family balance"
    assert params["restrictions"]["completed_sessions"]["limit"] == "1"
    assert params["metadata"]["parent_id"] == str(billed["garcia"].id)
    assert params["metadata"]["balance_cents"] == "38000"
    assert params["metadata"]["family_link_id"] == str(garcia.id)
    # Both families owe $380.00: one Price, shared; and one balance product for the league.
    okafor = active_link(session, billed["okafor"])
    assert as_list(stripe_stand_in.link_params(okafor.stripe_payment_link_id)["line_items"])[0]["price"] == item["price"]
    assert session.scalars(select(BalancePrice.stripe_price_id)).all() == [item["price"]]
    # The balances (page, CSV) show it.
    [row] = [b for b in outstanding_balances(session, billed["admin"]) if b.parent_id == billed["garcia"].id]
    assert row.family_pay_url == garcia.url
    assert garcia.url in render_csv([row], ExportKind.PARENTS).decode("utf-8-sig")


def test_the_balance_link_follows_every_kind_of_ledger_change(session, billed, stripe_gateway, stripe_stand_in):
    garcia = billed["garcia"]
    charge = change(session, billed, stripe_gateway, lambda s: record_charge(
        s, billed["treasurer"], parent_id=garcia.id, amount_cents=2500, description="Tournament fee"))
    payment = change(session, billed, stripe_gateway, lambda s: record_payment(
        s, billed["treasurer"], parent_id=garcia.id, amount_cents=10000, method=PaymentMethod.CASH))
    change(session, billed, stripe_gateway, lambda s: record_adjustment(
        s, billed["treasurer"], parent_id=garcia.id, amount_cents=1500, kind=AdjustmentKind.DISCOUNT,
        reason="sibling discount"))
    change(session, billed, stripe_gateway, lambda s: reverse_entry(
        s, billed["treasurer"], entry_id=payment.change.entry_id, reason="the check bounced"))
    change(session, billed, stripe_gateway, lambda s: reverse_entry(
        s, billed["treasurer"], entry_id=charge.change.entry_id, reason="billed by mistake"))
    amounts = [row.amount_cents for row in family_rows(session, garcia)]
    assert amounts == [38000, 40500, 30500, 29000, 39000, 36500]
    *old, current = family_rows(session, garcia)
    assert current.status is LinkStatus.ACTIVE and current.amount_cents == balance_of(session, billed, garcia)
    for row in old:  # each replaced one switched off in Stripe, nothing left pending
        assert row.status is LinkStatus.DEACTIVATED and not row.stripe_deactivation_pending
        assert stripe_stand_in.payment_links[row.stripe_payment_link_id]["active"] is False
    assert stripe_stand_in.payment_links[current.stripe_payment_link_id]["active"] is True

    change(session, billed, stripe_gateway, lambda s: record_payment(
        s, billed["treasurer"], parent_id=garcia.id, amount_cents=36500, method=PaymentMethod.CHECK))
    assert balance_of(session, billed, garcia) == 0 and active_link(session, garcia) is None  # nothing owed, no link
    assert stripe_stand_in.payment_links[current.stripe_payment_link_id]["active"] is False
    assert active_link(session, billed["okafor"]).amount_cents == 38000  # the other family is untouched


def test_paying_the_balance_link_settles_every_open_charge_and_nothing_else(
        session, billed, stripe_gateway, stripe_stand_in):
    link = active_link(session, billed["garcia"])
    stripe_stand_in.complete_checkout_session(link.stripe_payment_link_id)
    result = sync_payments(sessions_of(session), billed["treasurer"], stripe_gateway)
    assert result.ok and result.paid_cents == 38000 and not result.flags
    assert balance_of(session, billed, billed["garcia"]) == 0
    assert active_link(session, billed["garcia"]) is None and family_rows(session, billed["garcia"])[0].status is LinkStatus.PAID
    [payment] = session.scalars(select(Payment).where(Payment.parent_id == billed["garcia"].id)).all()
    settled = session.execute(select(Allocation.charge_id, Allocation.amount_cents)
                              .where(Allocation.payment_id == payment.id)).all()
    charges = session.execute(select(Charge.id, Charge.amount_cents).where(Charge.parent_id == billed["garcia"].id)).all()
    assert sorted(settled) == sorted(charges)
    assert balance_of(session, billed, billed["okafor"]) == 38000
    # Reading the same sessions again records nothing twice.
    assert sync_payments(sessions_of(session), billed["treasurer"], stripe_gateway).paid_count == 0
    assert session.scalars(select(Payment).where(Payment.parent_id == billed["garcia"].id)).all() == [payment]


def test_a_full_check_finds_a_balance_payment_too(session, billed, stripe_gateway, stripe_stand_in):
    link = active_link(session, billed["garcia"])
    stripe_stand_in.complete_checkout_session(link.stripe_payment_link_id)
    result = sync_payments(sessions_of(session), billed["treasurer"], stripe_gateway, full=True)
    assert result.ok and result.paid_cents == 38000
    assert balance_of(session, billed, billed["garcia"]) == 0


def test_a_link_for_an_older_smaller_balance_settles_the_oldest_charges_first(
        session, billed, stripe_gateway, stripe_stand_in):
    garcia = billed["garcia"]
    old = active_link(session, garcia)
    oldest_first = [cid for cid, in session.execute(
        select(Charge.id).where(Charge.parent_id == garcia.id).order_by(Charge.due_on, Charge.id))]
    change(session, billed, stripe_gateway, lambda s: record_charge(
        s, billed["treasurer"], parent_id=garcia.id, amount_cents=2500, description="Tournament fee",
        due_on=old.created_at.date() + timedelta(days=30)))
    # The family opened the old link's checkout before it was switched off, and pays it.
    stripe_stand_in.complete_checkout_session(old.stripe_payment_link_id, even_if_inactive=True)
    assert sync_payments(sessions_of(session), billed["treasurer"], stripe_gateway).ok
    assert balance_of(session, billed, garcia) == 2500  # the new, latest charge is what is left
    [payment] = session.scalars(select(Payment).where(Payment.parent_id == garcia.id)).all()
    settled = {cid for cid, in session.execute(select(Allocation.charge_id).where(Allocation.payment_id == payment.id))}
    assert settled == set(oldest_first)


def test_a_stale_links_overpayment_is_recorded_in_full_becomes_credit_and_is_flagged(
        session, billed, stripe_gateway, stripe_stand_in):
    garcia = billed["garcia"]
    old = active_link(session, garcia)
    change(session, billed, stripe_gateway, lambda s: record_payment(
        s, billed["treasurer"], parent_id=garcia.id, amount_cents=8000, method=PaymentMethod.CASH))
    assert active_link(session, garcia).amount_cents == 30000
    stripe_stand_in.complete_checkout_session(old.stripe_payment_link_id, even_if_inactive=True)  # $380.00
    result = sync_payments(sessions_of(session), billed["treasurer"], stripe_gateway)
    assert result.ok
    [payment] = session.scalars(select(Payment).where(Payment.parent_id == garcia.id,
                                                      Payment.method == PaymentMethod.STRIPE)).all()
    assert payment.amount_cents == 38000
    [flag] = session.scalars(select(PaymentFlag)).all()
    assert flag.kind is FlagKind.AMOUNT_MISMATCH and "$80.00 more than was owed is credit" in flag.detail
    assert [f.new for f in result.flags] == [True]
    owed = [b for b in outstanding_balances(session, billed["admin"]) if b.parent_id == garcia.id]
    assert owed == []  # nothing owed: $80.00 of credit


def test_a_crash_after_stripe_answers_mints_no_second_link(session, league, stripe_gateway, stripe_stand_in,
                                                          monkeypatch):
    commit_backfill(session.get_bind(), league["admin"], stripe_gateway, plan_backfill(session, league["admin"]),
                    success_url=SUCCESS_URL)
    real = family_links.activate

    def crash(*args, **kwargs):
        raise RuntimeError("the machine went down")

    monkeypatch.setattr(family_links, "activate", crash)
    with pytest.raises(RuntimeError):
        refresh_family_links(sessions_of(session), league["admin"], minting(stripe_gateway))
    made = len(stripe_stand_in.payment_links)
    assert [row.status for row in family_rows(session, league["garcia"])] == [LinkStatus.MINTING]

    monkeypatch.setattr(family_links, "activate", real)
    result = refresh_family_links(sessions_of(session), league["admin"], minting(stripe_gateway))
    assert result.ok and result.minted == 2
    assert len(stripe_stand_in.payment_links) == made  # Stripe answered the same requests with the same links
    [row] = family_rows(session, league["garcia"])
    assert row.status is LinkStatus.ACTIVE and row.stripe_payment_link_id in stripe_stand_in.payment_links


def test_a_crash_while_recording_a_balance_payment_loses_nothing(session, billed, stripe_gateway, stripe_stand_in,
                                                                 monkeypatch):
    link = active_link(session, billed["garcia"])
    stripe_stand_in.complete_checkout_session(link.stripe_payment_link_id)
    real = family_links.mark_paid

    def crash(*args, **kwargs):
        raise RuntimeError("the machine went down")

    monkeypatch.setattr(family_links, "mark_paid", crash)
    with pytest.raises(RuntimeError):
        sync_payments(sessions_of(session), billed["treasurer"], stripe_gateway)
    assert session.scalars(select(Payment).where(Payment.parent_id == billed["garcia"].id)).all() == []

    monkeypatch.setattr(family_links, "mark_paid", real)
    assert sync_payments(sessions_of(session), billed["treasurer"], stripe_gateway).paid_cents == 38000
    assert balance_of(session, billed, billed["garcia"]) == 0
    assert len(session.scalars(select(Payment).where(Payment.parent_id == billed["garcia"].id)).all()) == 1


def test_only_an_admin_mints_balance_links(session, league, stripe_gateway, stripe_stand_in):
    for role in (Role.COACH, Role.TREASURER):
        with pytest.raises(PermissionDenied):
            refresh_family_links(sessions_of(session), acting(league["tenant"], role), minting(stripe_gateway))
    with pytest.raises(PermissionDenied):  # a coach sees part of a family's balance: never keeps links at it
        refresh_family_links(sessions_of(session), acting(league["tenant"], Role.COACH), minting(stripe_gateway),
                             mint_missing=False)
    assert stripe_stand_in.request_count == 0 and session.scalars(select(FamilyLink)).all() == []


def test_a_failed_delayed_payment_through_the_balance_link_reopens_the_balance(
        session, billed, stripe_gateway, stripe_stand_in):
    garcia = billed["garcia"]
    link = active_link(session, garcia)
    pending = stripe_stand_in.complete_checkout_session(link.stripe_payment_link_id, paid=False)
    assert sync_payments(sessions_of(session), billed["treasurer"], stripe_gateway).ok
    assert balance_of(session, billed, garcia) == 0  # processing: not owed
    [payment] = session.scalars(select(Payment).where(Payment.parent_id == garcia.id)).all()
    assert payment.state is PaymentState.PROCESSING
    session.rollback()

    stripe_stand_in.fail_checkout_session(pending["id"])
    result = sync_payments(sessions_of(session), billed["treasurer"], stripe_gateway)

    assert result.ok and result.paid == []
    assert [(f.player_name, f.product_name, f.checkout_session_id) for f in result.failed] == [
        ("Elena García", "Balance", pending["id"])]
    assert "1 failed" in result.summary()
    session.expire_all()
    assert session.get_one(Payment, payment.id).state is PaymentState.FAILED
    assert balance_of(session, billed, garcia) == 38000
    manifest = build_manifest(session, billed["admin"], OUTSTANDING_BALANCE)
    assert garcia.id in {entry.parent_id for entry in manifest.recipients}
    # Stripe counted the link's one checkout: it is retired, and the next send mints one at the balance.
    [row] = family_rows(session, garcia)
    assert (row.status, row.stripe_deactivation_pending) == (LinkStatus.DEACTIVATED, True)
    session.rollback()
    refreshed = refresh_family_links(sessions_of(session), billed["admin"], minting(stripe_gateway))
    assert refreshed.ok and refreshed.minted == 1
    fresh = active_link(session, garcia)
    assert fresh.amount_cents == 38000 and stripe_stand_in.payment_links[fresh.stripe_payment_link_id]["active"]
    # Read again, the failure changes nothing more.
    again = sync_payments(sessions_of(session), billed["treasurer"], stripe_gateway, full=True)
    assert again.failed == [] and balance_of(session, billed, garcia) == 38000
    assert session.scalars(select(Payment.state).where(Payment.parent_id == garcia.id)).all() == [
        PaymentState.FAILED]


def test_a_delayed_payment_through_the_balance_link_that_succeeds_settles_the_balance(
        session, billed, stripe_gateway, stripe_stand_in):
    garcia = billed["garcia"]
    link = active_link(session, garcia)
    pending = stripe_stand_in.complete_checkout_session(link.stripe_payment_link_id, paid=False)
    assert sync_payments(sessions_of(session), billed["treasurer"], stripe_gateway).ok

    stripe_stand_in.settle_checkout_session(pending["id"])
    result = sync_payments(sessions_of(session), billed["treasurer"], stripe_gateway)

    assert result.ok and result.failed == [] and result.paid_cents == 38000
    session.expire_all()
    assert session.execute(select(Payment.reference, Payment.state).where(Payment.parent_id == garcia.id)).all() == [
        (pending["id"], PaymentState.SETTLED)]
    assert balance_of(session, billed, garcia) == 0
    assert family_rows(session, garcia)[0].status is LinkStatus.PAID


def test_the_backfill_dry_run_counts_the_balance_links_the_commit_mints(session, league, stripe_gateway):
    first = plan_backfill(session, league["admin"])
    assert (first.totals.family_links_to_create, first.totals.family_links_to_replace) == (2, 0)
    assert "2 family balance links to create and 0 to replace" in describe_totals(first.totals)
    done = commit_backfill(session.get_bind(), league["admin"], stripe_gateway, first, success_url=SUCCESS_URL,
                           family_links=True)
    assert done.ok and done.family_links_minted == 2
    assert "family balance link" not in describe_totals(plan_backfill(session, league["admin"]).totals)

    # A new required item raises both families' balances; a new family has no link yet.
    make_product(session, league["tenant"], "Tournament fee", amount_cents=2500)
    newcomer = make_parent(session, league["tenant"], "Sam Lee", "sam@example.org")
    make_player(session, league["tenant"], newcomer, first_name="Kim", last_name="Lee")
    session.commit()
    second = plan_backfill(session, league["admin"])
    assert (second.totals.family_links_to_create, second.totals.family_links_to_replace) == (1, 2)
    assert "1 family balance link to create and 2 to replace" in describe_totals(second.totals)
    done = commit_backfill(session.get_bind(), league["admin"], stripe_gateway, second, success_url=SUCCESS_URL,
                           family_links=True)
    assert done.ok and done.family_links_minted == 3
    assert active_link(session, newcomer).amount_cents == 15000 + 4000 + 2500
