"""A payment link's transitions (core.payments.links): minted once, switched off database first.

Each path that changes a link's status is driven here through its workflow (the backfill,
payment sync) or the transition itself, against the Stripe stand-in through the real SDK.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from core.backfill import ItemStatus, commit_backfill, plan_backfill
from core.db import session_factory, unit_of_work
from core.errors import PaymentProviderError
from core.models import LinkStatus, OrderStatus, PaymentLink, PlayerStatus
from core.payments import links
from core.payments.gateway import CompletedCheckout, MintedLink
from core.payments.links import ActivationOutcome, LinkToReserve, link_idempotency_key
from core.payments.stripe_gateway import StripeGateway
from core.payments.sync import sync_payments
from core.reporting.balances import outstanding_balances
from core.roster.importing import import_roster
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
from tests.stripe_links import mirror_links

SUCCESS_URL = "https://westside.example/thanks"


class Crash(BaseException):
    """The process dying (not an error anything could handle)."""


@pytest.fixture
def league(session):  # type: ignore[no-untyped-def]
    tenant = make_tenant(session, "westside")
    registration = make_product(session, tenant, "Registration", amount_cents=15000)
    amy = make_player(session, tenant, make_parent(session, tenant, "Ana O'Neil"), first_name="Amy")
    session.commit()
    return {"tenant": tenant, "admin": acting(tenant), "registration": registration, "amy": amy}


def _link(session, link_id: int) -> PaymentLink:  # type: ignore[no-untyped-def]
    session.expire_all()
    found = session.get(PaymentLink, link_id)
    assert found is not None
    return found


def _wanted(league) -> LinkToReserve:  # type: ignore[no-untyped-def]
    tier = default_tier(league["registration"])
    return LinkToReserve(player_id=league["amy"].id, product_id=league["registration"].id, price_tier_id=tier.id,
                         order_id=None, amount_cents=15000, currency="usd")


def _owed_link_ids(session, league) -> set[int]:  # type: ignore[no-untyped-def]
    return {item.link_id for balance in outstanding_balances(session, league["admin"]) for item in balance.items}


# -- minting: reserve, activate --------------------------------------------------------------------


def test_each_reservation_is_its_own_attempt_with_its_own_key(engine, league):
    with unit_of_work(engine) as session:
        [first] = links.reserve(session, league["admin"], [_wanted(league)])
    with unit_of_work(engine) as session:
        links.drop_reservations(session, league["admin"], [first.link_id])
    with unit_of_work(engine) as session:
        [second] = links.reserve(session, league["admin"], [_wanted(league)])

    assert first.mint_attempt and second.mint_attempt and first.mint_attempt != second.mint_attempt
    # even when the database gives the second row the first one's id (SQLite reuses the highest)
    assert link_idempotency_key("k", first.link_id, first.mint_attempt) != link_idempotency_key(
        "k", second.link_id, second.mint_attempt)


def test_a_pair_can_be_reserved_only_once_at_a_time(engine, league):
    with unit_of_work(engine) as session:
        links.reserve(session, league["admin"], [_wanted(league)])
    with pytest.raises(IntegrityError), unit_of_work(engine) as session:
        links.reserve(session, league["admin"], [_wanted(league)])


def test_a_reservation_made_before_attempt_tokens_keeps_its_old_key(engine, session, league, stripe_gateway,
                                                                    stripe_stand_in):
    """Reserved by a run interrupted before migration 0006: finished with the request it was first sent with."""
    reservation = PaymentLink(tenant_id=league["tenant"].id, player_id=league["amy"].id,
                              product_id=league["registration"].id,
                              price_tier_id=default_tier(league["registration"]).id,
                              amount_cents=15000, currency="usd", status=LinkStatus.MINTING)
    session.add(reservation)
    session.commit()
    assert reservation.mint_attempt is None

    result = commit_backfill(engine, league["admin"], stripe_gateway, plan_backfill(session, league["admin"]),
                             success_url=SUCCESS_URL)

    assert result.ok and [o.link_id for o in result.minted] == [reservation.id]
    [request] = [r for r in stripe_stand_in.requests if (r.method, r.path) == ("POST", "/v1/payment_links")]
    assert request.idempotency_key == f"backfill-link:{league['tenant'].league_key}:l{reservation.id}"


def test_a_link_stripe_refused_is_minted_by_the_next_run_even_when_its_row_id_comes_back(
        engine, session, league, stripe_gateway, stripe_stand_in):
    """The only reservation is the highest row: SQLite gives its id to the next one. Like Stripe, the
    stand-in keeps a refusal under the request's key and answers it again to that key."""
    stripe_stand_in.inject("refuse", times=1, path="/v1/payment_links", status=400,
                           message="The account cannot take payments right now")
    first = commit_backfill(engine, league["admin"], stripe_gateway, plan_backfill(session, league["admin"]),
                            success_url=SUCCESS_URL)
    assert not first.ok and "cannot take payments right now" in first.failed[0].reason
    session.expire_all()
    assert session.scalars(select(PaymentLink)).all() == []  # nothing exists at Stripe: the row is gone

    second = commit_backfill(engine, league["admin"], stripe_gateway, plan_backfill(session, league["admin"]),
                             success_url=SUCCESS_URL)

    assert second.ok and len(second.minted) == 1, second.failed
    [link] = session.scalars(select(PaymentLink)).all()
    assert link.status is LinkStatus.ACTIVE and link.stripe_payment_link_id in stripe_stand_in.payment_links
    keys = [r.idempotency_key for r in stripe_stand_in.requests if (r.method, r.path) == ("POST", "/v1/payment_links")]
    assert len(keys) == 2 and keys[0] != keys[1]


