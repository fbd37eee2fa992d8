"""Backfill: the plan's rules, dry run, commit, crash and rerun, races, and failures.

Stripe is the local stand-in driven through the real SDK client (see tests/stripe_stand_in.py).
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from core.access.permissions import Role
from core.backfill import (
    ItemStatus,
    PlanAction,
    PriceSource,
    commit_backfill,
    link_idempotency_key,
    plan_backfill,
    plan_rows,
)
from core.db import make_engine, session_factory
from core.errors import PermissionDenied
from core.models import AuditEntry, Base, LinkStatus, PaymentLink, PlayerStatus, PriceTier, ProductKind, utcnow
from core.payments.stripe_gateway import StripeGateway
from core.payments.sync import sync_payments
from core.reporting.balances import outstanding_balances
from tests.factories import (
    acting,
    default_tier,
    make_link,
    make_order,
    make_parent,
    make_player,
    make_product,
    make_tenant,
)
from tests.stripe_links import LiveMode

SUCCESS_URL = "https://westside.example/thanks"


@pytest.fixture
def league(session, stripe_gateway):
    tenant = make_tenant(session, "westside", name="Westside Hoops")
    dues_price = stripe_gateway.create_price(
        amount_cents=6000, currency="usd", product_name="Monthly dues", metadata={}, idempotency_key="dues"
    )
    registration = make_product(session, tenant, "Registration", amount_cents=15000)
    dues = make_product(session, tenant, "Monthly dues", kind=ProductKind.MONTHLY, amount_cents=6000,
                        stripe_price_id=dues_price)
    uniform = make_product(session, tenant, "Uniform", required=False, amount_cents=4500)
    ana = make_parent(session, tenant, "Ana O'Neil")
    ben = make_parent(session, tenant, "Ben Zed")
    amy = make_player(session, tenant, ana, first_name="Amy")
    al = make_player(session, tenant, ana, first_name="Al")
    bo = make_player(session, tenant, ben, first_name="Bo")
    make_player(session, tenant, ben, first_name="Cy", status=PlayerStatus.PROSPECT)
    make_player(session, tenant, ben, first_name="Di", status=PlayerStatus.WITHDRAWN)
    amy_uniform = make_order(session, tenant, amy, uniform, amount_cents=4500)
    bo_uniform = make_order(session, tenant, bo, uniform, amount_cents=5000)
    session.commit()
    return {"tenant": tenant, "admin": acting(tenant), "registration": registration, "dues": dues, "uniform": uniform,
                "amy": amy, "al": al, "bo": bo, "amy_uniform": amy_uniform, "bo_uniform": bo_uniform, "dues_price": dues_price}


def _by(plan, player, product):
    return [item for item in plan.items if item.player_id == player.id and item.product_id == product.id]


def _table_counts(session) -> dict[str, int]:
    return {
        table.name: session.execute(select(func.count()).select_from(table)).scalar_one()
        for table in Base.metadata.sorted_tables
    }


def _reservations(session) -> list[PaymentLink]:
    session.expire_all()
    return list(session.scalars(select(PaymentLink).where(PaymentLink.status == LinkStatus.MINTING)))


def _active_links(session, tenant) -> list[PaymentLink]:
    session.expire_all()
    return list(session.scalars(
        select(PaymentLink).where(PaymentLink.tenant_id == tenant.id, PaymentLink.status == LinkStatus.ACTIVE)
    ))


# -- the plan ----------------------------------------------------------------------------------


def test_every_signed_player_owes_each_required_product_at_its_default_tier(session, league):
    plan = plan_backfill(session, league["admin"])
    required = [i for i in plan.items if i.order_id is None]
    assert sorted((i.player_name, i.product_name, i.amount_cents) for i in required) == [
        ("Al Player", "Monthly dues", 6000), ("Al Player", "Registration", 15000),
        ("Amy Player", "Monthly dues", 6000), ("Amy Player", "Registration", 15000),
        ("Bo Player", "Monthly dues", 6000), ("Bo Player", "Registration", 15000),
    ]
    assert all(i.action is PlanAction.MINT for i in required)
    assert {i.parent_name for i in plan.items if i.player_id == league["bo"].id} == {"Ben Zed"}
    assert plan.totals.players == 3  # the prospect and the withdrawn player owe nothing yet


def test_a_pending_order_is_owed_at_its_amount_with_a_new_tier_when_none_matches(session, league):
    plan = plan_backfill(session, league["admin"])
    [amy_uniform] = _by(plan, league["amy"], league["uniform"])
    [bo_uniform] = _by(plan, league["bo"], league["uniform"])
    assert (amy_uniform.amount_cents, amy_uniform.order_id) == (4500, league["amy_uniform"].id)
    assert amy_uniform.price_source is PriceSource.NEW_PRICE  # the 45.00 tier exists, without a Stripe price
    assert (bo_uniform.amount_cents, bo_uniform.price_source) == (5000, PriceSource.NEW_TIER)
    assert _by(plan, league["al"], league["uniform"]) == []  # not required, not ordered


def test_prices_that_exist_are_reused_and_missing_ones_are_counted(session, league):
    plan = plan_backfill(session, league["admin"])
    [dues] = _by(plan, league["amy"], league["dues"])
    [registration] = _by(plan, league["amy"], league["registration"])
    assert dues.price_source is PriceSource.EXISTING
    assert registration.price_source is PriceSource.NEW_PRICE
    totals = plan.totals
    assert (totals.links_to_mint, totals.prices_to_create, totals.tiers_to_create) == (8, 3, 1)
    assert totals.amount_to_mint_cents == 3 * 15000 + 3 * 6000 + 4500 + 5000


def test_pairs_with_an_active_or_paid_link_are_left_alone(session, league):
    tenant = league["tenant"]
    active = make_link(session, tenant, league["amy"], league["registration"])
    make_link(session, tenant, league["al"], league["registration"], status=LinkStatus.PAID)
    make_link(session, tenant, league["bo"], league["registration"], status=LinkStatus.DEACTIVATED)
    session.commit()
    plan = plan_backfill(session, league["admin"])
    [amy] = _by(plan, league["amy"], league["registration"])
    [al] = _by(plan, league["al"], league["registration"])
    [bo] = _by(plan, league["bo"], league["registration"])
    assert (amy.action, amy.existing_link_id, amy.link_exists) == (PlanAction.ALREADY_LINKED, active.id, True)
    assert al.action is PlanAction.ALREADY_PAID
    assert bo.action is PlanAction.MINT and not bo.link_exists
    assert plan.totals.already_linked == 1 and plan.totals.already_paid == 1


def test_an_order_for_a_required_product_replaces_its_default_tier_link(session, league):
    make_order(session, league["tenant"], league["al"], league["registration"], amount_cents=12000)
    session.commit()
    plan = plan_backfill(session, league["admin"])
    [item] = _by(plan, league["al"], league["registration"])
    assert (item.amount_cents, item.action, item.price_source) == (12000, PlanAction.MINT, PriceSource.NEW_TIER)


def test_a_second_order_for_the_same_product_waits_for_the_first(session, league):
    second = make_order(session, league["tenant"], league["amy"], league["uniform"], amount_cents=3000)
    session.commit()
    plan = plan_backfill(session, league["admin"])
    first_item, second_item = _by(plan, league["amy"], league["uniform"])
    assert first_item.action is PlanAction.MINT
    assert (second_item.order_id, second_item.action) == (second.id, PlanAction.WAITING)
    assert f"waits for order #{league['amy_uniform'].id}" in second_item.reason
    assert second_item.reason.startswith(f"order {second.external_ref} waits")  # the treasurer's reference
    assert first_item.reason.startswith(f"order {league['amy_uniform'].external_ref};")


def test_an_order_waits_while_the_player_has_an_active_link_for_that_product(session, league):
    make_link(session, league["tenant"], league["bo"], league["uniform"])
    session.commit()
    plan = plan_backfill(session, league["admin"])
    [item] = _by(plan, league["bo"], league["uniform"])
    assert item.action is PlanAction.WAITING and "must be paid or deactivated first" in item.reason


def test_inactive_products_are_not_billed(session, league):
    league["registration"].active = False
    session.commit()
    plan = plan_backfill(session, league["admin"])
    assert not [i for i in plan.items if i.product_id == league["registration"].id]


def test_a_required_product_without_a_default_price_is_blocked_and_fails_on_commit(engine, session, league, stripe_gateway):
    default_tier(league["registration"]).is_default = False
    session.commit()
    plan = plan_backfill(session, league["admin"])
    blocked = _by(plan, league["amy"], league["registration"])[0]
    assert blocked.action is PlanAction.BLOCKED and "no default price" in blocked.reason
    result = commit_backfill(engine, league["admin"], stripe_gateway, plan, success_url=SUCCESS_URL)
    assert len(result.failed) == 3 and not result.ok
    assert len(result.minted) == 5


def test_a_league_billing_in_another_currency_plans_in_it(session):
    tenant = make_tenant(session, "maple", currency="cad")
    product = make_product(session, tenant, "Registration", currency="cad")
    default_tier(product).is_default = False  # no default price: the item is blocked, at no amount
    make_player(session, tenant, make_parent(session, tenant))
    session.commit()

    plan = plan_backfill(session, acting(tenant))

    [blocked] = plan.items
    assert (blocked.action, blocked.currency, plan.totals.currency) == (PlanAction.BLOCKED, "cad", "cad")


def test_only_an_admin_may_plan_or_commit(engine, session, league, stripe_gateway):
    for role in (Role.COACH, Role.TREASURER):
        with pytest.raises(PermissionDenied):
            plan_backfill(session, acting(league["tenant"], role))
    plan = plan_backfill(session, league["admin"])
    with pytest.raises(PermissionDenied):
        commit_backfill(engine, acting(league["tenant"], Role.TREASURER), stripe_gateway, plan, success_url=SUCCESS_URL)


def test_another_league_is_neither_planned_nor_committed(engine, session, league, stripe_gateway):
    other = make_tenant(session, "eastside")
    session.commit()
    assert plan_backfill(session, acting(other)).items == ()
    with pytest.raises(PermissionDenied):
        commit_backfill(engine, acting(other), stripe_gateway, plan_backfill(session, league["admin"]),
                        success_url=SUCCESS_URL)


# -- dry run and commit -------------------------------------------------------------------------


def test_the_dry_run_writes_nothing_and_asks_stripe_nothing(session, league, stripe_stand_in):
    before, requests_before = _table_counts(session), stripe_stand_in.request_count
    plan = plan_backfill(session, league["admin"])
    session.commit()
    assert plan.totals.links_to_mint == 8
    assert _table_counts(session) == before
    assert stripe_stand_in.request_count == requests_before


def test_commit_mints_exactly_the_plan(engine, session, league, stripe_gateway, stripe_stand_in):
    plan = plan_backfill(session, league["admin"])
    seen = []
    result = commit_backfill(engine, league["admin"], stripe_gateway, plan, success_url=SUCCESS_URL,
                             progress=lambda done, total, outcome: seen.append((done, total)))

    assert result.ok and len(result.minted) == 8
    assert seen == [(n, 8) for n in range(1, 9)]
    links = _active_links(session, league["tenant"])
    planned = {(i.player_id, i.product_id, i.amount_cents, i.order_id) for i in plan.to_mint}
    assert {(row.player_id, row.product_id, row.amount_cents, row.order_id) for row in links} == planned
    assert {row.stripe_payment_link_id for row in links} == set(stripe_stand_in.payment_links)
    assert {row.url for row in links} == {link["url"] for link in stripe_stand_in.payment_links.values()}
    # three Stripe prices were created (registration, uniform 45.00, uniform 50.00) and kept on the tiers
    assert result.prices_created == 3 and result.tiers_created == 1
    assert len(stripe_stand_in.prices) == 1 + 3
    tiers = session.scalars(select(PriceTier)).all()
    assert len(tiers) == 4 and all(t.stripe_price_id in stripe_stand_in.prices for t in tiers)
    for link in links:
        price = stripe_stand_in.prices[stripe_stand_in.link_line_items[link.stripe_payment_link_id][0]["price"]]
        assert (price["unit_amount"], price["currency"]) == (link.amount_cents, link.currency)
        assert session.get(PriceTier, link.price_tier_id).stripe_price_id == price["id"]
    # and nothing is left to do
    assert plan_backfill(session, league["admin"]).totals.links_to_mint == 0
    audit = session.scalars(select(AuditEntry).where(AuditEntry.action == "backfill.commit")).one()
    assert audit.actor == "admin@example.org" and audit.details["minted"] == 8


def test_links_carry_metadata_and_the_settings_of_their_kind(engine, session, league, stripe_gateway, stripe_stand_in):
    commit_backfill(engine, league["admin"], stripe_gateway, plan_backfill(session, league["admin"]),
                    success_url="https://westside.example/paid")
    links = {(row.player_id, row.product_id): row for row in _active_links(session, league["tenant"])}
    tenant, amy = league["tenant"], league["amy"]

    registration = links[(amy.id, league["registration"].id)]
    params = stripe_stand_in.link_params(registration.stripe_payment_link_id)
    assert params["restrictions"] == {"completed_sessions": {"limit": "1"}}
    assert "payment_intent_data" not in params and "customer_creation" not in params
    assert params["after_completion"] == {"type": "redirect", "redirect": {"url": "https://westside.example/paid"}}
    assert params["metadata"] == {
        "tenant": "westside", "tenant_id": str(tenant.id), "league_key": tenant.league_key, "player_id": str(amy.id),
        "product_id": str(league["registration"].id), "link_id": str(registration.id),
        "link_key": f"t{tenant.id}-pl{amy.id}-pr{league['registration'].id}",
    }

    dues = links[(amy.id, league["dues"].id)]
    params = stripe_stand_in.link_params(dues.stripe_payment_link_id)
    assert params["payment_intent_data"] == {"setup_future_usage": "off_session"}
    assert params["customer_creation"] == "always"
    assert "restrictions" not in params
    assert params["line_items"] == {"0": {"price": league["dues_price"], "quantity": "1"}}

    uniform = links[(amy.id, league["uniform"].id)]
    assert stripe_stand_in.link_params(uniform.stripe_payment_link_id)["metadata"]["order_id"] == str(
        league["amy_uniform"].id)


def test_a_stale_plan_does_not_mint_pairs_linked_since(engine, session, league, stripe_gateway, stripe_stand_in):
    plan = plan_backfill(session, league["admin"])
    commit_backfill(engine, league["admin"], stripe_gateway, plan, success_url=SUCCESS_URL)
    requests = stripe_stand_in.request_count
    again = commit_backfill(engine, league["admin"], stripe_gateway, plan, success_url=SUCCESS_URL)
    assert len(again.skipped) == 8 and not again.minted
    assert {o.reason for o in again.skipped} == {"linked since the plan was made"}
    assert stripe_stand_in.request_count == requests


# -- crash, rerun, failures ---------------------------------------------------------------------


class Crash(BaseException):
    """The process dying (not an error the backfill could handle)."""


def test_a_crash_half_way_then_a_rerun_mints_the_rest_and_nothing_twice(engine, session, league, stripe_gateway,
                                                                        stripe_stand_in):
    minted: list[Any] = []

    def crash_on_the_third_link(done: int, total: int, outcome: Any) -> None:
        if outcome.status is ItemStatus.MINTED:
            minted.append(outcome)
            if len(minted) == 3:
                raise Crash()

    with pytest.raises(Crash):
        commit_backfill(engine, league["admin"], stripe_gateway, plan_backfill(session, league["admin"]),
                        success_url=SUCCESS_URL, progress=crash_on_the_third_link, concurrency=2)
    session.rollback()
    survived = _active_links(session, league["tenant"])
    assert len(survived) == 3  # each link was committed as soon as Stripe returned it
    audit = session.scalars(select(AuditEntry).where(AuditEntry.action == "backfill.commit")).one()
    assert audit.details["interrupted"] is True and audit.details["minted"] == 3
    assert audit.summary.startswith("Payment link backfill: stopped part-way (a rerun finishes it): 3 payment links created")

    rerun_plan = plan_backfill(session, league["admin"])
    assert rerun_plan.totals.links_to_mint == 5 and rerun_plan.totals.already_linked == 3
    result = commit_backfill(engine, league["admin"], stripe_gateway, rerun_plan, success_url=SUCCESS_URL)

    assert result.ok and len(result.minted) == 5
    links = _active_links(session, league["tenant"])
    assert len(links) == 8 and len({(row.player_id, row.product_id) for row in links}) == 8
    # every link Stripe made is recorded once: in-flight requests of the crashed run were replayed
    assert sorted(row.stripe_payment_link_id for row in links) == sorted(stripe_stand_in.payment_links)


class DiesAfterStripeAnswers:
    """A gateway whose process dies between Stripe's answer and the database write."""

    def __init__(self, real: StripeGateway, *, after: int) -> None:
        self.real, self.after, self.calls = real, after, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def create_payment_link(self, request, *, idempotency_key):
        link = self.real.create_payment_link(request, idempotency_key=idempotency_key)
        self.calls += 1
        if self.calls > self.after:
            raise Crash()
        return link


