"""The reminder leads with the family's "Pay the balance" button; items keep theirs while untouched."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.access.league_settings import LeagueSettings, update_league_settings
from core.backfill import commit_backfill, plan_backfill
from core.db import session_factory
from core.email.backends.file import FileBackend
from core.email.campaigns import preview_email
from core.email.registry import OUTSTANDING_BALANCE
from core.email.sending import prepare_send_to_everyone, send_prepared, send_test
from core.ledger.entries import record_payment
from core.ledger.workflows import apply_ledger_change
from core.models import FamilyLink, LinkStatus, PaymentMethod
from core.payments.family_links import FamilyLinkMinting
from tests.core.email.conftest import EMAIL_FROM, read_outbox
from tests.factories import acting, make_parent, make_player, make_product, make_tenant

SUCCESS_URL = "https://riverside.example/thanks"


@pytest.fixture
def league(session, stripe_gateway):
    tenant = make_tenant(session, "riverside", name="Riverside Basketball")
    make_product(session, tenant, "Registration", amount_cents=15000)
    make_product(session, tenant, "Uniform fee", amount_cents=4000)
    garcia = make_parent(session, tenant, "Elena García", "elena@example.org")
    make_player(session, tenant, garcia, first_name="Lucía", last_name="García")
    make_player(session, tenant, garcia, first_name="Mateo", last_name="García")
    okafor = make_parent(session, tenant, "Chidi Okafor", "chidi@example.org")
    make_player(session, tenant, okafor, first_name="Ada", last_name="Okafor")
    session.commit()
    admin = acting(tenant)
    assert commit_backfill(session.get_bind(), admin, stripe_gateway, plan_backfill(session, admin),
                           success_url=SUCCESS_URL).ok  # item links only: no balance link yet
    return {"tenant": tenant, "admin": admin, "garcia": garcia, "okafor": okafor}


def balance_link(session, parent) -> FamilyLink | None:
    session.expire_all()
    return session.scalars(select(FamilyLink).where(FamilyLink.parent_id == parent.id,
                                                    FamilyLink.status == LinkStatus.ACTIVE)).one_or_none()


def test_the_preview_mints_nothing_and_the_test_send_mints_the_link_it_leads_with(
        engine, session, league, stripe_gateway, stripe_stand_in, tmp_path):
    links_before = len(stripe_stand_in.payment_links)
    preview = preview_email(session, league["admin"], parent_id=league["garcia"].id, email_type=OUTSTANDING_BALANCE,
                            email_from=EMAIL_FROM)
    assert "Pay $380.00" not in preview.rendered.html and "Each item has its own" in preview.rendered.text
    assert len(stripe_stand_in.payment_links) == links_before

    outcome = send_test(session_factory(engine), league["admin"], email_type=OUTSTANDING_BALANCE,
                        test_address="me@example.org", parent_id=league["garcia"].id,
                        backend=FileBackend(tmp_path), email_from=EMAIL_FROM,
                        family_links=FamilyLinkMinting(stripe_gateway, SUCCESS_URL))
    assert outcome.succeeded and outcome.family_links.minted == 1
    link = balance_link(session, league["garcia"])
    assert link.amount_cents == 38000 and balance_link(session, league["okafor"]) is None  # only the family shown
    [message] = read_outbox(tmp_path)
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    assert f'href="{link.url}"' in html and ">Pay $380.00</a>" in html
    assert html.index("Pay $380.00") < html.index("<table")  # above the itemised table
    assert html.count(">Pay now</a>") == 4  # untouched items keep their own links
    assert f"Pay $380.00: {link.url}" in text

    # The preview now shows the family's link, as it is.
    preview = preview_email(session, league["admin"], parent_id=league["garcia"].id, email_type=OUTSTANDING_BALANCE,
                            email_from=EMAIL_FROM)
    assert link.url in preview.rendered.html and f"Pay $380.00: {link.url}" in preview.rendered.text


def test_a_partly_paid_item_loses_its_link_and_balance_only_leaves_just_the_balance_button(
        engine, session, league, stripe_gateway, tmp_path):
    sessions = session_factory(engine)
    apply_ledger_change(sessions, league["admin"], lambda s: record_payment(
        s, league["admin"], parent_id=league["garcia"].id, amount_cents=5000, method=PaymentMethod.CASH),
        gateway=stripe_gateway)
    send_everyone = prepare_send_to_everyone(sessions, league["admin"], OUTSTANDING_BALANCE, cooldown_days=3,
                                             gateway=stripe_gateway, backend_problem=lambda: None)
    outcome = send_prepared(sessions, league["admin"], send_everyone, reviewed=False, backend=FileBackend(tmp_path),
                            email_from=EMAIL_FROM, gateway=stripe_gateway,
                            family_links=FamilyLinkMinting(stripe_gateway, SUCCESS_URL))
    assert outcome.succeeded and outcome.family_links.minted == 2
    assert all("Pay $" in m.get_body(("plain",)).get_content() for m in read_outbox(tmp_path))  # every family's
    garcia = balance_link(session, league["garcia"])
    assert garcia.amount_cents == 33000
    preview = preview_email(session, league["admin"], parent_id=league["garcia"].id, email_type=OUTSTANDING_BALANCE,
                            email_from=EMAIL_FROM)
    assert ">Pay $330.00</a>" in preview.rendered.html
    assert preview.rendered.html.count(">Pay now</a>") == 3  # the partly paid registration has none

    update_league_settings(session, league["admin"], LeagueSettings(email_pay_links="balance_only"))
    session.commit()
    preview = preview_email(session, league["admin"], parent_id=league["garcia"].id, email_type=OUTSTANDING_BALANCE,
                            email_from=EMAIL_FROM)
    assert ">Pay $330.00</a>" in preview.rendered.html and ">Pay now</a>" not in preview.rendered.html
    assert "Pay now:" not in preview.rendered.text and f"Pay $330.00: {garcia.url}" in preview.rendered.text
