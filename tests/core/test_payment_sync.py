"""Payment sync against the local Stripe stand-in, through the real Stripe SDK client."""

from __future__ import annotations

import csv
import io
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from core.access.permissions import Role
from core.errors import PermissionDenied
from core.models import (
    AuditEntry,
    LinkStatus,
    OrderStatus,
    PaymentLink,
    PlayerStatus,
    ProductKind,
    StripeEventCursor,
    Tenant,
    utcnow,
)
from core.payments.events import EVENT_OVERLAP, EVENT_TYPES
from core.payments.sync import FlagKind, SyncIncomplete, sync_payments
from core.reporting.balances import outstanding_balances
from core.reporting.export import ExportKind, export_balances_csv
from tests.factories import (
    acting,
    make_link,
    make_order,
    make_parent,
    make_player,
    make_product,
    make_team,
    make_tenant,
)
from tests.stripe_links import mirror_links
from tests.stripe_stand_in import as_list


@dataclass
class League:
    tenant: Tenant
    registration: object
    dues: object
    links: list[PaymentLink]

    @property
    def admin(self):  # type: ignore[no-untyped-def]
        return acting(self.tenant, Role.ADMIN)

    @property
    def treasurer(self):  # type: ignore[no-untyped-def]
        return acting(self.tenant, Role.TREASURER)


def _league(session, stand_in, players: int = 3) -> League:  # type: ignore[no-untyped-def]
    tenant = make_tenant(session)
    team = make_team(session, tenant)
    registration = make_product(session, tenant, "Registration", amount_cents=15000)
    dues = make_product(session, tenant, "Monthly dues", kind=ProductKind.MONTHLY, amount_cents=6000)
    links = []
    for _ in range(players):
        parent = make_parent(session, tenant)
        player = make_player(session, tenant, parent, team)
        links.append(make_link(session, tenant, player, registration))
    session.commit()
    mirror_links(stand_in, session, links)
    return League(tenant, registration, dues, links)


@pytest.fixture
def league(session, stripe_stand_in) -> League:  # type: ignore[no-untyped-def]
    return _league(session, stripe_stand_in)


def _reload(session, link: PaymentLink) -> PaymentLink:  # type: ignore[no-untyped-def]
    session.expire_all()
    found = session.get(PaymentLink, link.id)
    assert found is not None
    return found


def _owed_link_ids(session, user) -> set[int]:  # type: ignore[no-untyped-def]
    return {item.link_id for balance in outstanding_balances(session, user) for item in balance.items}


def _session_lists(stand_in) -> list:  # type: ignore[no-untyped-def]
    return [r for r in stand_in.requests if r.method == "GET" and r.path == "/v1/checkout/sessions"]


def _event_lists(stand_in) -> list:  # type: ignore[no-untyped-def]
    return [r for r in stand_in.requests if r.method == "GET" and r.path == "/v1/events"]


# -- paid, processing, amounts ---------------------------------------------------------------------


def test_a_paid_session_marks_its_link_paid_with_time_amount_and_session(engine, session, league, stripe_stand_in, stripe_gateway):
    link = league.links[0]
    paid = stripe_stand_in.complete_checkout_session(link.stripe_payment_link_id)

    result = sync_payments(engine, league.treasurer, stripe_gateway)

    stored = _reload(session, link)
    assert stored.status is LinkStatus.PAID
    assert stored.checkout_session_id == paid["id"]
    assert stored.paid_amount_cents == 15000 and not stored.amount_mismatch
    assert stored.paid_at == datetime.fromtimestamp(paid["created"], tz=UTC)
    assert (result.paid_count, result.paid_cents) == (1, 15000)
    assert (result.still_owed_count, result.still_owed_cents) == (2, 30000)
    assert result.ok and result.flags == [] and result.errors == []


def test_a_paid_link_no_longer_shows_in_the_balances_or_the_csv(engine, session, league, stripe_stand_in, stripe_gateway):
    link = league.links[0]
    user = league.treasurer
    before = export_balances_csv(session, user, kind=ExportKind.LINE_ITEMS).decode("utf-8-sig")
    session.commit()  # the export is audited; the sync runs in units of work of its own
    assert link.url in before and link.id in _owed_link_ids(session, user)
    stripe_stand_in.complete_checkout_session(link.stripe_payment_link_id)

    sync_payments(engine, user, stripe_gateway)

    assert link.id not in _owed_link_ids(session, user)
    rows = list(csv.DictReader(io.StringIO(export_balances_csv(session, user).decode("utf-8-sig"))))
    assert len(rows) == 2 and link.url not in {row["pay_now_url"] for row in rows}