def test_a_link_stripe_made_before_a_crash_is_recorded_on_the_rerun_not_made_again(engine, session, league,
                                                                                    stripe_gateway, stripe_stand_in):
    dying = DiesAfterStripeAnswers(stripe_gateway, after=4)
    with pytest.raises(Crash):
        commit_backfill(engine, league["admin"], dying, plan_backfill(session, league["admin"]),
                        success_url=SUCCESS_URL, concurrency=1)
    session.rollback()
    assert len(_active_links(session, league["tenant"])) == 4
    at_stripe_only = len(stripe_stand_in.payment_links) - 4
    assert at_stripe_only >= 1  # the fifth (and any already in flight) exists at Stripe only

    commit_backfill(engine, league["admin"], stripe_gateway, plan_backfill(session, league["admin"]),
                    success_url=SUCCESS_URL)

    assert len(stripe_stand_in.payment_links) == 8
    assert sorted(row.stripe_payment_link_id for row in _active_links(session, league["tenant"])) == sorted(
        stripe_stand_in.payment_links)
    assert sum(r.replayed for r in stripe_stand_in.requests) == at_stripe_only


class ChecksTheReservation:
    """A gateway that, when asked for a link, looks in the database for the row it is for."""

    def __init__(self, real: StripeGateway, engine) -> None:
        self.real, self.engine, self.seen = real, engine, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def create_payment_link(self, request, *, idempotency_key):
        link_id = int(request.metadata["link_id"])
        with session_factory(self.engine)() as other:  # another connection: sees committed rows only
            row = other.get(PaymentLink, link_id)
            self.seen.append((idempotency_key, row.status, row.stripe_payment_link_id, row.player_id,
                              row.product_id, int(request.metadata["player_id"]), int(request.metadata["product_id"])))
        return self.real.create_payment_link(request, idempotency_key=idempotency_key)


