"""The Sync from Stripe page, driven with AppTest against the Stripe stand-in."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from core.access.leagues import find_tenant
from core.access.permissions import ActingUser, Role
from core.models import FamilyLink, LinkStatus, PaymentLink, Player, PlayerStatus
from core.money import format_cents
from core.reporting.balances import outstanding_balances, summarise
from dashboard.navigation import pages_for
from tests.factories import acting
from tests.stripe_links import mirror_league


@pytest.fixture
def stripe_configured(demo_league, session, stripe_stand_in, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_stand_in")
    monkeypatch.setenv("STRIPE_API_BASE", stripe_stand_in.api_base)
    mirror_league(stripe_stand_in, session, find_tenant(session, "demo").id)
    return stripe_stand_in


def _owed_link(session) -> PaymentLink:  # type: ignore[no-untyped-def]
    return session.scalars(
        select(PaymentLink).join(Player, Player.id == PaymentLink.player_id)
        .where(PaymentLink.status == LinkStatus.ACTIVE, Player.status != PlayerStatus.WITHDRAWN)
        .order_by(PaymentLink.id)
    ).first()


def _metrics(at) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {metric.label: metric.value for metric in at.metric}


def _balance_link(session, parent_id: int) -> FamilyLink | None:  # type: ignore[no-untyped-def]
    session.expire_all()
    return session.scalars(select(FamilyLink).where(FamilyLink.parent_id == parent_id,
                                                    FamilyLink.status == LinkStatus.ACTIVE)).one_or_none()


def test_treasurer_syncs_and_the_paid_family_drops_out_of_the_balances(stripe_configured, open_app, session):
    link = _owed_link(session)
    parent_id = session.get_one(Player, link.player_id).parent_id
    old_balance_link = _balance_link(session, parent_id)
    assert old_balance_link is not None
    find_tenant(session, "demo").time_zone = "America/Los_Angeles"
    session.commit()
    at = open_app("treasurer")  # the Balances page first, so its cached figures must be refreshed
    before = _metrics(at)["Total outstanding"]
    stripe_configured.complete_checkout_session(link.stripe_payment_link_id)

    at.switch_page("views/payment_sync.py").run()
    assert "Last checked with Stripe: never." in [c.value for c in at.caption]
    at.button(key="sync_run").click().run()

    assert not at.exception
    metrics = _metrics(at)
    assert metrics["New payments since the last check"] == "1" and metrics["To look at"] == "0"
    expected = summarise(outstanding_balances(session, acting(find_tenant(session, "demo"), Role.TREASURER)))
    assert metrics["Still owed"] == f"{expected.line_items:,}"
    (checked,) = [s.value for s in at.success if s.value.startswith("Checked at ")]
    assert re.fullmatch(r"Checked at \d{4}-\d\d-\d\d \d\d:\d\d P[SD]T\.", checked)  # the league's clock
    assert "Last checked with Stripe: never." not in [c.value for c in at.caption]
    # The paying family's balance link is replaced at what it still owes, as the command line does.
    treasurer = acting(find_tenant(session, "demo"), Role.TREASURER)
    still_owed = sum(b.total_cents for b in outstanding_balances(session, treasurer) if b.parent_id == parent_id)
    balance_link = _balance_link(session, parent_id)
    assert balance_link is not None and balance_link.id != old_balance_link.id
    assert balance_link.amount_cents == still_owed < old_balance_link.amount_cents
    assert stripe_configured.payment_links[balance_link.stripe_payment_link_id]["active"]
    assert session.get_one(FamilyLink, old_balance_link.id).status is LinkStatus.DEACTIVATED

    at.switch_page("views/balances.py").run()
    assert not at.exception
    after = _metrics(at)["Total outstanding"]
    assert after == format_cents(expected.total_cents) != before
    assert "Last checked with Stripe for new payments: never" not in " ".join(c.value for c in at.caption)
    assert re.search(r"Last checked with Stripe for new payments: [\d-]+ \d\d:\d\d P[SD]T\.",
                     " ".join(c.value for c in at.caption))


def test_a_payment_of_a_different_amount_is_shown_flagged(stripe_configured, open_app, session):
    stripe_configured.complete_checkout_session(_owed_link(session).stripe_payment_link_id, amount_total=100)
    at = open_app("admin", page="payment_sync")

    at.button(key="sync_run").click().run()

    assert not at.exception
    assert _metrics(at)["To look at"] == "1"
    assert any("1 payment needs a look" in warning.value for warning in at.warning)
    flags = at.dataframe[0].value  # flagged payments come first
    assert list(flags["Why"]) == ["paid a different amount"] and list(flags["Reported"]) == ["new"]


def test_flagged_payments_are_shown_from_what_was_recorded_on_a_later_visit(stripe_configured, open_app, session):
    stripe_configured.complete_checkout_session(_owed_link(session).stripe_payment_link_id, amount_total=100)
    open_app("admin", page="payment_sync").button(key="sync_run").click().run()

    later = open_app("treasurer", page="payment_sync")  # another browser session: no sync run in it

    assert not later.exception
    [flags] = [frame.value for frame in later.dataframe if "Why" in frame.value.columns]
    assert list(flags["Why"]) == ["paid a different amount"]
    assert list(flags["Reported"])[0].startswith("since ")


def test_a_refund_and_a_dispute_from_stripe_are_shown_and_the_full_sweep_shows_the_differences(
    stripe_configured, open_app, session
):
    link = _owed_link(session)
    paid = stripe_configured.complete_checkout_session(link.stripe_payment_link_id)
    at = open_app("treasurer", page="payment_sync")
    at.button(key="sync_run").click().run()
    stripe_configured.refund_in_dashboard(paid["id"], 2500)
    stripe_configured.open_dispute(paid["id"])

    at.button(key="sync_run").click().run()

    assert not at.exception
    frames = [frame.value for frame in at.dataframe]
    [refunds] = [frame for frame in frames if "Stripe refund" in frame.columns]
    assert list(refunds["Refunded"]) == ["$25.00"]
    [flags] = [frame for frame in frames if "Why" in frame.columns]
    assert "disputed with the bank" in list(flags["Why"])
    assert any(subheader.value == "Payments and disputes to look at" for subheader in at.subheader)

    at.toggle(key="sync_full").set_value(True).run()
    at.button(key="sync_run").click().run()

    assert not at.exception
    # The demo league's payments were recorded here, never made in this Stripe: each is a difference.
    [differences] = [frame.value for frame in at.dataframe if "Difference" in frame.value.columns]
    assert set(differences["Difference"]) == {"paid in the ledger, no payment in Stripe"}
    assert paid["id"] not in set(differences["Checkout Session"])
    assert any("between the ledger and Stripe" in warning.value for warning in at.warning)


def test_a_stripe_failure_says_the_sync_did_not_finish(stripe_configured, open_app):
    stripe_configured.inject("error", status=401, message="Invalid API Key provided", times=None)
    at = open_app("treasurer", page="payment_sync")

    at.button(key="sync_run").click().run()

    assert not at.exception
    [error] = [e for e in at.error if "did not finish" in e.value]
    assert "Invalid API Key provided" in error.value


def test_without_stripe_the_page_says_what_is_missing(demo_league, open_app, monkeypatch):
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    at = open_app("treasurer", page="payment_sync")

    assert not at.exception
    assert any("STRIPE_API_KEY" in warning.value for warning in at.warning)
    assert "sync_run" not in [button.key for button in at.button]


def test_only_treasurer_and_admin_get_the_page():
    def titles(role: Role) -> list[str]:
        return [entry.title for entry in pages_for(ActingUser("someone", role, 1))]

    assert "Sync from Stripe" in titles(Role.TREASURER) and "Sync from Stripe" in titles(Role.ADMIN)
    assert "Sync from Stripe" not in titles(Role.COACH)
