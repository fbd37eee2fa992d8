"""Stripe's events as the incremental payment sync: failures, refunds and disputes; each once,
in any order; and the full sweep's report of where the ledger and Stripe differ."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select

from core.access.permissions import Role
from core.backfill import plan_backfill
from core.backfill.plan import PlanAction
from core.db import session_factory
from core.email.campaigns import build_manifest
from core.email.registry import OUTSTANDING_BALANCE
from core.ledger.refunds import run_refund
from core.models import (
    Adjustment,
    AuditEntry,
    FlagKind,
    LedgerEntry,
    LinkStatus,
    Payment,
    PaymentLink,
    PaymentState,
    ProductKind,
    StripeEventCursor,
    StripeEventSeen,
    Tenant,
    utcnow,
)
from core.payments import events as events_module
from core.payments import sync as sync_module
from core.payments.events import EVENT_OVERLAP, open_disputes
from core.payments.ledger_check import DifferenceKind
from core.payments.sync import sync_payments
from core.reporting.balances import outstanding_balances
from tests.factories import acting, make_link, make_parent, make_player, make_product, make_team, make_tenant
from tests.stripe_links import mirror_links


@pytest.fixture
def league(session, stripe_stand_in):  # type: ignore[no-untyped-def]
    tenant = make_tenant(session)
    team = make_team(session, tenant)
    registration = make_product(session, tenant, "Registration", amount_cents=15000)
    links = []
    for _ in range(3):
        player = make_player(session, tenant, make_parent(session, tenant), team)
        links.append(make_link(session, tenant, player, registration))
    session.commit()
    mirror_links(stripe_stand_in, session, links)
    return tenant, links


def _treasurer(tenant: Tenant):  # type: ignore[no-untyped-def]
    return acting(tenant, Role.TREASURER)


def _owed(session, tenant) -> dict[int, int]:  # type: ignore[no-untyped-def]
    """Parent id -> what the family owes, as the Balances page shows it."""
    session.expire_all()
    return {b.parent_id: b.total_cents for b in outstanding_balances(session, _treasurer(tenant))}


def _ledger(session, tenant) -> tuple:  # type: ignore[no-untyped-def]
    session.expire_all()
    payments = session.execute(select(Payment.reference, Payment.amount_cents, Payment.state)
                               .where(Payment.tenant_id == tenant.id).order_by(Payment.id)).all()
    refunds = session.execute(select(Adjustment.stripe_refund_id, Adjustment.amount_cents)
                              .where(Adjustment.tenant_id == tenant.id).order_by(Adjustment.id)).all()
    entries = session.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.tenant_id == tenant.id))
    return payments, refunds, entries


def _paid(session, tenant, stand_in, gateway, link):  # type: ignore[no-untyped-def]
    checkout = stand_in.complete_checkout_session(link.stripe_payment_link_id)
    assert sync_payments(session.get_bind(), _treasurer(tenant), gateway).paid_count == 1
    return checkout


# -- delayed payments -----------------------------------------------------------------------------


def test_a_failed_delayed_payment_reopens_the_charge_and_the_family_is_in_the_next_send(
    engine, session, league, stripe_stand_in, stripe_gateway
):
    tenant, links = league
    link = links[0]
    parent_id = link.player.parent_id
    pending = stripe_stand_in.complete_checkout_session(link.stripe_payment_link_id, paid=False)
    sync_payments(engine, _treasurer(tenant), stripe_gateway)
    assert _owed(session, tenant).get(parent_id, 0) == 0  # processing: not owed
    session.rollback()

    stripe_stand_in.fail_checkout_session(pending["id"])
    result = sync_payments(engine, _treasurer(tenant), stripe_gateway)

    assert [(f.link_id, f.checkout_session_id) for f in result.failed] == [(link.id, pending["id"])]
    assert _owed(session, tenant)[parent_id] == 15000
    [payment] = _ledger(session, tenant)[0]
    assert payment.state is PaymentState.FAILED
    # Stripe counted the failed checkout against the one-time link's one payment and switched
    # it off: it is retired (to be switched off), and the next backfill mints a payable one.
    assert stripe_stand_in.payment_links[link.stripe_payment_link_id]["active"] is False
    stored = session.get_one(PaymentLink, link.id)
    assert (stored.status, stored.processing, stored.stripe_deactivation_pending) == (
        LinkStatus.DEACTIVATED, False, True)
    plan = plan_backfill(session, acting(tenant))
    assert [(i.player_id, i.action) for i in plan.items if i.product_id == link.product_id
            and i.player_id == link.player_id] == [(link.player_id, PlanAction.MINT)]
    assert link.id in {p.link_id for p in plan.pending_switch_offs}
    manifest = build_manifest(session, acting(tenant), OUTSTANDING_BALANCE)
    assert parent_id in {entry.parent_id for entry in manifest.recipients}


def test_a_failed_delayed_payment_leaves_a_monthly_link_payable(engine, session, stripe_stand_in, stripe_gateway):
    tenant = make_tenant(session)
    dues = make_product(session, tenant, "Monthly dues", kind=ProductKind.MONTHLY, amount_cents=6000)
    player = make_player(session, tenant, make_parent(session, tenant), make_team(session, tenant))
    link = make_link(session, tenant, player, dues)
    session.commit()
    mirror_links(stripe_stand_in, session, [link])  # no one-payment limit at Stripe
    pending = stripe_stand_in.complete_checkout_session(link.stripe_payment_link_id, paid=False)
    sync_payments(engine, _treasurer(tenant), stripe_gateway)
    stripe_stand_in.fail_checkout_session(pending["id"])

    result = sync_payments(engine, _treasurer(tenant), stripe_gateway)

    assert [f.link_id for f in result.failed] == [link.id]
    assert stripe_stand_in.payment_links[link.stripe_payment_link_id]["active"] is True
    session.expire_all()
    stored = session.get_one(PaymentLink, link.id)
    assert (stored.status, stored.processing) == (LinkStatus.ACTIVE, False)
    assert _owed(session, tenant)[player.parent_id] == 6000


def test_a_delayed_payment_that_succeeds_settles_its_charge(engine, session, league, stripe_stand_in, stripe_gateway):
    tenant, links = league
    pending = stripe_stand_in.complete_checkout_session(links[0].stripe_payment_link_id, paid=False)
    sync_payments(engine, _treasurer(tenant), stripe_gateway)

    stripe_stand_in.settle_checkout_session(pending["id"])
    result = sync_payments(engine, _treasurer(tenant), stripe_gateway)

    assert result.paid_count == 1 and result.failed == []
    assert [(p.reference, p.state) for p in _ledger(session, tenant)[0]] == [(pending["id"], PaymentState.SETTLED)]
    assert _owed(session, tenant).get(links[0].player.parent_id, 0) == 0


# -- refunds and disputes made at Stripe -----------------------------------------------------------


def test_a_refund_made_in_stripes_dashboard_is_in_the_ledger_and_the_charge_is_owed_again(
    engine, session, league, stripe_stand_in, stripe_gateway
):
    tenant, links = league
    parent_id = links[0].player.parent_id
    checkout = _paid(session, tenant, stripe_stand_in, stripe_gateway, links[0])
    refund = stripe_stand_in.refund_in_dashboard(checkout["id"], 5000)

    result = sync_payments(engine, _treasurer(tenant), stripe_gateway)

    assert [(r.stripe_refund_id, r.amount_cents) for r in result.refunds] == [(refund["id"], 5000)]
    assert _ledger(session, tenant)[1] == [(refund["id"], 5000)]
    assert _owed(session, tenant)[parent_id] == 5000
    assert "1 refunded in Stripe" in result.summary()


def test_a_refund_made_from_the_ledger_is_not_recorded_again_when_its_event_arrives(
    engine, session, league, stripe_stand_in, stripe_gateway
):
    tenant, links = league
    _paid(session, tenant, stripe_stand_in, stripe_gateway, links[0])
    session.rollback()
    payment_id = session.scalars(select(Payment.id).where(Payment.tenant_id == tenant.id)).one()
    session.commit()
    run_refund(session_factory(engine), acting(tenant), payment_id=payment_id, amount_cents=15000,
               reason="left the league", gateway=stripe_gateway)
    before = _ledger(session, tenant)

    result = sync_payments(engine, _treasurer(tenant), stripe_gateway)

    assert result.refunds == [] and result.events_read == 1 and _ledger(session, tenant) == before


@pytest.mark.parametrize("amount_cents", [15000, 5000], ids=["all-of-it", "part-of-it"])
def test_a_refund_committed_from_the_ledger_while_the_sync_records_its_event_is_neither_doubled_nor_flagged(
    engine, session, league, stripe_stand_in, stripe_gateway, monkeypatch, amount_cents
):
    tenant, links = league
    _paid(session, tenant, stripe_stand_in, stripe_gateway, links[0])
    session.rollback()
    payment_id = session.scalars(select(Payment.id).where(Payment.tenant_id == tenant.id)).one()
    session.commit()
    run_refund(session_factory(engine), acting(tenant), payment_id=payment_id, amount_cents=amount_cents,
               reason="left", gateway=stripe_gateway)
    before = _ledger(session, tenant)
    looked_up = events_module._recorded_refund_ids
    calls = iter([lambda *args: set()])  # the sync looked before the refund was committed
    monkeypatch.setattr(events_module, "_recorded_refund_ids", lambda *args: next(calls, looked_up)(*args))

    result = sync_payments(engine, _treasurer(tenant), stripe_gateway)

    assert (result.refunds, result.flags, result.events_read) == ([], [], 1)
    assert _ledger(session, tenant) == before


def test_a_dispute_is_flagged_and_stays_open_until_the_bank_decides(
    engine, session, league, stripe_stand_in, stripe_gateway
):
    tenant, links = league
    parent_id = links[0].player.parent_id
    checkout = _paid(session, tenant, stripe_stand_in, stripe_gateway, links[0])
    dispute = stripe_stand_in.open_dispute(checkout["id"], reason="product_not_received")

    opened = sync_payments(engine, _treasurer(tenant), stripe_gateway)

    [flag] = opened.new_flags
    assert (flag.kind, flag.checkout_session_id, flag.link_id) == (FlagKind.DISPUTE, checkout["id"], links[0].id)
    assert "$150.00" in flag.describe() and "product not received" in flag.message
    [still_open] = open_disputes(session, _treasurer(tenant), parent_id=parent_id)
    assert still_open.checkout_session_id == checkout["id"]
    session.rollback()

    stripe_stand_in.close_dispute(dispute["id"], won=False)
    closed = sync_payments(engine, _treasurer(tenant), stripe_gateway)

    assert [f.kind for f in closed.new_flags] == [FlagKind.DISPUTE_CLOSED]
    assert "lost" in closed.new_flags[0].message
    assert open_disputes(session, _treasurer(tenant), parent_id=parent_id) == []


def test_a_dispute_lost_is_in_the_ledger_once_and_what_the_payment_settled_is_owed_again(
    engine, session, league, stripe_stand_in, stripe_gateway
):
    tenant, links = league
    parent_id = links[0].player.parent_id
    checkout = _paid(session, tenant, stripe_stand_in, stripe_gateway, links[0])
    dispute = stripe_stand_in.open_dispute(checkout["id"])
    sync_payments(engine, _treasurer(tenant), stripe_gateway)
    owed = {b.parent_id: b.total_cents for b in outstanding_balances(session, _treasurer(tenant))}
    assert parent_id not in owed  # an open dispute changes nothing yet: the bank may decide for the league
    session.rollback()

    stripe_stand_in.close_dispute(dispute["id"], won=False)
    closed = sync_payments(engine, _treasurer(tenant), stripe_gateway)

    [flag] = closed.new_flags
    assert "recorded in the ledger" in flag.message and "owed again" in flag.message
    payments, refunds, _ = _ledger(session, tenant)
    assert refunds == [(dispute["id"], 15000)]
    owed = {b.parent_id: b.total_cents for b in outstanding_balances(session, _treasurer(tenant))}
    assert owed[parent_id] == 15000
    session.rollback()
    before = _ledger(session, tenant)
    session.execute(delete(StripeEventSeen))  # delivered again, as if never seen: nothing twice
    session.execute(delete(StripeEventCursor))
    session.commit()
    sync_payments(engine, _treasurer(tenant), stripe_gateway)
    assert _ledger(session, tenant) == before


def test_a_dispute_lost_for_more_than_is_left_records_what_is_left_and_says_the_rest(
    engine, session, league, stripe_stand_in, stripe_gateway
):
    tenant, links = league
    parent_id = links[0].player.parent_id
    checkout = _paid(session, tenant, stripe_stand_in, stripe_gateway, links[0])
    refund = stripe_stand_in.refund_in_dashboard(checkout["id"], 5000)
    dispute = stripe_stand_in.open_dispute(checkout["id"])  # for the whole $150.00 charge
    stripe_stand_in.close_dispute(dispute["id"], won=False)

    result = sync_payments(engine, _treasurer(tenant), stripe_gateway)

    [flag] = [f for f in result.new_flags if f.kind is FlagKind.DISPUTE_CLOSED]
    assert "$50.00 more than was left of the payment" in flag.message
    assert _ledger(session, tenant)[1] == [(refund["id"], 5000), (dispute["id"], 10000)]
    owed = {b.parent_id: b.total_cents for b in outstanding_balances(session, _treasurer(tenant))}
    assert owed[parent_id] == 15000


def test_a_dispute_won_changes_nothing_in_the_ledger(engine, session, league, stripe_stand_in, stripe_gateway):
    tenant, links = league
    checkout = _paid(session, tenant, stripe_stand_in, stripe_gateway, links[0])
    dispute = stripe_stand_in.open_dispute(checkout["id"])
    sync_payments(engine, _treasurer(tenant), stripe_gateway)
    before = _ledger(session, tenant)
    session.rollback()
    stripe_stand_in.close_dispute(dispute["id"], won=True)
    [flag] = sync_payments(engine, _treasurer(tenant), stripe_gateway).new_flags
    assert "won" in flag.message
    assert _ledger(session, tenant) == before


# -- each event once, in any order -------------------------------------------------------------------


def test_reading_the_same_events_again_changes_nothing(engine, session, league, stripe_stand_in, stripe_gateway):
    tenant, links = league
    checkout = _paid(session, tenant, stripe_stand_in, stripe_gateway, links[0])
    stripe_stand_in.refund_in_dashboard(checkout["id"], 2500)
    stripe_stand_in.open_dispute(checkout["id"])
    pending = stripe_stand_in.complete_checkout_session(links[1].stripe_payment_link_id, paid=False)
    stripe_stand_in.fail_checkout_session(pending["id"])
    first = sync_payments(engine, _treasurer(tenant), stripe_gateway)
    assert len(first.refunds) == 1 and len(first.failed) == 1
    after = _ledger(session, tenant)

    again = sync_payments(engine, _treasurer(tenant), stripe_gateway)  # the overlap lists them again
    assert again.events_read == 0 and _ledger(session, tenant) == after
    # Delivered again as if never seen (Stripe delivers at least once): still nothing new.
    session.execute(delete(StripeEventSeen))
    session.execute(delete(StripeEventCursor))
    session.commit()
    redelivered = sync_payments(engine, _treasurer(tenant), stripe_gateway)

    assert redelivered.events_read == len(stripe_stand_in.events)
    assert _ledger(session, tenant) == after
    assert (redelivered.paid, redelivered.refunds, redelivered.new_flags) == ([], [], [])
    assert redelivered.failed == first.failed  # told again, as the event says, and owed still once
    assert _owed(session, tenant)[links[1].player.parent_id] == 15000


def test_events_in_any_order_end_in_the_latest_state(engine, session, league, stripe_stand_in, stripe_gateway):
    tenant, links = league
    now = utcnow()
    # Settled, stamped before its own completion: the payment is settled, not processing.
    stripe_stand_in.events_created_at = lambda: int(now.timestamp())
    settles = stripe_stand_in.complete_checkout_session(links[0].stripe_payment_link_id, paid=False)
    stripe_stand_in.events_created_at = lambda: int((now - timedelta(minutes=1)).timestamp())
    stripe_stand_in.settle_checkout_session(settles["id"])
    # Failed, then its completion (still "unpaid") listed again later: it stays failed.
    fails = stripe_stand_in.complete_checkout_session(links[1].stripe_payment_link_id, paid=False)
    stripe_stand_in.fail_checkout_session(fails["id"])
    first = sync_payments(engine, _treasurer(tenant), stripe_gateway)
    stripe_stand_in.emit("checkout.session.completed", stripe_stand_in.session(fails["id"]))

    late = sync_payments(engine, _treasurer(tenant), stripe_gateway)

    assert [p.link_id for p in first.paid] == [links[0].id] and first.new_flags == []
    assert [f.link_id for f in first.failed] == [links[1].id]
    assert late.events_read == 1 and late.paid == [] and late.failed == []
    # The failed payment never took money: the ledger holds the settled one only.
    assert [(p.reference, p.state) for p in _ledger(session, tenant)[0]] == [(settles["id"], PaymentState.SETTLED)]
    assert not session.get_one(PaymentLink, links[1].id).processing
    assert _owed(session, tenant)[links[1].player.parent_id] == 15000


def test_a_crash_after_stripe_answered_loses_no_payment_and_the_rerun_records_it_once(
    engine, session, league, stripe_stand_in, stripe_gateway, monkeypatch
):
    tenant, links = league
    checkout = _paid(session, tenant, stripe_stand_in, stripe_gateway, links[0])
    refund = stripe_stand_in.refund_in_dashboard(checkout["id"], 1000)
    stripe_stand_in.complete_checkout_session(links[1].stripe_payment_link_id)
    real_mark_seen = events_module.mark_seen

    def crash(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("the server lost power")

    monkeypatch.setattr(sync_module.events, "mark_seen", crash)  # inside each event's transaction
    with pytest.raises(RuntimeError):
        sync_payments(engine, _treasurer(tenant), stripe_gateway)
    assert len(_ledger(session, tenant)[0]) == 1 and _ledger(session, tenant)[1] == []  # rolled back
    monkeypatch.setattr(sync_module.events, "mark_seen", real_mark_seen)

    rerun = sync_payments(engine, _treasurer(tenant), stripe_gateway)

    assert rerun.ok and rerun.paid_count == 1 and [r.stripe_refund_id for r in rerun.refunds] == [refund["id"]]
    payments, refunds, _ = _ledger(session, tenant)
    assert len(payments) == 2 and refunds == [(refund["id"], 1000)]


def test_another_leagues_refunds_and_disputes_are_left_alone(engine, session, league, stripe_stand_in, stripe_gateway):
    tenant, links = league
    checkout = _paid(session, tenant, stripe_stand_in, stripe_gateway, links[0])
    other = make_tenant(session)
    session.commit()
    stripe_stand_in.refund_in_dashboard(checkout["id"], 1000)
    stripe_stand_in.open_dispute(checkout["id"])

    result = sync_payments(engine, _treasurer(other), stripe_gateway)

    assert result.ok and result.refunds == [] and result.flags == []
    assert session.scalar(select(func.count()).select_from(Adjustment)) == 0


# -- the full sweep compares the ledger with Stripe ------------------------------------------------------


def test_the_full_sweep_reports_each_kind_of_difference(engine, session, league, stripe_stand_in, stripe_gateway):
    tenant, links = league
    gone = _paid(session, tenant, stripe_stand_in, stripe_gateway, links[0])
    other_amount = _paid(session, tenant, stripe_stand_in, stripe_gateway, links[1])
    agreed = _paid(session, tenant, stripe_stand_in, stripe_gateway, links[2])
    # A second checkout already open when the first used up the link: flagged, recorded against nothing.
    extra = stripe_stand_in.complete_checkout_session(links[2].stripe_payment_link_id, even_if_inactive=True)
    stripe_stand_in.checkout_sessions.remove(stripe_stand_in.session(gone["id"]))
    stripe_stand_in.session(other_amount["id"])["amount_total"] = 14000

    result = sync_payments(engine, _treasurer(tenant), stripe_gateway, full=True)

    found = {(d.kind, d.checkout_session_id) for d in result.differences}
    assert found == {(DifferenceKind.NOT_IN_STRIPE, gone["id"]), (DifferenceKind.AMOUNT, other_amount["id"]),
                     (DifferenceKind.NOT_IN_LEDGER, extra["id"])}
    assert agreed["id"] not in {d.checkout_session_id for d in result.differences}
    amount = next(d for d in result.differences if d.kind is DifferenceKind.AMOUNT)
    assert "$140.00" in amount.describe() and "$150.00" in amount.describe()
    assert "3 differences between the ledger and Stripe" in result.summary()
    session.expire_all()
    entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "sync").order_by(AuditEntry.id.desc())).first()
    assert entry is not None and {d["kind"] for d in entry.details["differences"]} == {
        "not_in_stripe", "amount", "not_in_ledger"}


def test_a_full_sweep_of_a_ledger_that_agrees_reports_nothing(engine, session, league, stripe_stand_in, stripe_gateway):
    tenant, links = league
    _paid(session, tenant, stripe_stand_in, stripe_gateway, links[0])

    result = sync_payments(engine, _treasurer(tenant), stripe_gateway, full=True)

    assert result.ok and result.differences == []


def test_the_first_sync_reads_every_event_stripe_keeps_and_later_ones_start_from_the_cursor(
    engine, session, league, stripe_stand_in, stripe_gateway
):
    tenant, links = league
    stripe_stand_in.complete_checkout_session(links[0].stripe_payment_link_id)

    first = sync_payments(engine, _treasurer(tenant), stripe_gateway)
    second = sync_payments(engine, _treasurer(tenant), stripe_gateway)

    first_listing, second_listing = [r.params for r in stripe_stand_in.requests if r.path == "/v1/events"]
    assert "created" not in first_listing and first.paid_count == 1
    assert int(second_listing["created"]["gte"]) == int((first.started_at - EVENT_OVERLAP).timestamp())
    assert second.ok and second.events_read == 0


def test_events_older_than_stripe_keeps_are_forgotten_but_a_failed_payment_is_not(
    engine, session, league, stripe_stand_in, stripe_gateway
):
    tenant, links = league
    long_ago = utcnow() - timedelta(days=40)
    stripe_stand_in.events_created_at = lambda: int(long_ago.timestamp())
    pending = stripe_stand_in.complete_checkout_session(links[0].stripe_payment_link_id, paid=False)
    stripe_stand_in.fail_checkout_session(pending["id"])
    stripe_stand_in.complete_checkout_session(links[1].stripe_payment_link_id)
    sync_payments(engine, _treasurer(tenant), stripe_gateway)  # as if read 40 days ago: the events are all seen

    session.expire_all()
    kept = session.scalars(select(StripeEventSeen.event_type).where(StripeEventSeen.tenant_id == tenant.id)).all()
    assert kept == ["checkout.session.async_payment_failed"]
    full = sync_payments(engine, _treasurer(tenant), stripe_gateway, full=True)  # sees the session, still unpaid
    assert not session.get_one(PaymentLink, links[0].id).processing and full.ok