def test_activating_a_replacement_retires_the_old_link_in_the_same_transaction(engine, session, league):
    old = make_link(session, league["tenant"], league["amy"], league["registration"])
    session.commit()
    with unit_of_work(engine) as uow:
        [reserved] = links.reserve(uow, league["admin"], [_wanted(league)])
    minted = MintedLink("plink_new", "https://buy.stripe.com/new")

    with unit_of_work(engine) as uow:
        activation = links.activate(uow, league["admin"], reserved.link_id, minted, replaces=old.id)

    assert activation.outcome is ActivationOutcome.REPLACED
    assert activation.switch_off == links.SwitchOff(old.id, old.stripe_payment_link_id)
    retired, new = _link(session, old.id), _link(session, reserved.link_id)
    assert (retired.status, retired.stripe_deactivation_pending) == (LinkStatus.DEACTIVATED, True)
    assert (new.status, new.stripe_payment_link_id, new.url) == (LinkStatus.ACTIVE, "plink_new", minted.url)


def test_a_replacement_whose_old_link_was_paid_meanwhile_is_set_aside(engine, session, league):
    old = make_link(session, league["tenant"], league["amy"], league["registration"], status=LinkStatus.PAID)
    session.commit()
    with unit_of_work(engine) as uow:
        [reserved] = links.reserve(uow, league["admin"], [_wanted(league)])

    with unit_of_work(engine) as uow:
        activation = links.activate(uow, league["admin"], reserved.link_id, MintedLink("plink_new", "u"),
                                    replaces=old.id)

    assert activation.outcome is ActivationOutcome.REPLACED_LINK_CHANGED
    assert activation.switch_off == links.SwitchOff(reserved.link_id, "plink_new")
    assert _link(session, old.id).status is LinkStatus.PAID
    new = _link(session, reserved.link_id)
    assert (new.status, new.stripe_deactivation_pending) == (LinkStatus.DEACTIVATED, True)