def test_a_payment_still_processing_stays_owed_as_processing_until_it_settles(
    engine, session, league, stripe_stand_in, stripe_gateway
):
    link = league.links[0]
    pending = stripe_stand_in.complete_checkout_session(link.stripe_payment_link_id, paid=False)

    first = sync_payments(engine, league.treasurer, stripe_gateway)

    stored = _reload(session, link)
    assert (stored.status, stored.processing) == (LinkStatus.ACTIVE, True)
    owed = {item.link_id: item for balance in outstanding_balances(session, league.treasurer) for item in balance.items}
    assert owed[link.id].processing
    # still owed: the items still to pay, as on the page (the one processing is counted apart)
    assert (first.paid_count, first.processing_count, first.still_owed_count) == (0, 1, 2)

    # Days later the bank transfer clears; the session keeps its old creation time, far
    # outside the next window, and the link is still found because it was processing.
    stripe_stand_in.settle_checkout_session(pending["id"])
    session.execute(
        update(PaymentLink).where(PaymentLink.tenant_id == league.tenant.id)
        .values(created_at=utcnow() - timedelta(days=10))
    )
    session.get(Tenant, league.tenant.id).payments_synced_at = utcnow() + timedelta(days=3)
    session.commit()

    second = sync_payments(engine, league.treasurer, stripe_gateway)

    stored = _reload(session, link)
    assert (stored.status, stored.processing, stored.checkout_session_id) == (LinkStatus.PAID, False, pending["id"])
    assert second.paid_count == 1 and second.processing_count == 0


def test_a_different_amount_is_marked_paid_and_flagged_for_the_treasurer(engine, session, league, stripe_stand_in, stripe_gateway):
    link = league.links[0]
    stripe_stand_in.complete_checkout_session(link.stripe_payment_link_id, amount_total=10000)

    result = sync_payments(engine, league.treasurer, stripe_gateway)

    stored = _reload(session, link)
    assert (stored.status, stored.paid_amount_cents, stored.amount_mismatch) == (LinkStatus.PAID, 10000, True)
    assert [(f.kind, f.link_id) for f in result.flags] == [(FlagKind.AMOUNT_MISMATCH, link.id)]
    assert "$100.00" in result.flags[0].describe() and result.paid[0].amount_mismatch


def test_several_sessions_on_one_link_the_first_paid_wins_and_the_rest_are_flagged(
    engine, session, stripe_stand_in, stripe_gateway
):
    league = _league(session, stripe_stand_in, players=0)
    tenant = league.tenant
    player = make_player(session, tenant, make_parent(session, tenant))
    monthly = make_link(session, tenant, player, league.dues)
    session.commit()
    mirror_links(stripe_stand_in, session, [monthly])
    now = int(utcnow().timestamp())
    second = stripe_stand_in.complete_checkout_session(monthly.stripe_payment_link_id, created=now - 60)
    first = stripe_stand_in.complete_checkout_session(monthly.stripe_payment_link_id, created=now - 120)

    result = sync_payments(engine, league.admin, stripe_gateway)

    assert _reload(session, monthly).checkout_session_id == first["id"]
    assert result.paid_count == 1
    assert [(f.kind, f.checkout_session_id) for f in result.flags] == [(FlagKind.DUPLICATE_PAYMENT, second["id"])]


def test_a_second_payment_on_a_one_payment_link_is_flagged(engine, session, league, stripe_stand_in, stripe_gateway):
    link = league.links[0]
    stripe_stand_in.complete_checkout_session(link.stripe_payment_link_id)
    # A second checkout that was already open when the first one used up the link.
    late = stripe_stand_in.complete_checkout_session(link.stripe_payment_link_id, even_if_inactive=True)

    result = sync_payments(engine, league.treasurer, stripe_gateway)

    assert result.paid_count == 1
    [flag] = result.flags
    assert (flag.kind, flag.checkout_session_id) == (FlagKind.DUPLICATE_PAYMENT, late["id"])
    assert "accepts one payment only" in flag.message