def test_each_link_row_is_reserved_and_committed_before_stripe_is_asked(session, engine, league, stripe_gateway):
    gateway = ChecksTheReservation(stripe_gateway, engine)
    result = commit_backfill(engine, league["admin"], gateway, plan_backfill(session, league["admin"]),
                             success_url=SUCCESS_URL)

    assert result.ok and len(gateway.seen) == 8
    for _key, status, stripe_id, player_id, product_id, asked_player, asked_product in gateway.seen:
        assert (status, stripe_id) == (LinkStatus.MINTING, None)
        assert (player_id, product_id) == (asked_player, asked_product)
    links = _active_links(session, league["tenant"])
    assert sorted(key for key, *_ in gateway.seen) == sorted(
        link_idempotency_key(league["tenant"].league_key, link.id, link.mint_attempt) for link in links)
    assert not _reservations(session)


def test_a_new_link_after_a_deactivated_one_is_a_new_row_with_its_own_key(engine, session, league, stripe_gateway,
                                                                          stripe_stand_in):
    old = make_link(session, league["tenant"], league["bo"], league["registration"], status=LinkStatus.DEACTIVATED)
    session.commit()
    commit_backfill(engine, league["admin"], stripe_gateway, plan_backfill(session, league["admin"]),
                    success_url=SUCCESS_URL)
    [new] = [row for row in _active_links(session, league["tenant"])
             if (row.player_id, row.product_id) == (league["bo"].id, league["registration"].id)]
    assert new.id != old.id and new.stripe_payment_link_id != old.stripe_payment_link_id
    request = next(r for r in stripe_stand_in.requests if r.params.get("metadata", {}).get("link_id") == str(new.id))
    assert request.idempotency_key == link_idempotency_key(league["tenant"].league_key, new.id, new.mint_attempt)