def test_a_reservation_that_loses_its_pair_is_set_aside_for_the_active_link(engine, session, league):
    with unit_of_work(engine) as uow:
        [reserved] = links.reserve(uow, league["admin"], [_wanted(league)])
    winner = make_link(session, league["tenant"], league["amy"], league["registration"])  # another run's
    session.commit()
    minted = MintedLink("plink_ours", "https://buy.stripe.com/ours")

    with pytest.raises(IntegrityError), unit_of_work(engine) as uow:
        links.activate(uow, league["admin"], reserved.link_id, minted)
    with unit_of_work(engine) as uow:
        lost = links.lose_the_pair(uow, league["admin"], reserved.link_id, minted)

    assert (lost.outcome, lost.winner_id, lost.winner_url) == (ActivationOutcome.SET_ASIDE, winner.id, winner.url)
    ours = _link(session, reserved.link_id)
    assert (ours.status, ours.stripe_payment_link_id, ours.stripe_deactivation_pending) == (
        LinkStatus.DEACTIVATED, "plink_ours", True)


def test_a_reservation_another_run_finished_is_not_activated_again(engine, session, league):
    with unit_of_work(engine) as uow:
        [reserved] = links.reserve(uow, league["admin"], [_wanted(league)])
    with unit_of_work(engine) as uow:
        links.activate(uow, league["admin"], reserved.link_id, MintedLink("plink_first", "u1"))

    with unit_of_work(engine) as uow:
        again = links.activate(uow, league["admin"], reserved.link_id, MintedLink("plink_second", "u2"))

    assert (again.outcome, again.status, again.stripe_payment_link_id) == (
        ActivationOutcome.NOT_MINTING, LinkStatus.ACTIVE, "plink_first")


# -- paying ------------------------------------------------------------------------------------------


def _checkout(amount: int = 4500) -> CompletedCheckout:
    from core.models import utcnow

    return CompletedCheckout(id="cs_1", payment_link_id="plink", payment_status="paid", amount_total=amount,
                             currency="usd", created=utcnow())


def test_paying_a_link_pays_the_order_it_was_made_for(engine, session, league):
    uniform = make_product(session, league["tenant"], "Uniform", required=False, amount_cents=4500)
    order = make_order(session, league["tenant"], league["amy"], uniform)
    link = make_link(session, league["tenant"], league["amy"], uniform, order=order)
    session.commit()

    with unit_of_work(engine) as uow:
        locked = links.locked_link(uow, league["admin"], link.id)
        assert locked is not None
        links.mark_paid(uow, league["admin"], locked, _checkout(), amount_mismatch=False)

    paid = _link(session, link.id)
    assert (paid.status, paid.checkout_session_id, paid.paid_amount_cents) == (LinkStatus.PAID, "cs_1", 4500)
    session.refresh(order)
    assert order.status is OrderStatus.PAID


def test_a_retired_link_paid_before_stripe_switched_it_off_is_still_switched_off(engine, session, league):
    link = make_link(session, league["tenant"], league["amy"], league["registration"])
    session.commit()
    with unit_of_work(engine) as uow:
        assert links.retire(uow, league["admin"], link.id) is not None
    with unit_of_work(engine) as uow:
        locked = links.locked_link(uow, league["admin"], link.id)
        assert locked is not None
        links.mark_paid(uow, league["admin"], locked, _checkout(15000), amount_mismatch=False)

    assert [o.link_id for o in links.links_awaiting_switch_off(session, league["admin"])] == [link.id]


def test_only_an_active_link_is_retired(engine, session, league):
    paid = make_link(session, league["tenant"], league["amy"], league["registration"], status=LinkStatus.PAID)
    session.commit()
    with unit_of_work(engine) as uow:
        assert links.retire(uow, league["admin"], paid.id) is None
    assert _link(session, paid.id).status is LinkStatus.PAID


# -- switching off: the database first, then Stripe -----------------------------------------------


class DiesAtStripe:
    """A gateway whose process dies when it is about to ask Stripe to switch a link off."""

    def __init__(self, real: StripeGateway) -> None:
        self.real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def deactivate_payment_link(self, stripe_id: str) -> Any:
        raise Crash()