def test_a_paid_link_for_a_pending_order_marks_the_order_paid(engine, session, league, stripe_stand_in, stripe_gateway):
    tenant = league.tenant
    player = make_player(session, tenant, make_parent(session, tenant))
    uniform = make_product(session, tenant, "Uniform", required=False, amount_cents=4500)
    order = make_order(session, tenant, player, uniform)
    link = make_link(session, tenant, player, uniform, order=order)
    session.commit()
    mirror_links(stripe_stand_in, session, [link])
    stripe_stand_in.complete_checkout_session(link.stripe_payment_link_id)

    sync_payments(engine, league.treasurer, stripe_gateway)

    session.expire_all()
    assert order.status is OrderStatus.PAID


# -- withdrawn players ---------------------------------------------------------------------------


def test_links_of_withdrawn_players_are_deactivated_in_stripe_and_here(engine, session, league, stripe_stand_in, stripe_gateway):
    link = league.links[0]
    link.player.status = PlayerStatus.WITHDRAWN
    session.commit()

    result = sync_payments(engine, league.treasurer, stripe_gateway)

    stored = _reload(session, link)
    assert stored.status is LinkStatus.DEACTIVATED and stored.deactivated_at is not None
    assert stripe_stand_in.payment_links[link.stripe_payment_link_id]["active"] is False
    assert [d.link_id for d in result.deactivated] == [link.id]
    assert stripe_stand_in.payment_links[league.links[1].stripe_payment_link_id]["active"] is True
    assert sync_payments(engine, league.treasurer, stripe_gateway).deactivated == []


def test_a_withdrawn_player_who_paid_is_recorded_paid_not_deactivated(engine, session, league, stripe_stand_in, stripe_gateway):
    link = league.links[0]
    stripe_stand_in.complete_checkout_session(link.stripe_payment_link_id)
    link.player.status = PlayerStatus.WITHDRAWN
    session.commit()

    result = sync_payments(engine, league.treasurer, stripe_gateway)

    assert _reload(session, link).status is LinkStatus.PAID
    assert result.deactivated == [] and stripe_stand_in.count("POST", "/v1/payment_links/") == 0


# -- idempotent, resumable -----------------------------------------------------------------------


def _state(session, tenant: Tenant) -> list[tuple]:  # type: ignore[type-arg]
    session.expire_all()
    return [
        (link.id, link.status, link.paid_at, link.paid_amount_cents, link.checkout_session_id, link.processing,
         link.amount_mismatch, link.deactivated_at)
        for link in session.scalars(select(PaymentLink).where(PaymentLink.tenant_id == tenant.id).order_by(PaymentLink.id))
    ]


def test_rerunning_a_sync_changes_nothing_and_does_not_repeat_its_flags(engine, session, league, stripe_stand_in, stripe_gateway):
    stripe_stand_in.complete_checkout_session(league.links[0].stripe_payment_link_id, amount_total=9000)
    stripe_stand_in.complete_checkout_session(league.links[1].stripe_payment_link_id)
    stripe_stand_in.complete_checkout_session(league.links[1].stripe_payment_link_id, even_if_inactive=True)
    first = sync_payments(engine, league.treasurer, stripe_gateway)
    after_first = _state(session, league.tenant)

    again = sync_payments(engine, league.treasurer, stripe_gateway)

    assert _state(session, league.tenant) == after_first
    assert (first.paid_count, again.paid_count) == (2, 0)
    assert len(first.new_flags) == 2
    assert again.flags == [] and again.events_read == 0  # each event is applied once


def test_a_stripe_failure_half_way_keeps_what_was_recorded_and_a_rerun_finishes(
    engine, session, stripe_stand_in, stripe_gateway
):
    league = _league(session, stripe_stand_in, players=6)
    for link in league.links:
        stripe_stand_in.complete_checkout_session(link.stripe_payment_link_id)
    failing = league.links[3].stripe_payment_link_id
    stripe_stand_in.inject(
        "server_error", times=None, path="/v1/checkout/sessions",
        when=lambda request: request.params.get("payment_link") == failing,
    )

    broken = sync_payments(engine, league.treasurer, stripe_gateway, full=True, concurrency=1)

    assert not broken.ok and len(broken.errors) == 1 and "HTTP 500" in broken.errors[0]
    assert broken.paid_count == 5
    assert session.get(Tenant, league.tenant.id).payments_synced_at is None
    with pytest.raises(SyncIncomplete, match="run it again"):
        broken.raise_for_errors()

    stripe_stand_in.clear_faults()
    rerun = sync_payments(engine, league.treasurer, stripe_gateway)

    assert rerun.ok and [p.link_id for p in rerun.paid] == [league.links[3].id]
    state = _state(session, league.tenant)
    assert all(status is LinkStatus.PAID for _, status, *_ in state)
    assert len({row[4] for row in state}) == 6  # six payments, each recorded once
    assert session.get(Tenant, league.tenant.id).payments_synced_at == rerun.started_at