def test_a_link_stripe_made_before_a_crash_is_found_on_a_rerun_more_than_a_day_later(engine, session, league,
                                                                                     stripe_gateway, stripe_stand_in):
    with pytest.raises(Crash):
        commit_backfill(engine, league["admin"], DiesAfterStripeAnswers(stripe_gateway, after=4),
                        plan_backfill(session, league["admin"]), success_url=SUCCESS_URL, concurrency=1)
    session.rollback()
    attempts = {link.id: link.mint_attempt for link in _reservations(session)}
    reserved = set(attempts)
    assert len(reserved) == 4 and len(_active_links(session, league["tenant"])) == 4
    made_before = {int(link["metadata"]["link_id"]) for link in stripe_stand_in.payment_links.values()} & reserved
    assert made_before  # at Stripe, not recorded here
    # A day and more passes: Stripe forgets the idempotency keys.
    stripe_stand_in.forget_idempotency_keys()
    session.execute(update(PaymentLink).where(PaymentLink.status == LinkStatus.MINTING)
                    .values(created_at=utcnow() - timedelta(days=2)))
    session.commit()

    plan = plan_backfill(session, league["admin"])
    resumed = [item for item in plan.to_mint if item.reserved_link_id is not None]
    assert {item.reserved_link_id for item in resumed} == reserved and plan.totals.links_to_mint == 4
    assert sum(row["Link exists?"] == "reserved" for row in plan_rows(plan)) == 4
    requests_before = len(stripe_stand_in.requests)
    result = commit_backfill(engine, league["admin"], stripe_gateway, plan, success_url=SUCCESS_URL)

    assert result.ok and len(result.minted) == 4 and result.resumed == 4
    assert len(stripe_stand_in.payment_links) == 8  # nothing minted twice
    links = _active_links(session, league["tenant"])
    assert len(links) == 8 and not _reservations(session)
    for link in links:
        assert stripe_stand_in.payment_links[link.stripe_payment_link_id]["metadata"]["link_id"] == str(link.id)
    rerun = stripe_stand_in.requests[requests_before:]
    assert any((r.method, r.path) == ("GET", "/v1/payment_links") for r in rerun)
    created = {r.idempotency_key for r in rerun if (r.method, r.path) == ("POST", "/v1/payment_links")}
    assert created == {link_idempotency_key(league["tenant"].league_key, link_id, attempts[link_id])
                       for link_id in reserved - made_before}
    assert len(_owed_items(session, league)) == 8


