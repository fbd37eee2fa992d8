"""Flagged payments are kept in payment_flags: reported once, listed for the treasurer, never read from the audit log."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, func, select

from core.access.permissions import Role
from core.audit import record_action
from core.errors import PermissionDenied
from core.models import AuditEntry, FlagKind, PaymentFlag, ProductKind, StripeEventSeen
from core.payments.flags import payment_flags
from core.payments.sync import sync_payments
from tests.factories import acting, make_link, make_parent, make_player, make_product, make_tenant
from tests.stripe_links import mirror_links


@pytest.fixture
def league(session, stripe_stand_in):  # type: ignore[no-untyped-def]
    tenant = make_tenant(session, "westside")
    registration = make_product(session, tenant, "Registration", amount_cents=15000)
    dues = make_product(session, tenant, "Monthly dues", kind=ProductKind.MONTHLY, amount_cents=6000)
    amy = make_player(session, tenant, make_parent(session, tenant), first_name="Amy")
    registration_link = make_link(session, tenant, amy, registration)
    dues_link = make_link(session, tenant, amy, dues)
    session.commit()
    mirror_links(stripe_stand_in, session, [registration_link, dues_link])
    return {"tenant": tenant, "treasurer": acting(tenant, Role.TREASURER), "registration": registration_link,
                "dues": dues_link}


def test_a_flag_is_recorded_with_what_the_treasurer_needs_to_see(engine, session, league, stripe_stand_in,
                                                                  stripe_gateway):
    paid = stripe_stand_in.complete_checkout_session(league["registration"].stripe_payment_link_id, amount_total=100)

    result = sync_payments(engine, league["treasurer"], stripe_gateway)

    [flag] = result.new_flags
    [row] = session.scalars(select(PaymentFlag)).all()
    assert (row.tenant_id, row.payment_link_id, row.checkout_session_id, row.kind, row.processing) == (
        league["tenant"].id, league["registration"].id, paid["id"], FlagKind.AMOUNT_MISMATCH, False)
    assert row.stripe_payment_link_id == league["registration"].stripe_payment_link_id
    assert row.detail == flag.message and "$1.00" in row.detail
    [listed] = payment_flags(session, league["treasurer"])
    assert (listed.kind, listed.player_name, listed.product_name, listed.message) == (
        FlagKind.AMOUNT_MISMATCH, "Amy Player", "Registration", row.detail)
    assert listed.flagged_at == row.created_at and not listed.new


def test_a_flag_stays_reported_when_the_audit_log_is_emptied(engine, session, league, stripe_stand_in,
                                                            stripe_gateway):
    stripe_stand_in.complete_checkout_session(league["registration"].stripe_payment_link_id)
    stripe_stand_in.complete_checkout_session(league["registration"].stripe_payment_link_id, even_if_inactive=True)
    first = sync_payments(engine, league["treasurer"], stripe_gateway)
    assert [f.kind for f in first.new_flags] == [FlagKind.DUPLICATE_PAYMENT]

    session.execute(delete(AuditEntry))
    session.execute(delete(StripeEventSeen))  # as if Stripe delivered the events a second time
    session.commit()
    again = sync_payments(engine, league["treasurer"], stripe_gateway)

    assert [f.kind for f in again.flags] == [FlagKind.DUPLICATE_PAYMENT]  # the event is applied again...
    assert again.new_flags == []  # ...and the table, not the audit log, says it was reported
    assert session.scalar(select(func.count()).select_from(PaymentFlag)) == 1


def test_an_audit_entry_does_not_decide_whether_a_flag_is_new(engine, session, league, stripe_stand_in,
                                                              stripe_gateway):
    paid = stripe_stand_in.complete_checkout_session(league["registration"].stripe_payment_link_id, amount_total=100)
    # An audit entry that claims the flag was reported already, as syncs before payment_flags wrote them.
    record_action(session, league["treasurer"], "sync", "an earlier sync", details={"flags": [
        {"key": f"amount_mismatch:{paid['id']}:paid", "kind": "amount_mismatch", "session": paid["id"]}]})
    session.commit()

    result = sync_payments(engine, league["treasurer"], stripe_gateway)

    assert [(f.kind, f.new) for f in result.flags] == [(FlagKind.AMOUNT_MISMATCH, True)]


def test_a_second_checkout_first_seen_processing_is_reported_again_once_paid(engine, session, league,
                                                                            stripe_stand_in, stripe_gateway):
    link = league["dues"].stripe_payment_link_id
    stripe_stand_in.complete_checkout_session(link)
    second = stripe_stand_in.complete_checkout_session(link, paid=False)
    first = sync_payments(engine, league["treasurer"], stripe_gateway)
    assert [(f.kind, f.processing, f.new) for f in first.flags] == [(FlagKind.DUPLICATE_PAYMENT, True, True)]

    stripe_stand_in.settle_checkout_session(second["id"])
    settled = sync_payments(engine, league["treasurer"], stripe_gateway)

    assert [(f.kind, f.processing, f.new) for f in settled.flags] == [(FlagKind.DUPLICATE_PAYMENT, False, True)]
    assert {(f.processing, f.new) for f in payment_flags(session, league["treasurer"])} == {(True, False),
                                                                                            (False, False)}


def test_the_list_shows_one_leagues_flags_newest_first_and_only_to_who_may_sync(engine, session, league,
                                                                               stripe_stand_in, stripe_gateway):
    other = make_tenant(session, "eastside")
    session.add(PaymentFlag(tenant_id=other.id, checkout_session_id="cs_other", kind=FlagKind.UNKNOWN_LINK,
                            detail="Eastside's"))
    session.commit()
    stripe_stand_in.complete_checkout_session(league["registration"].stripe_payment_link_id, amount_total=100)
    sync_payments(engine, league["treasurer"], stripe_gateway)
    stripe_stand_in.complete_checkout_session(league["dues"].stripe_payment_link_id, amount_total=200)
    sync_payments(engine, league["treasurer"], stripe_gateway)

    listed = payment_flags(session, league["treasurer"])

    assert [f.link_id for f in listed] == [league["dues"].id, league["registration"].id]
    assert [f.message for f in payment_flags(session, acting(other, Role.TREASURER))] == ["Eastside's"]
    with pytest.raises(PermissionDenied):
        payment_flags(session, acting(league["tenant"], Role.COACH))