def test_a_listing_that_fails_on_a_later_page_keeps_the_first_pages_and_the_rerun_adds_the_rest(
    engine, session, stripe_stand_in, stripe_gateway
):
    league = _league(session, stripe_stand_in, players=130)
    for link in league.links:
        stripe_stand_in.complete_checkout_session(link.stripe_payment_link_id)
    stripe_stand_in.inject(
        "error", status=400, message="Stripe is unwell", times=1, path="/v1/events",
        when=lambda request: "starting_after" in request.params,
    )

    broken = sync_payments(engine, league.treasurer, stripe_gateway)

    assert not broken.ok and "Stripe is unwell" in broken.errors[0]
    assert broken.paid_count == 100
    rerun = sync_payments(engine, league.treasurer, stripe_gateway)
    assert rerun.ok and rerun.paid_count == 30
    assert {p.link_id for p in broken.paid} | {p.link_id for p in rerun.paid} == {link.id for link in league.links}


def test_a_deactivation_that_fails_is_reported_and_retried_by_the_next_sync(engine, session, league, stripe_stand_in, stripe_gateway):
    for link in league.links[:2]:
        link.player.status = PlayerStatus.WITHDRAWN
    session.commit()
    stripe_stand_in.inject("error", status=400, message="No way", times=1, method="POST", path="/v1/payment_links/")

    broken = sync_payments(engine, league.treasurer, stripe_gateway, concurrency=1)

    assert len(broken.deactivated) == 1 and len(broken.errors) == 1 and "No way" in broken.errors[0]
    rerun = sync_payments(engine, league.treasurer, stripe_gateway)
    assert rerun.ok and len(rerun.deactivated) == 1
    assert {d.link_id for d in broken.deactivated + rerun.deactivated} == {league.links[0].id, league.links[1].id}


@pytest.mark.postgres_only
def test_two_syncs_at_once_record_each_payment_once(engine, session, stripe_stand_in, stripe_gateway):
    league = _league(session, stripe_stand_in, players=40)
    for link in league.links:
        stripe_stand_in.complete_checkout_session(link.stripe_payment_link_id)
    results = []
    barrier = threading.Barrier(2)

    def run() -> None:
        barrier.wait()
        results.append(sync_payments(engine, league.treasurer, stripe_gateway))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert all(result.ok for result in results)
    assert sum(result.paid_count for result in results) == 40
    assert all(status is LinkStatus.PAID for _, status, *_ in _state(session, league.tenant))


# -- what is asked of Stripe -------------------------------------------------------------------


def test_more_than_a_hundred_payments_are_read_page_by_page(engine, session, stripe_stand_in, stripe_gateway):
    league = _league(session, stripe_stand_in, players=150)
    for link in league.links:
        stripe_stand_in.complete_checkout_session(link.stripe_payment_link_id)

    result = sync_payments(engine, league.treasurer, stripe_gateway)

    assert result.paid_count == 150 and result.still_owed_count == 0
    assert len(_event_lists(stripe_stand_in)) == 2  # two pages of events, not one call per link
    assert stripe_stand_in.request_count == 2