def test_an_old_reservation_is_not_minted_blind_when_stripe_cannot_be_searched(engine, session, league, stripe_gateway,
                                                                              stripe_stand_in):
    with pytest.raises(Crash):
        commit_backfill(engine, league["admin"], DiesAfterStripeAnswers(stripe_gateway, after=0),
                        plan_backfill(session, league["admin"]), success_url=SUCCESS_URL, concurrency=1)
    session.rollback()
    session.execute(update(PaymentLink).where(PaymentLink.status == LinkStatus.MINTING)
                    .values(created_at=utcnow() - timedelta(days=2)))
    session.commit()
    stripe_stand_in.forget_idempotency_keys()
    stripe_stand_in.inject("server_error", times=None, method="GET", path="/v1/payment_links")
    links_at_stripe = len(stripe_stand_in.payment_links)

    result = commit_backfill(engine, league["admin"], stripe_gateway, plan_backfill(session, league["admin"]),
                             success_url=SUCCESS_URL)

    assert len(result.failed) == 8 and all("could not look for the link" in o.reason for o in result.failed)
    assert len(stripe_stand_in.payment_links) == links_at_stripe  # nothing made without knowing
    assert len(_reservations(session)) == 8


class SecondRunMidway:
    """Starts a second backfill while the first is about to ask Stripe for its first link."""

    def __init__(self, real: StripeGateway, engine, admin) -> None:
        self.real, self.engine, self.admin = real, engine, admin
        self.second: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def create_payment_link(self, request, *, idempotency_key):
        if self.second is None:
            with session_factory(self.engine)() as other:
                plan = plan_backfill(other, self.admin)
                self.second = (plan, commit_backfill(self.engine, self.admin, self.real, plan, success_url=SUCCESS_URL))
        return self.real.create_payment_link(request, idempotency_key=idempotency_key)