@pytest.fixture
def withdrawn(session, league, stripe_stand_in):  # type: ignore[no-untyped-def]
    """Amy has withdrawn; her registration link is active here and in Stripe."""
    link = make_link(session, league["tenant"], league["amy"], league["registration"])
    league["amy"].status = PlayerStatus.WITHDRAWN
    session.commit()
    mirror_links(stripe_stand_in, session, [link])
    return link


def test_a_withdrawn_players_link_is_retired_here_before_stripe_is_asked(engine, session, league, withdrawn,
                                                                          stripe_gateway, stripe_stand_in):
    seen = []

    class LooksFirst:
        def __getattr__(self, name: str) -> Any:
            return getattr(stripe_gateway, name)

        def deactivate_payment_link(self, stripe_id: str) -> Any:
            with session_factory(engine)() as other:  # another connection: committed rows only
                row = other.get(PaymentLink, withdrawn.id)
                seen.append((row.status, row.stripe_deactivation_pending))
            return stripe_gateway.deactivate_payment_link(stripe_id)

    result = sync_payments(engine, league["admin"], LooksFirst())

    assert result.ok and [d.link_id for d in result.deactivated] == [withdrawn.id]
    assert seen == [(LinkStatus.DEACTIVATED, True)]
    stored = _link(session, withdrawn.id)
    assert (stored.status, stored.stripe_deactivation_pending) == (LinkStatus.DEACTIVATED, False)
    assert stripe_stand_in.payment_links[withdrawn.stripe_payment_link_id]["active"] is False


def test_a_sync_that_dies_between_the_database_and_stripe_is_finished_by_the_next(engine, session, league,
                                                                                   withdrawn, stripe_gateway,
                                                                                   stripe_stand_in):
    with pytest.raises(Crash):
        sync_payments(engine, league["admin"], DiesAtStripe(stripe_gateway))

    stored = _link(session, withdrawn.id)
    assert (stored.status, stored.stripe_deactivation_pending) == (LinkStatus.DEACTIVATED, True)
    assert stripe_stand_in.payment_links[withdrawn.stripe_payment_link_id]["active"] is True
    assert withdrawn.id not in _owed_link_ids(session, league)  # the family is not billed meanwhile

    rerun = sync_payments(engine, league["admin"], stripe_gateway)

    assert rerun.ok and [d.link_id for d in rerun.deactivated] == [withdrawn.id]
    assert stripe_stand_in.payment_links[withdrawn.stripe_payment_link_id]["active"] is False
    assert _link(session, withdrawn.id).stripe_deactivation_pending is False


def test_a_withdrawn_players_link_stripe_refuses_to_switch_off_stays_marked_and_is_asked_again(
        engine, session, league, withdrawn, stripe_gateway, stripe_stand_in):
    stripe_stand_in.inject("error", times=1, method="POST", path="/v1/payment_links/", message="Not now")

    refused = sync_payments(engine, league["admin"], stripe_gateway)

    assert not refused.ok and "Not now" in refused.errors[0] and refused.deactivated == []
    assert _link(session, withdrawn.id).stripe_deactivation_pending is True
    again = sync_payments(engine, league["admin"], stripe_gateway)
    assert again.ok and [d.link_id for d in again.deactivated] == [withdrawn.id]
    assert _link(session, withdrawn.id).stripe_deactivation_pending is False


def test_a_link_stripe_does_not_know_counts_as_switched_off(engine, session, league, stripe_gateway):
    link = make_link(session, league["tenant"], league["amy"], league["registration"])  # not in the stand-in
    session.commit()
    with unit_of_work(engine) as uow:
        retired = links.retire(uow, league["admin"], link.id)
    assert retired is not None

    assert links.switch_off(engine, league["admin"], stripe_gateway, retired) is None
    assert _link(session, link.id).stripe_deactivation_pending is False