def test_an_incremental_sync_reads_the_events_since_its_cursor_minus_the_overlap(
    engine, session, league, stripe_stand_in, stripe_gateway
):
    last_sync = utcnow() - timedelta(hours=2)
    session.add(StripeEventCursor(tenant_id=league.tenant.id, read_until=last_sync))
    session.commit()
    too_old = last_sync - EVENT_OVERLAP - timedelta(minutes=5)
    in_overlap = last_sync - timedelta(minutes=5)  # stamped before the last pass, listed after it
    stripe_stand_in.events_created_at = lambda: int(too_old.timestamp())
    stripe_stand_in.complete_checkout_session(league.links[0].stripe_payment_link_id)
    stripe_stand_in.events_created_at = lambda: int(in_overlap.timestamp())
    stripe_stand_in.complete_checkout_session(league.links[1].stripe_payment_link_id)

    result = sync_payments(engine, league.treasurer, stripe_gateway)

    [listing] = _event_lists(stripe_stand_in)
    assert int(listing.params["created"]["gte"]) == int((last_sync - EVENT_OVERLAP).timestamp())
    assert set(as_list(listing.params["types"])) == set(EVENT_TYPES)
    assert [p.link_id for p in result.paid] == [league.links[1].id]
    assert _reload(session, league.links[0]).status is LinkStatus.ACTIVE
    assert result.events_read == 1 and _session_lists(stripe_stand_in) == []


def test_a_full_check_asks_about_each_active_link_and_finds_old_payments(engine, session, league, stripe_stand_in, stripe_gateway):
    session.get(Tenant, league.tenant.id).payments_synced_at = utcnow()
    session.commit()
    session.add(StripeEventCursor(tenant_id=league.tenant.id, read_until=utcnow()))
    session.commit()
    long_ago = int((utcnow() - timedelta(days=40)).timestamp())
    stripe_stand_in.events_created_at = lambda: long_ago  # Stripe no longer lists events this old
    stripe_stand_in.complete_checkout_session(league.links[0].stripe_payment_link_id, created=long_ago)

    assert sync_payments(engine, league.treasurer, stripe_gateway).paid_count == 0
    result = sync_payments(engine, league.treasurer, stripe_gateway, full=True)

    asked = {r.params["payment_link"] for r in _session_lists(stripe_stand_in) if "payment_link" in r.params}
    assert asked == {link.stripe_payment_link_id for link in league.links}
    assert result.links_checked == 3 and [p.link_id for p in result.paid] == [league.links[0].id]


def test_the_sync_mark_advances_only_after_a_complete_pass(engine, session, league, stripe_stand_in, stripe_gateway):
    stripe_stand_in.inject("error", status=400, message="down", times=1, path="/v1/events")
    assert sync_payments(engine, league.treasurer, stripe_gateway).errors
    assert session.get(Tenant, league.tenant.id).payments_synced_at is None
    assert session.get(StripeEventCursor, league.tenant.id) is None

    result = sync_payments(engine, league.treasurer, stripe_gateway)

    session.expire_all()
    assert result.ok and session.get(Tenant, league.tenant.id).payments_synced_at == result.started_at
    assert session.get_one(StripeEventCursor, league.tenant.id).read_until == result.started_at


# -- whose payments ------------------------------------------------------------------------------


def test_payments_for_links_we_do_not_know_are_flagged_only_when_they_name_our_league(
    engine, session, league, stripe_stand_in, stripe_gateway
):
    tenant = league.tenant
    stripe_stand_in.add_payment_link("plink_lost", amount_cents=15000,
                                     metadata={"tenant_id": str(tenant.id), "league_key": tenant.league_key})
    stripe_stand_in.add_payment_link("plink_other_shop", amount_cents=999, metadata={})
    # Another database's league with the same id on the same Stripe account (a trial, a copy).
    stripe_stand_in.add_payment_link("plink_other_install", amount_cents=15000,
                                     metadata={"tenant_id": str(tenant.id), "league_key": "0123456789abcdef"})
    lost = stripe_stand_in.complete_checkout_session("plink_lost")
    stripe_stand_in.complete_checkout_session("plink_other_shop")
    stripe_stand_in.complete_checkout_session("plink_other_install")

    result = sync_payments(engine, league.treasurer, stripe_gateway)

    assert [(f.kind, f.checkout_session_id, f.link_id) for f in result.flags] == [
        (FlagKind.UNKNOWN_LINK, lost["id"], None)
    ]
    assert result.sessions_not_ours == 2 and result.paid_count == 0


def test_another_leagues_payments_are_left_for_that_league(engine, session, league, stripe_stand_in, stripe_gateway):
    other = _league(session, stripe_stand_in, players=1)
    stripe_stand_in.complete_checkout_session(other.links[0].stripe_payment_link_id)

    result = sync_payments(engine, league.treasurer, stripe_gateway)

    assert result.paid_count == 0 and result.flags == [] and result.sessions_not_ours == 1
    assert _reload(session, other.links[0]).status is LinkStatus.ACTIVE


