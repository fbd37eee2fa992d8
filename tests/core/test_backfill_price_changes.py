"""Backfill after a price change: a new link at the new price, and the old one deactivated.

The new default price comes the way a league sets it, through a roster import of the
product at a new amount. Stripe is the local stand-in driven through the real SDK client.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select

from core.backfill import ItemStatus, PlanAction, commit_backfill, describe_totals, plan_backfill, plan_rows
from core.db import session_factory
from core.models import AuditEntry, LinkStatus, OrderStatus, PaymentLink, ProductKind
from core.payments.stripe_gateway import StripeGateway
from core.reporting.balances import outstanding_balances
from core.roster.importing import import_roster
from tests.factories import (
    acting,
    make_link,
    make_order,
    make_parent,
    make_player,
    make_product,
    make_tenant,
    mark_processing,
    pay_link,
)

SUCCESS_URL = "https://westside.example/thanks"


@pytest.fixture
def league(engine, session, stripe_gateway):
    """Two families, everything they owe minted at the old prices through the backfill."""
    tenant = make_tenant(session, "westside", name="Westside Hoops")
    registration = make_product(session, tenant, "Registration", amount_cents=15000)
    dues = make_product(session, tenant, "Monthly dues", kind=ProductKind.MONTHLY, amount_cents=6000)
    amy = make_player(session, tenant, make_parent(session, tenant, "Ana O'Neil"), first_name="Amy")
    bo = make_player(session, tenant, make_parent(session, tenant, "Ben Zed"), first_name="Bo")
    session.commit()
    admin = acting(tenant)
    first = commit_backfill(engine, admin, stripe_gateway, plan_backfill(session, admin), success_url=SUCCESS_URL)
    assert first.ok and len(first.minted) == 4
    return {"tenant": tenant, "admin": admin, "registration": registration, "dues": dues, "amy": amy, "bo": bo}


def _new_price(session, league, product: str, amount: str) -> None:
    """Import the product at a new amount: the import makes it the default tier."""
    kind = "monthly" if product == "Monthly dues" else "one_time"
    csv = f"product,kind,required,amount\n{product},{kind},yes,{amount}\n".encode()
    result = import_roster(session, league["admin"], csv, commit=True, file_name="products.csv")
    assert not result.errors
    session.commit()


def _link(session, league, player, product, status: LinkStatus = LinkStatus.ACTIVE) -> PaymentLink:
    session.expire_all()
    return session.scalars(select(PaymentLink).where(
        PaymentLink.tenant_id == league["tenant"].id, PaymentLink.player_id == player.id,
        PaymentLink.product_id == product.id, PaymentLink.status == status,
    )).one()


def _item(plan, player, product):
    [item] = [i for i in plan.items if i.player_id == player.id and i.product_id == product.id]
    return item


def _owed(session, league) -> list[tuple[str, str, int]]:
    return sorted(
        (item.player_name, item.product_name, item.amount_cents)
        for balance in outstanding_balances(session, league["admin"])
        for item in balance.items
    )


# -- the plan ----------------------------------------------------------------------------------


def test_a_new_default_price_replaces_the_links_at_the_old_one(session, league):
    _new_price(session, league, "Registration", "175.00")
    plan = plan_backfill(session, league["admin"])

    old = _link(session, league, league["amy"], league["registration"])
    item = _item(plan, league["amy"], league["registration"])
    assert (item.action, item.amount_cents, item.replaced_amount_cents) == (PlanAction.REPLACE, 17500, 15000)
    assert item.existing_link_id == old.id and item.link_exists
    assert "price changed: $150.00 → $175.00" in item.reason
    assert _item(plan, league["amy"], league["dues"]).action is PlanAction.ALREADY_LINKED
    row = next(r for r in plan_rows(plan) if r["Player"] == "Amy Player" and r["Product"] == "Registration")
    assert (row["Amount"], row["To do"], row["Link exists?"]) == ("$150.00 → $175.00", "new price: replace link", "yes")

    totals = plan.totals
    assert (totals.links_to_mint, totals.links_to_replace) == (0, 2)
    assert (totals.replaced_from_cents, totals.replaced_to_cents) == (30000, 35000)
    assert totals.prices_to_create == 1  # the new tier has no Stripe price yet
    assert "0 payment links to create ($0.00), 2 links to replace at a new price ($300.00 → $350.00)" in describe_totals(totals)


def test_links_made_for_an_order_are_not_replaced_by_a_new_default_price(session, league):
    tenant, al = league["tenant"], make_player(session, league["tenant"], make_parent(session, league["tenant"]),
                                              first_name="Al")
    pending = make_order(session, tenant, al, league["registration"], amount_cents=12000)
    make_link(session, tenant, al, league["registration"], amount_cents=12000, order=pending)
    cy = make_player(session, tenant, make_parent(session, tenant), first_name="Cy")
    canceled = make_order(session, tenant, cy, league["registration"], amount_cents=9000,
                          status=OrderStatus.CANCELED)
    make_link(session, tenant, cy, league["registration"], amount_cents=9000, order=canceled)
    session.commit()
    _new_price(session, league, "Registration", "175.00")

    plan = plan_backfill(session, league["admin"])

    assert _item(plan, al, league["registration"]).action is PlanAction.ALREADY_LINKED
    assert _item(plan, cy, league["registration"]).action is PlanAction.ALREADY_LINKED
    assert _item(plan, league["amy"], league["registration"]).action is PlanAction.REPLACE


def test_a_link_with_a_payment_processing_is_not_replaced(session, league):
    old = _link(session, league, league["amy"], league["registration"])
    mark_processing(session, old)
    session.commit()
    _new_price(session, league, "Registration", "175.00")

    item = _item(plan_backfill(session, league["admin"]), league["amy"], league["registration"])

    assert item.action is PlanAction.WAITING
    assert "a payment on the $150.00 link is processing" in item.reason


def test_a_link_paid_at_the_old_price_stays_paid(session, league):
    old = _link(session, league, league["amy"], league["registration"])
    pay_link(session, old)
    session.commit()
    _new_price(session, league, "Registration", "175.00")

    item = _item(plan_backfill(session, league["admin"]), league["amy"], league["registration"])

    assert item.action is PlanAction.ALREADY_PAID


# -- commit ------------------------------------------------------------------------------------


def test_commit_mints_the_new_link_then_deactivates_the_old_one_here_and_in_stripe(engine, session, league, stripe_gateway,
                                                                                   stripe_stand_in):
    amy, registration = league["amy"], league["registration"]
    old = _link(session, league, amy, registration)
    _new_price(session, league, "Registration", "175.00")
    requests_before = len(stripe_stand_in.requests)

    result = commit_backfill(engine, league["admin"], stripe_gateway, plan_backfill(session, league["admin"]),
                             success_url=SUCCESS_URL)

    assert result.ok and len(result.replaced) == 2 and not result.minted
    gone = _link(session, league, amy, registration, LinkStatus.DEACTIVATED)
    new = _link(session, league, amy, registration)
    assert gone.id == old.id and gone.deactivated_at is not None
    assert (new.amount_cents, new.price_tier_id != old.price_tier_id) == (17500, True)
    assert stripe_stand_in.payment_links[old.stripe_payment_link_id]["active"] is False
    assert stripe_stand_in.payment_links[new.stripe_payment_link_id]["active"] is True
    price_id = stripe_stand_in.link_line_items[new.stripe_payment_link_id][0]["price"]
    assert stripe_stand_in.prices[price_id]["unit_amount"] == 17500
    assert stripe_stand_in.link_params(new.stripe_payment_link_id)["metadata"]["link_id"] == str(new.id)
    # the family had a working link throughout: the new one was made before the old one was switched off
    paths = [(r.method, r.path) for r in stripe_stand_in.requests[requests_before:]]
    made = next(i for i, r in enumerate(stripe_stand_in.requests[requests_before:])
                if (r.method, r.path) == ("POST", "/v1/payment_links")
                and r.params["metadata"]["link_id"] == str(new.id))
    assert made < paths.index(("POST", f"/v1/payment_links/{old.stripe_payment_link_id}"))
    # the balance shows each registration once, at the new price
    assert _owed(session, league) == [
        ("Amy Player", "Monthly dues", 6000), ("Amy Player", "Registration", 17500),
        ("Bo Player", "Monthly dues", 6000), ("Bo Player", "Registration", 17500),
    ]
    audit = session.scalars(select(AuditEntry).where(AuditEntry.action == "backfill.commit")
                            .order_by(AuditEntry.id.desc())).first()
    assert audit.details["replaced"] == 2


def test_a_rerun_after_a_price_change_changes_nothing(engine, session, league, stripe_gateway, stripe_stand_in):
    _new_price(session, league, "Registration", "175.00")
    commit_backfill(engine, league["admin"], stripe_gateway, plan_backfill(session, league["admin"]),
                    success_url=SUCCESS_URL)
    links_before = {link.id: (link.status, link.stripe_payment_link_id) for link in
                    session.scalars(select(PaymentLink)).all()}
    requests_before = stripe_stand_in.request_count

    plan = plan_backfill(session, league["admin"])
    again = commit_backfill(engine, league["admin"], stripe_gateway, plan, success_url=SUCCESS_URL)

    assert (plan.totals.links_to_mint, plan.totals.links_to_replace) == (0, 0)
    assert again.ok and not again.minted and not again.replaced
    session.expire_all()
    assert {link.id: (link.status, link.stripe_payment_link_id) for link in
            session.scalars(select(PaymentLink)).all()} == links_before
    assert stripe_stand_in.request_count == requests_before


def test_a_failed_deactivation_in_stripe_is_reported_and_the_new_link_stays(engine, session, league, stripe_gateway,
                                                                            stripe_stand_in):
    old = _link(session, league, league["amy"], league["registration"])
    _new_price(session, league, "Registration", "175.00")
    stripe_stand_in.inject("error", times=None, method="POST", path=f"/v1/payment_links/{old.stripe_payment_link_id}",
                           status=400, message="This payment link cannot be updated right now")

    result = commit_backfill(engine, league["admin"], stripe_gateway, plan_backfill(session, league["admin"]),
                             success_url=SUCCESS_URL)

    assert not result.ok and len(result.replaced) == 2 and not result.failed
    [still_active] = result.old_links_still_active
    assert (still_active.link_id, still_active.stripe_payment_link_id) == (old.id, old.stripe_payment_link_id)
    assert "cannot be updated right now" in still_active.reason
    assert "1 old link still active in Stripe" in result.summary()
    assert _link(session, league, league["amy"], league["registration"], LinkStatus.DEACTIVATED).id == old.id
    assert _link(session, league, league["amy"], league["registration"]).amount_cents == 17500
    assert stripe_stand_in.payment_links[old.stripe_payment_link_id]["active"] is True
    audit = session.scalars(select(AuditEntry).where(AuditEntry.action == "backfill.commit")
                            .order_by(AuditEntry.id.desc())).first()
    assert audit.details["old_links_still_active_in_stripe"][0]["stripe_payment_link_id"] == old.stripe_payment_link_id

    # The next run, Stripe still refusing, tries again and says so; nothing else is asked of it.
    plan = plan_backfill(session, league["admin"])
    assert [o.stripe_payment_link_id for o in plan.pending_switch_offs] == [old.stripe_payment_link_id]
    assert plan.has_work and not plan.to_change and plan.totals.links_to_switch_off == 1
    assert "1 old link still to switch off in Stripe" in describe_totals(plan.totals)
    again = commit_backfill(engine, league["admin"], stripe_gateway, plan, success_url=SUCCESS_URL)
    assert [o.link_id for o in again.old_links_still_active] == [old.id] and not again.ok

    # Once Stripe accepts, the old link is switched off and nothing waits for it any more. Only
    # switching off mints nothing: no thank-you page is needed, even for live links.
    stripe_stand_in.clear_faults()
    from core.settings import PLACEHOLDER_SUCCESS_URL
    from tests.stripe_links import LiveMode
    fixed = commit_backfill(engine, league["admin"], LiveMode(stripe_gateway),
                            plan_backfill(session, league["admin"]), success_url=PLACEHOLDER_SUCCESS_URL)
    assert fixed.ok and fixed.switched_off_again == 1
    assert "1 old link of an earlier run switched off in Stripe" in fixed.summary()
    assert stripe_stand_in.payment_links[old.stripe_payment_link_id]["active"] is False
    session.expire_all()
    assert session.get(PaymentLink, old.id).stripe_deactivation_pending is False
    assert not plan_backfill(session, league["admin"]).has_work


def test_a_run_stopped_before_switching_the_old_link_off_leaves_it_to_the_next_run(engine, session, league, stripe_gateway,
                                                                                   stripe_stand_in):
    """The process dies right after the replacement is recorded: the old link is still on in Stripe."""
    old = _link(session, league, league["amy"], league["registration"])
    _new_price(session, league, "Registration", "175.00")

    class DiesBeforeSwitchingOff:
        def __init__(self, real: StripeGateway) -> None:
            self.real = real

        def __getattr__(self, name: str) -> Any:
            return getattr(self.real, name)

        def deactivate_payment_link(self, stripe_id: str) -> Any:
            raise KeyboardInterrupt  # the operator's Ctrl-C, or the machine going down

    with pytest.raises(KeyboardInterrupt):
        commit_backfill(engine, league["admin"], DiesBeforeSwitchingOff(stripe_gateway),
                        plan_backfill(session, league["admin"]), success_url=SUCCESS_URL)
    session.rollback()
    assert _link(session, league, league["amy"], league["registration"]).amount_cents == 17500
    assert stripe_stand_in.payment_links[old.stripe_payment_link_id]["active"] is True

    plan = plan_backfill(session, league["admin"])
    left_on = [o.stripe_payment_link_id for o in plan.pending_switch_offs]
    assert old.stripe_payment_link_id in left_on and not plan.to_change
    result = commit_backfill(engine, league["admin"], stripe_gateway, plan, success_url=SUCCESS_URL)
    assert result.ok and result.switched_off_again == len(left_on)
    assert [stripe_stand_in.payment_links[stripe_id]["active"] for stripe_id in left_on] == [False] * len(left_on)


class PaidWhileMinting:
    """A gateway during whose link request the family pays the old link (payment sync records it)."""

    def __init__(self, real: StripeGateway, engine, old_link_id: int) -> None:
        self.real, self.engine, self.old_link_id = real, engine, old_link_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def create_payment_link(self, request, *, idempotency_key):
        with session_factory(self.engine)() as other:
            pay_link(other, other.get_one(PaymentLink, self.old_link_id))
            other.commit()
        return self.real.create_payment_link(request, idempotency_key=idempotency_key)


def test_a_link_paid_while_its_replacement_is_minted_stays_paid_and_the_new_one_is_switched_off(
        session, engine, league, stripe_gateway, stripe_stand_in):
    old = _link(session, league, league["amy"], league["registration"])
    _new_price(session, league, "Registration", "175.00")
    plan = plan_backfill(session, league["admin"])
    amy_only = replace(plan, items=tuple(i for i in plan.items if i.player_id == league["amy"].id))

    result = commit_backfill(engine, league["admin"], PaidWhileMinting(stripe_gateway, engine, old.id), amy_only,
                             success_url=SUCCESS_URL)

    [outcome] = [o for o in result.outcomes if o.item.product_id == league["registration"].id]
    assert outcome.status is ItemStatus.SKIPPED and "was paid" in outcome.reason
    assert _link(session, league, league["amy"], league["registration"], LinkStatus.PAID).id == old.id
    [set_aside] = session.scalars(select(PaymentLink).where(
        PaymentLink.player_id == league["amy"].id, PaymentLink.product_id == league["registration"].id,
        PaymentLink.status == LinkStatus.DEACTIVATED)).all()
    assert stripe_stand_in.payment_links[set_aside.stripe_payment_link_id]["active"] is False
    assert ("Amy Player", "Registration") not in {(p, r) for p, r, _ in _owed(session, league)}


class Crash(BaseException):
    """The process dying (not an error the backfill could handle)."""


class DiesAfterStripeAnswers:
    def __init__(self, real: StripeGateway) -> None:
        self.real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def create_payment_link(self, request, *, idempotency_key):
        self.real.create_payment_link(request, idempotency_key=idempotency_key)
        raise Crash()  # between Stripe's answer and the database write


def test_a_replacement_interrupted_after_stripe_answered_is_finished_by_the_rerun(engine, session, league, stripe_gateway,
                                                                                 stripe_stand_in):
    old = _link(session, league, league["amy"], league["registration"])
    _new_price(session, league, "Registration", "175.00")
    with pytest.raises(Crash):
        commit_backfill(engine, league["admin"], DiesAfterStripeAnswers(stripe_gateway),
                        plan_backfill(session, league["admin"]), success_url=SUCCESS_URL, concurrency=1)
    session.rollback()
    assert _link(session, league, league["amy"], league["registration"]).id == old.id  # still the working link

    plan = plan_backfill(session, league["admin"])
    item = _item(plan, league["amy"], league["registration"])
    assert item.action is PlanAction.REPLACE and item.reserved_link_id is not None
    result = commit_backfill(engine, league["admin"], stripe_gateway, plan, success_url=SUCCESS_URL)

    assert result.ok and len(result.replaced) == 2
    assert len(stripe_stand_in.payment_links) == 4 + 2  # the first four, and one new link per replacement
    assert any(r.replayed for r in stripe_stand_in.requests)  # Amy's was answered again, not made again
    new = _link(session, league, league["amy"], league["registration"])
    assert new.id == item.reserved_link_id and new.amount_cents == 17500
    assert stripe_stand_in.payment_links[old.stripe_payment_link_id]["active"] is False


def test_an_old_link_stripe_does_not_know_counts_as_switched_off(engine, session, league, stripe_gateway, stripe_stand_in):
    """E.g. a test-mode link after moving to a live key: nothing can be paid through it."""
    ghost = make_link(session, league["tenant"], league["amy"], league["registration"], status=LinkStatus.DEACTIVATED)
    ghost.stripe_deactivation_pending = True
    session.commit()
    assert ghost.stripe_payment_link_id not in stripe_stand_in.payment_links

    result = commit_backfill(engine, league["admin"], stripe_gateway, plan_backfill(session, league["admin"]),
                             success_url=SUCCESS_URL)

    assert result.ok and result.switched_off_again == 1 and not result.old_links_still_active
    session.expire_all()
    assert session.get(PaymentLink, ghost.id).stripe_deactivation_pending is False


def test_a_price_change_run_stopped_part_way_records_the_old_links_stripe_did_switch_off(
        engine, session, league, stripe_gateway, stripe_stand_in):
    """The admin leaves the page after the first replacement: the run stops, what was done is true."""
    _new_price(session, league, "Registration", "175.00")

    replaced: list[int] = []

    def stop_after_the_first(done: int, total: int, outcome: Any) -> None:
        if outcome.status is ItemStatus.REPLACED:
            replaced.append(outcome.item.replaces_link_id)
            raise Crash()

    with pytest.raises(Crash):
        commit_backfill(engine, league["admin"], stripe_gateway, plan_backfill(session, league["admin"]),
                        success_url=SUCCESS_URL, progress=stop_after_the_first, concurrency=1)
    session.rollback()

    session.expire_all()
    [old] = [session.get(PaymentLink, link_id) for link_id in replaced]
    assert old.status is LinkStatus.DEACTIVATED
    assert stripe_stand_in.payment_links[old.stripe_payment_link_id]["active"] is False
    assert old.stripe_deactivation_pending is False  # not reported as still on
    plan = plan_backfill(session, league["admin"])
    assert not plan.pending_switch_offs and plan.totals.links_to_replace == 1
    audit = session.scalars(select(AuditEntry).where(AuditEntry.action == "backfill.commit")
                            .order_by(AuditEntry.id.desc())).first()
    assert audit.details["interrupted"] is True and audit.details["replaced"] == 1