def test_switch_offs_stopped_part_way_record_what_stripe_did(engine, session, league, stripe_gateway,
                                                             stripe_stand_in):
    retired = []
    for n in range(3):
        player = make_player(session, league["tenant"], make_parent(session, league["tenant"]), first_name=f"K{n}")
        retired.append(make_link(session, league["tenant"], player, league["registration"]))
    session.commit()
    mirror_links(stripe_stand_in, session, retired)
    with unit_of_work(engine) as uow:
        for link in retired:
            links.retire(uow, league["admin"], link.id)
    waiting = links.links_awaiting_switch_off(session, league["admin"])

    switch_offs: links.SwitchOffs[links.PendingSwitchOff] = links.SwitchOffs(
        engine, league["admin"], stripe_gateway, concurrency=1)
    with pytest.raises(KeyboardInterrupt), switch_offs:
        switch_offs.ask(waiting[0])
        switch_offs.ask(waiting[1])
        raise KeyboardInterrupt  # the operator's Ctrl-C while the calls are out

    assert [o.switched_off for o in switch_offs.outcomes] == [True, True]
    session.expire_all()
    assert [o.link_id for o in links.links_awaiting_switch_off(session, league["admin"])] == [retired[2].id]


def test_a_stripe_error_switching_off_is_an_outcome_and_a_bug_is_raised(engine, session, league, stripe_gateway):
    link = make_link(session, league["tenant"], league["amy"], league["registration"])
    session.commit()
    with unit_of_work(engine) as uow:
        target = links.retire(uow, league["admin"], link.id)
    assert target is not None

    class Refuses:
        def deactivate_payment_link(self, stripe_id: str) -> Any:
            raise PaymentProviderError("Stripe could not deactivate it", http_status=400)

    refused: links.SwitchOffs[links.SwitchOff] = links.SwitchOffs(engine, league["admin"], Refuses(),  # type: ignore[arg-type]
                                                                  concurrency=1)
    with refused:
        refused.ask(target)
    [outcome] = refused.outcomes
    assert not outcome.switched_off and "could not deactivate" in str(outcome.error)
    assert _link(session, link.id).stripe_deactivation_pending is True

    class Broken:
        def deactivate_payment_link(self, stripe_id: str) -> Any:
            raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        with links.SwitchOffs(engine, league["admin"], Broken(), concurrency=1) as broken:  # type: ignore[arg-type]
            broken.ask(target)


def test_the_backfill_replaces_a_link_through_the_same_protocol(engine, session, league, stripe_gateway,
                                                               stripe_stand_in):
    """A price change: the old link is retired (marked) in the transaction that activates the new one."""
    old = make_link(session, league["tenant"], league["amy"], league["registration"])
    session.commit()
    mirror_links(stripe_stand_in, session, [old])
    products = b"product,kind,required,amount\nRegistration,one_time,yes,175.00\n"
    assert not import_roster(session, league["admin"], products, commit=True, file_name="products.csv").errors
    session.commit()
    seen = []

    class LooksFirst:
        def __getattr__(self, name: str) -> Any:
            return getattr(stripe_gateway, name)

        def deactivate_payment_link(self, stripe_id: str) -> Any:
            with engine.connect() as connection:
                seen.append(connection.execute(text(
                    "SELECT status, stripe_deactivation_pending FROM payment_links WHERE id = :id"),
                    {"id": old.id}).one())
            return stripe_gateway.deactivate_payment_link(stripe_id)

    result = commit_backfill(engine, league["admin"], LooksFirst(), plan_backfill(session, league["admin"]),
                             success_url=SUCCESS_URL)

    assert result.ok and [o.status for o in result.outcomes] == [ItemStatus.REPLACED]
    assert [(status, bool(pending)) for status, pending in seen] == [("deactivated", True)]
    assert _link(session, old.id).stripe_deactivation_pending is False
    assert stripe_stand_in.payment_links[old.stripe_payment_link_id]["active"] is False