# -- who may, and the record of it -----------------------------------------------------------------


def test_a_coach_may_not_sync_payments(engine, session, league, stripe_stand_in, stripe_gateway):
    with pytest.raises(PermissionDenied):
        sync_payments(engine, acting(league.tenant, Role.COACH), stripe_gateway)
    assert stripe_stand_in.request_count == 0


def test_every_sync_leaves_an_audit_row_with_its_summary(engine, session, league, stripe_stand_in, stripe_gateway):
    stripe_stand_in.complete_checkout_session(league.links[0].stripe_payment_link_id)

    result = sync_payments(engine, league.treasurer, stripe_gateway)

    entries = session.scalars(select(AuditEntry).where(AuditEntry.tenant_id == league.tenant.id)
                              .order_by(AuditEntry.id)).all()
    # The ledger's payment entry first (every entry is in the audit log), then the sync's own row.
    assert [e.action for e in entries] == ["ledger.payment", "sync"]
    entry = entries[-1]
    assert (entry.action, entry.actor, entry.role) == ("sync", "treasurer@example.org", "treasurer")
    assert entry.summary == result.summary() and "1 paid ($150.00)" in entry.summary
    assert entry.details["paid"] == 1 and entry.details["complete"] is True


def test_a_league_in_another_currency_is_summed_up_in_it(engine, session, stripe_gateway):
    tenant = make_tenant(session, currency="cad")
    session.commit()

    result = sync_payments(engine, acting(tenant, Role.TREASURER), stripe_gateway)

    assert result.currency == "cad" and "0 paid (CA$0.00), 0 still owed (CA$0.00)" in result.summary()


def test_progress_is_reported_while_recording(engine, session, stripe_stand_in, stripe_gateway):
    league = _league(session, stripe_stand_in, players=4)
    for link in league.links:
        stripe_stand_in.complete_checkout_session(link.stripe_payment_link_id)
    seen = []

    sync_payments(engine, league.treasurer, stripe_gateway, progress=seen.append)

    recording = [p for p in seen if p.phase == "Recording payments"]
    assert [p.done for p in recording] == [1, 2, 3, 4] and recording[-1].fraction == 1.0


# -- the send to everyone syncs first ----------------------------------------------------------


def test_a_send_to_everyone_syncs_first_so_a_family_who_paid_is_not_emailed(session, engine, league, stripe_stand_in):
    from core.composition import make_payment_gateway
    from core.email.campaigns import build_manifest
    from core.email.presend import sync_payments_first
    from core.email.registry import OUTSTANDING_BALANCE
    from core.settings import Secret, Settings

    paid_parent = league.links[0].player.parent_id
    stripe_stand_in.complete_checkout_session(league.links[0].stripe_payment_link_id)
    settings = Settings(stripe_api_key=Secret("sk_test_stand_in"), stripe_api_base=stripe_stand_in.api_base)

    session.rollback()
    outcome = sync_payments_first(engine, league.admin, gateway=make_payment_gateway(settings))

    assert outcome.ran and "Payment sync (new payments since the last check): 1 paid ($150.00)" in outcome.note
    manifest = build_manifest(session, league.admin, OUTSTANDING_BALANCE)
    assert paid_parent not in {entry.parent_id for entry in manifest.recipients}
    assert len(manifest.recipients) == 2


@pytest.mark.parametrize("metadata, league_key, ours", [
    ({"tenant_id": "1", "league_key": "a1b2c3d4e5f60718"}, "a1b2c3d4e5f60718", True),
    ({"tenant_id": "1", "league_key": "ffffffffffffffff"}, "a1b2c3d4e5f60718", False),  # another database's league 1
    ({"tenant_id": "1"}, "a1b2c3d4e5f60718", False),  # no key: only a league still on t<id> may claim it
    ({"tenant_id": "1"}, "t1", True),  # minted before league keys existed
    ({"tenant_id": "2"}, "t1", False),
    ({}, "t1", False),
])
def test_whose_metadata_is_decided_by_the_league_key(metadata, league_key, ours):
    from core.payments.gateway import names_league

    assert names_league(metadata, tenant_id=1, league_key=league_key) is ours