def test_a_second_run_finishes_the_first_ones_reservations_and_nothing_is_made_twice(session, engine, league,
                                                                                      stripe_gateway,
                                                                                      stripe_stand_in):
    gateway = SecondRunMidway(stripe_gateway, engine, league["admin"])
    first = commit_backfill(engine, league["admin"], gateway, plan_backfill(session, league["admin"]),
                            success_url=SUCCESS_URL, concurrency=1)

    second_plan, second = gateway.second
    assert all(item.reserved_link_id is not None for item in second_plan.to_mint) and len(second_plan.to_mint) == 8
    assert second.ok and len(second.minted) == 8 and second.resumed == 8
    assert first.ok and len(first.reused) == 8 and not first.minted
    assert len(stripe_stand_in.payment_links) == 8
    assert len(_active_links(session, league["tenant"])) == 8 and not _reservations(session)


def test_a_link_whose_fate_is_unknown_stays_reserved_and_the_rerun_records_what_stripe_made(engine, session, league,
                                                                                           stripe_gateway,
                                                                                           stripe_stand_in):
    bo, registration = league["bo"], league["registration"]
    attempts: list[Any] = []

    def bos_registration(request) -> bool:
        metadata = request.params.get("metadata", {})
        return metadata.get("player_id") == str(bo.id) and metadata.get("product_id") == str(registration.id)

    def a_retry(request) -> bool:
        if not bos_registration(request):
            return False
        attempts.append(request)
        return len(attempts) > 1

    # Stripe makes the link and the answer is lost; the client's retries cannot get through.
    stripe_stand_in.inject("drop_after", times=1, method="POST", path="/v1/payment_links", when=bos_registration)
    stripe_stand_in.inject("drop", times=None, method="POST", path="/v1/payment_links", when=a_retry)
    result = commit_backfill(engine, league["admin"], stripe_gateway, plan_backfill(session, league["admin"]),
                             success_url=SUCCESS_URL)

    [failure] = result.failed
    assert "stays reserved" in failure.reason
    [reservation] = _reservations(session)
    assert (reservation.player_id, reservation.product_id) == (bo.id, registration.id)
    assert len(stripe_stand_in.payment_links) == 8  # Stripe did make it

    stripe_stand_in.clear_faults()
    rerun = commit_backfill(engine, league["admin"], stripe_gateway, plan_backfill(session, league["admin"]),
                            success_url=SUCCESS_URL)

    assert rerun.ok and [o.link_id for o in rerun.minted] == [reservation.id]
    assert len(stripe_stand_in.payment_links) == 8 and stripe_stand_in.requests[-1].replayed
    assert not _reservations(session) and len(_active_links(session, league["tenant"])) == 8


def test_a_reservation_is_not_owed_and_payment_sync_leaves_it_alone(engine, session, league, stripe_gateway):
    amy, registration = league["amy"], league["registration"]
    reservation = PaymentLink(tenant_id=league["tenant"].id, player_id=amy.id, product_id=registration.id,
                              price_tier_id=default_tier(registration).id, amount_cents=15000, currency="usd",
                              status=LinkStatus.MINTING)
    session.add(reservation)
    session.commit()

    assert _owed_items(session, league) == []
    sync = sync_payments(engine, league["admin"], stripe_gateway, full=True)

    assert sync.ok and sync.links_checked == 0
    session.refresh(reservation)
    assert (reservation.status, reservation.stripe_payment_link_id) == (LinkStatus.MINTING, None)


