"""The Create payment links page: dry run first, then a confirmed commit against the Stripe stand-in."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from core.access.leagues import find_tenant
from core.access.permissions import Role
from core.backfill import plan_backfill
from core.models import FamilyLink, LinkStatus, PaymentLink, Player, PlayerStatus, Product
from core.money import format_cents
from core.reporting.balances import outstanding_balances
from core.roster.importing import import_roster
from core.words import plural
from dashboard.navigation import pages_for
from dashboard.text import plain
from tests.factories import acting
from tests.stripe_links import mirror_league


@pytest.fixture
def no_stripe(monkeypatch):
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    monkeypatch.delenv("STRIPE_API_BASE", raising=False)


@pytest.fixture
def stripe_configured(monkeypatch, stripe_stand_in):
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_dashboard")
    monkeypatch.setenv("STRIPE_API_BASE", stripe_stand_in.api_base)
    monkeypatch.setenv("PAYMENT_SUCCESS_URL", "https://westside.example/thanks")
    return stripe_stand_in


def _active_links(session) -> int:
    session.expire_all()
    return session.execute(
        select(func.count()).select_from(PaymentLink).where(PaymentLink.status == LinkStatus.ACTIVE)
    ).scalar_one()


def _plan(session):
    return plan_backfill(session, acting(find_tenant(session, "demo")))


def _table_with(at, column: str):
    """The first table on the page that has ``column`` (AppTest does not expose dataframe keys)."""
    return next(frame.value for frame in at.dataframe if column in frame.value.columns)


def _plan_table(at):
    return _table_with(at, "Link exists?")


def _open(open_app):
    at = open_app("admin", page="backfill")
    assert not at.exception
    return at


def test_the_dry_run_is_on_by_default_and_shows_the_plan(demo_league, open_app, session, no_stripe):
    before = _active_links(session)
    plan = _plan(session)
    at = _open(open_app)
    assert at.toggle(key="backfill_dry_run").value is True
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Payment links to create"] == str(plan.totals.links_to_mint) and plan.totals.links_to_mint > 0
    table = _plan_table(at)
    assert len(table) == len(plan.items)
    assert list(table.columns)[:6] == ["Player", "Parent", "Product", "Amount", "Price", "Link exists?"]
    assert not [b for b in at.button if b.key == "backfill_commit"]
    assert _active_links(session) == before
    # and the families' balance links it would create or replace, as the commit does
    totals = plan.totals
    assert totals.family_links_to_create + totals.family_links_to_replace > 0
    words = (f"{plural(totals.family_links_to_create, 'family balance link')} to create and "
             f"{totals.family_links_to_replace:,} to replace at the new balance")
    assert any(words in caption.value for caption in at.caption)


def test_the_table_can_show_only_what_would_be_minted(demo_league, open_app, session, no_stripe):
    plan = _plan(session)
    at = _open(open_app)
    at.checkbox(key="backfill_only_to_mint").check().run()
    assert not at.exception
    assert len(_plan_table(at)) == plan.totals.links_to_mint


def test_without_a_stripe_key_commit_explains_what_is_missing(demo_league, open_app, session, no_stripe):
    at = _open(open_app)
    at.toggle(key="backfill_dry_run").set_value(False).run()
    assert not at.exception
    assert any("STRIPE_API_KEY is not set" in w.value for w in at.warning)
    assert not [b for b in at.button if b.key == "backfill_commit"]
    assert len(_plan_table(at)) > 0  # the plan is still shown


def test_commit_asks_for_confirmation_then_mints_the_plan(demo_league, open_app, session, stripe_configured):
    to_mint = _plan(session).totals.links_to_mint
    before = _active_links(session)
    at = _open(open_app)
    at.toggle(key="backfill_dry_run").set_value(False).run()
    assert at.button(key="backfill_commit").disabled
    at.checkbox(key="backfill_confirm").check().run()
    assert not at.button(key="backfill_commit").disabled
    assert stripe_configured.request_count == 0

    at.button(key="backfill_commit").click().run()

    assert not at.exception
    assert any(f"{to_mint} payment links created" in s.value for s in at.success)
    assert _active_links(session) == before + to_mint
    # ... and each family that owes its "Pay the balance" link.
    # (The demo league's own made-up balance links stay where a family's balance did not change.)
    minted = set(session.scalars(select(FamilyLink.stripe_payment_link_id)
                                 .where(FamilyLink.status == LinkStatus.ACTIVE))) & set(stripe_configured.payment_links)
    assert minted and len(stripe_configured.payment_links) == to_mint + len(minted)
    assert {m.label: m.value for m in at.metric}["Payment links to create"] == "0"  # the plan shown is the new one
    assert not [c for c in at.checkbox if c.key == "backfill_confirm"]  # nothing left armed to mint again


def test_a_live_key_without_a_thank_you_page_cannot_mint(demo_league, open_app, session, stripe_configured,
                                                        monkeypatch):
    monkeypatch.setenv("STRIPE_API_KEY", "sk_live_dashboard")
    monkeypatch.delenv("PAYMENT_SUCCESS_URL")
    at = _open(open_app)
    assert any("No thank-you page is set" in e.value for e in at.error)  # said in the dry run already
    at.toggle(key="backfill_dry_run").set_value(False).run()
    assert not at.exception
    assert any("No thank-you page is set" in e.value and "before creating live payment links" in e.value
               for e in at.error)
    assert not [b for b in at.button if b.key == "backfill_commit"]
    assert stripe_configured.request_count == 0


def test_failures_are_shown_with_their_reason(demo_league, open_app, session, stripe_configured):
    stripe_configured.inject("error", times=None, path="/v1/payment_links", message="Your account is restricted",
                             when=lambda r: "order_id" in r.params["metadata"])
    failing = [i for i in _plan(session).to_mint if i.order_id is not None]
    assert failing
    at = _open(open_app)
    at.toggle(key="backfill_dry_run").set_value(False).run()
    at.checkbox(key="backfill_confirm").check().run()
    at.button(key="backfill_commit").click().run()

    assert not at.exception
    assert any(f"{len(failing)} failed" in e.value for e in at.error)
    failures = _table_with(at, "Reason")
    assert len(failures) == len(failing)
    assert all("Your account is restricted" in reason for reason in failures["Reason"])


def test_a_price_change_is_shown_old_to_new_and_replaced_on_commit(demo_league, open_app, session,
                                                                    stripe_configured):
    tenant = find_tenant(session, "demo")
    mirror_league(stripe_configured, session, tenant.id)  # the demo's links exist at Stripe
    products = b"product,kind,required,amount\nRegistration,one_time,yes,175.00\n"
    assert not import_roster(session, acting(tenant), products, commit=True).errors
    session.commit()
    replacing = _plan(session).totals.links_to_replace
    assert replacing > 0
    at = _open(open_app)
    assert {m.label: m.value for m in at.metric}["Price changes"] == str(replacing)
    table = _plan_table(at)
    replaced_rows = table[table["To do"] == "new price: replace link"]
    assert len(replaced_rows) == replacing and set(replaced_rows["Amount"]) == {"$150.00 → $175.00"}

    at.toggle(key="backfill_dry_run").set_value(False).run()
    totals = _plan(session).totals
    expected = (f"replace {replacing} at a new price ({format_cents(totals.replaced_from_cents)} → "
                f"{format_cents(totals.replaced_to_cents)}")
    assert plain(expected) in at.checkbox(key="backfill_confirm").label  # "$" escaped: never read as maths
    at.checkbox(key="backfill_confirm").check().run()
    at.button(key="backfill_commit").click().run()

    assert not at.exception
    assert any(f"{replacing} replaced at a new price" in s.value for s in at.success)
    session.expire_all()
    registration = session.scalars(select(Product).where(Product.tenant_id == tenant.id,
                                                         Product.name == "Registration")).one()
    active = session.execute(select(PaymentLink.url, PaymentLink.amount_cents).join(
        Player, Player.id == PaymentLink.player_id).where(
        PaymentLink.product_id == registration.id, PaymentLink.status == LinkStatus.ACTIVE,
        Player.status == PlayerStatus.SIGNED)).all()
    # (withdrawn players are not billed: payment sync retires theirs)
    assert active and 15000 not in {amount for _, amount in active} and 17500 in {amount for _, amount in active}
    # Each link pays exactly what is open on its charge: $175.00, or what is left of a partly paid one.
    pay_now = {item.pay_url: item.amount_cents for balance in outstanding_balances(session, acting(tenant))
               for item in balance.items if item.pay_url}
    assert all(pay_now.get(url) == amount for url, amount in active)
    assert {m.label: m.value for m in at.metric}["Price changes"] == "0"


def test_old_links_an_earlier_run_left_on_in_stripe_are_shown_and_switched_off(demo_league, open_app, session,
                                                                              stripe_configured):
    tenant = find_tenant(session, "demo")
    mirror_league(stripe_configured, session, tenant.id)
    assert not import_roster(session, acting(tenant), b"product,kind,required,amount\nRegistration,one_time,yes,175.00\n",
                             commit=True).errors
    session.commit()
    stripe_configured.inject("error", times=None, method="POST", path="/v1/payment_links/",
                             message="Stripe is having a moment", when=lambda r: r.params.get("active") == "false")
    at = _open(open_app)
    at.toggle(key="backfill_dry_run").set_value(False).run()
    at.checkbox(key="backfill_confirm").check().run()
    at.button(key="backfill_commit").click().run()
    left_on = _plan(session).pending_switch_offs
    assert left_on and any("Stripe could not switch them off" in e.value for e in at.error)

    stripe_configured.clear_faults()
    at = _open(open_app)  # a later visit: the plan says what is still on, and minting switches it off
    assert any(f"{len(left_on)} old links are deactivated here but still active in Stripe" in w.value
               for w in at.warning)
    assert set(_table_with(at, "Old Stripe link")["Old Stripe link"]) == {o.stripe_payment_link_id for o in left_on}
    at.toggle(key="backfill_dry_run").set_value(False).run()
    assert f"Switch off in Stripe the {len(left_on)} old links" in at.checkbox(key="backfill_confirm").label
    at.checkbox(key="backfill_confirm").check().run()
    at.button(key="backfill_commit").click().run()

    assert not at.exception
    assert any(f"{len(left_on)} old links of an earlier run switched off in Stripe" in s.value for s in at.success)
    assert [stripe_configured.payment_links[o.stripe_payment_link_id]["active"] for o in left_on] == [False] * len(left_on)
    assert not any("still active in Stripe" in w.value for w in at.warning)
    assert not _plan(session).pending_switch_offs


def test_only_admins_are_offered_the_page(session, demo_league):
    tenant = find_tenant(session, "demo")
    for role, offered in ((Role.ADMIN, True), (Role.TREASURER, False), (Role.COACH, False)):
        assert any(p.url_path == "backfill" for p in pages_for(acting(tenant, role))) is offered