def _owed_items(session, league) -> list[Any]:
    return [item for balance in outstanding_balances(session, league["admin"]) for item in balance.items]


def test_one_failing_item_is_reported_and_the_others_are_minted(engine, session, league, stripe_gateway, stripe_stand_in):
    bo = league["bo"]
    # Refused from inside the endpoint: like Stripe, the stand-in keeps the refusal under the
    # request's idempotency key and would replay it to the same key.
    stripe_stand_in.inject(
        "refuse", times=1, path="/v1/payment_links", status=400,
        message="The account cannot take payments in this currency",
        when=lambda r: r.params.get("metadata", {}).get("player_id") == str(bo.id)
        and r.params["metadata"]["product_id"] == str(league["registration"].id),
    )
    result = commit_backfill(engine, league["admin"], stripe_gateway, plan_backfill(session, league["admin"]),
                             success_url=SUCCESS_URL)

    assert not result.ok
    [failure] = result.failed
    assert (failure.item.player_id, failure.item.product_id) == (bo.id, league["registration"].id)
    assert "cannot take payments in this currency" in failure.reason and "Stripe request req_" in failure.reason
    assert len(result.minted) == 7 and len(_active_links(session, league["tenant"])) == 7
    audit = session.scalars(select(AuditEntry).where(AuditEntry.action == "backfill.commit")).one()
    assert audit.details["failed"][0]["reason"] == failure.reason
    # Stripe refused outright, so nothing exists to find later: the reservation is gone
    assert not _reservations(session)
    [refused_key] = {r.idempotency_key for r in stripe_stand_in.requests if r.status == 400}

    rerun = commit_backfill(engine, league["admin"], stripe_gateway, plan_backfill(session, league["admin"]),
                            success_url=SUCCESS_URL)
    assert [(o.item.player_id, o.item.product_id) for o in rerun.minted] == [(bo.id, league["registration"].id)]
    assert stripe_stand_in.requests[-1].idempotency_key != refused_key  # a new row, so a new key


def test_a_price_that_cannot_be_created_fails_only_the_links_that_need_it(engine, session, league, stripe_gateway,
                                                                        stripe_stand_in):
    stripe_stand_in.inject("error", times=None, path="/v1/prices", message="Products are disabled",
                           when=lambda r: r.params["product_data"]["name"] == "Registration")
    result = commit_backfill(engine, league["admin"], stripe_gateway, plan_backfill(session, league["admin"]),
                             success_url=SUCCESS_URL)
    assert {o.item.product_name for o in result.failed} == {"Registration"} and len(result.failed) == 3
    assert all("could not create the Stripe price" in o.reason for o in result.failed)
    assert len(result.minted) == 5


def test_injected_rate_limits_and_lost_answers_are_ridden_out(engine, session, league, stripe_gateway, stripe_stand_in):
    stripe_stand_in.inject("rate_limit", times=6)  # fewer than one request's retries: none may give up
    stripe_stand_in.inject("drop_after", times=2, path="/v1/payment_links")
    result = commit_backfill(engine, league["admin"], stripe_gateway, plan_backfill(session, league["admin"]),
                             success_url=SUCCESS_URL, concurrency=4)
    assert result.ok and len(result.minted) == 8
    assert stripe_stand_in.count(status=429) == 6
    assert len(stripe_stand_in.payment_links) == 8


def test_a_429_storm_from_a_limit_far_below_the_pace_is_ridden_out(engine, session, league, stripe_stand_in):
    stripe_stand_in.rate_limit = 6  # as if other clients were using up the key's allowance
    gateway = StripeGateway("sk_test_stand_in", api_base=stripe_stand_in.api_base, requests_per_second=1000,
                            rate_limit_backoff_seconds=0.1, max_backoff_seconds=1.0)
    result = commit_backfill(engine, league["admin"], gateway, plan_backfill(session, league["admin"]),
                             success_url=SUCCESS_URL, concurrency=8)
    assert result.ok and len(result.minted) == 8
    assert stripe_stand_in.rate_limited > 0
    assert gateway.stats.rate_limited == stripe_stand_in.rate_limited
    assert gateway.stats.rate_limit_give_ups == 0


# -- two backfills at once ----------------------------------------------------------------------


@pytest.mark.postgres_only
def test_two_backfills_at_once_leave_one_active_link_per_pair(database_url, session, league, stripe_stand_in):
    for n in range(20):  # enough items that the two runs overlap
        parent = make_parent(session, league["tenant"], f"Family {n:02d}")
        make_player(session, league["tenant"], parent, first_name=f"Kid{n:02d}")
    session.commit()
    pairs = plan_backfill(session, league["admin"]).totals.links_to_mint
    stripe_stand_in.latency = 0.05
    start = threading.Barrier(2)
    results: list[Any] = []
    errors: list[BaseException] = []

    def backfill(reverse: bool) -> None:
        engine = make_engine(database_url)  # a separate engine: as good as another process here
        gateway = StripeGateway("sk_test_stand_in", api_base=stripe_stand_in.api_base, requests_per_second=1000,
                                rate_limit_backoff_seconds=0.01)
        try:
            with session_factory(engine)() as own:
                plan = plan_backfill(own, league["admin"])
                if reverse:  # walk the league from the other end, so the two runs cross mid-way
                    plan = replace(plan, items=plan.items[::-1])
                start.wait()
                results.append(commit_backfill(engine, league["admin"], gateway, plan, success_url=SUCCESS_URL,
                                               concurrency=4))
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=backfill, args=(reverse,)) for reverse in (False, True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors
    links = _active_links(session, league["tenant"])
    assert len(links) == pairs == len({(row.player_id, row.product_id) for row in links})
    assert all(result.ok for result in results), [(o.item.key, o.reason) for r in results for o in r.failed]
    assert sum(len(r.minted) for r in results) == pairs
    assert sum(len(r.reused) + len(r.skipped) for r in results) == pairs
    assert len(stripe_stand_in.payment_links) == pairs  # the same idempotency keys: Stripe made each link once


def _league_in_its_own_database(path) -> Any:  # type: ignore[no-untyped-def]
    """A fresh SQLite database holding league #1 with one player owing registration."""
    from core.db import upgrade_database

    url = f"sqlite:///{path}"
    upgrade_database(url)
    engine = make_engine(url)
    session = session_factory(engine)()
    tenant = make_tenant(session, "westside")
    make_player(session, tenant, make_parent(session, tenant, "Ana O'Neil", "ana@example.org"), first_name="Amy")
    make_product(session, tenant, "Registration", amount_cents=15000)
    session.commit()
    return engine, session, tenant


def test_two_databases_on_one_stripe_account_each_mint_their_own_links(tmp_path, stripe_stand_in, stripe_gateway):
    """A trial install next to the real one: both have a league #1 and a link row #1."""
    minted = []
    for name in ("real.db", "trial.db"):
        engine, session, tenant = _league_in_its_own_database(tmp_path / name)
        try:
            assert tenant.id == 1
            result = commit_backfill(engine, acting(tenant), stripe_gateway, plan_backfill(session, acting(tenant)),
                                     success_url="https://westside.example/paid")
            assert result.ok and len(result.minted) == 1, result.failed
            minted.append(session.scalars(select(PaymentLink.stripe_payment_link_id)).one())
        finally:
            session.close()
            engine.dispose()
    assert minted[0] != minted[1] and set(minted) <= set(stripe_stand_in.payment_links)
    assert len({stripe_stand_in.payment_links[m]["metadata"]["league_key"] for m in minted}) == 2


def test_a_league_from_before_the_stripe_namespace_resumes_an_interrupted_run_with_its_requests_unchanged(
        engine, session, league, stripe_gateway, stripe_stand_in):
    """Created before migration 0004: its requests are sent exactly as before (key and parameters),
    so a reservation left by a run interrupted before the upgrade is replayed, not refused."""
    tenant = league["tenant"]
    tenant.stripe_namespace = None
    session.commit()
    assert tenant.league_key == f"t{tenant.id}"
    with pytest.raises(Crash):
        commit_backfill(engine, league["admin"], DiesAfterStripeAnswers(stripe_gateway, after=4),
                        plan_backfill(session, league["admin"]), success_url=SUCCESS_URL, concurrency=1)
    session.rollback()
    at_stripe_only = len(stripe_stand_in.payment_links) - 4

    result = commit_backfill(engine, league["admin"], stripe_gateway, plan_backfill(session, league["admin"]),
                             success_url=SUCCESS_URL)

    assert result.ok and len(stripe_stand_in.payment_links) == 8
    assert sum(r.replayed for r in stripe_stand_in.requests) == at_stripe_only >= 1
    minting = [r for r in stripe_stand_in.requests if r.path == "/v1/payment_links" and r.method == "POST"]
    assert all(r.idempotency_key.startswith(f"backfill-link:t{tenant.id}:l") for r in minting)
    assert not any("league_key" in r.params["metadata"] for r in minting)


def test_live_links_are_never_minted_with_the_placeholder_thank_you_page(engine, session, league, stripe_gateway,
                                                                          stripe_stand_in):
    from core.settings import PLACEHOLDER_SUCCESS_URL, ConfigurationError

    before = stripe_stand_in.request_count
    with pytest.raises(ConfigurationError, match="before creating live payment links"):
        commit_backfill(engine, league["admin"], LiveMode(stripe_gateway), plan_backfill(session, league["admin"]),
                        success_url=PLACEHOLDER_SUCCESS_URL)
    assert stripe_stand_in.request_count == before and not _active_links(session, league["tenant"])
