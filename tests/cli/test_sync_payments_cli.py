"""``python -m core sync-payments`` as cron runs it: quiet when all is well, loud when not."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, select

from cli.main import main
from core.db import unit_of_work
from core.models import FamilyLink, LinkStatus, PaymentLink, Player, PlayerStatus, Tenant
from tests.demo_copy import put_demo_league
from tests.factories import pay_link
from tests.stripe_links import mirror_league


@pytest.fixture
def demo_in_stripe(engine, database_url, monkeypatch, stripe_stand_in) -> Tenant:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_stand_in")
    monkeypatch.setenv("STRIPE_API_BASE", stripe_stand_in.api_base)
    put_demo_league(engine)
    with unit_of_work(engine) as session:
        tenant = session.scalars(select(Tenant)).one()
        mirror_league(stripe_stand_in, session, tenant.id)
    return tenant


def _active_link(session, *, withdrawn: bool = False) -> PaymentLink:  # type: ignore[no-untyped-def]
    status = Player.status == PlayerStatus.WITHDRAWN if withdrawn else Player.status != PlayerStatus.WITHDRAWN
    return session.scalars(
        select(PaymentLink).join(Player, Player.id == PaymentLink.player_id)
        .where(PaymentLink.status == LinkStatus.ACTIVE, status).order_by(PaymentLink.id)
    ).first()


def test_a_clean_sync_prints_nothing_and_exits_0(demo_in_stripe, stripe_stand_in, session, capsys):
    link = _active_link(session)
    withdrawn = _active_link(session, withdrawn=True)
    stripe_stand_in.complete_checkout_session(link.stripe_payment_link_id)

    assert main(["sync-payments"]) == 0

    assert capsys.readouterr() == ("", "")
    session.expire_all()
    assert session.get(PaymentLink, link.id).status is LinkStatus.PAID
    assert session.get(PaymentLink, withdrawn.id).status is LinkStatus.DEACTIVATED


def test_a_flagged_payment_is_one_line_on_stdout_the_first_time_only(demo_in_stripe, stripe_stand_in, session, capsys):
    link = _active_link(session)
    stripe_stand_in.complete_checkout_session(link.stripe_payment_link_id, amount_total=100)

    assert main(["sync-payments"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    [line] = out.splitlines()
    assert line.startswith("needs a look: paid a different amount: ") and "$1.00" in line

    assert main(["sync-payments"]) == 0
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("argv", [["-v", "sync-payments"], ["sync-payments", "--verbose"]])
def test_verbose_prints_what_was_recorded(demo_in_stripe, stripe_stand_in, session, capsys, argv):
    stripe_stand_in.complete_checkout_session(_active_link(session).stripe_payment_link_id)

    assert main(argv) == 0

    out = capsys.readouterr().out
    assert out.count("paid: ") == 1 and "deactivated: " in out
    assert out.splitlines()[-1].startswith("Payment sync (new payments since the last check): 1 paid")


def test_full_checks_each_active_link(demo_in_stripe, stripe_stand_in, session, capsys):
    # A few active links keep the test quick: the real gateway paces at Stripe's test-mode rate.
    active = session.scalars(select(PaymentLink).where(PaymentLink.status == LinkStatus.ACTIVE)).all()
    for link in active[8:]:
        pay_link(session, link)
    active = active[:8]
    # ... and a few families' balance links (the demo gives every family one).
    families = session.scalars(select(FamilyLink).order_by(FamilyLink.id)).all()
    session.execute(delete(FamilyLink).where(FamilyLink.id.in_([row.id for row in families[3:]])))
    session.commit()
    balance_links = {row.stripe_payment_link_id for row in families[:3]}

    assert main(["sync-payments", "--full", "--tenant", "demo"]) == 0

    lists = [r.params for r in stripe_stand_in.requests if r.path == "/v1/checkout/sessions"]
    asked = {params["payment_link"] for params in lists if "payment_link" in params}
    assert asked == {link.stripe_payment_link_id for link in active} | balance_links
    assert [params for params in lists if "payment_link" not in params]  # and the ledger compared with Stripe
    out, err = capsys.readouterr()
    # Recorded here as paid through Stripe, but this Stripe never took those payments: each is reported.
    *differences, last = out.splitlines()
    assert err == "" and differences
    assert all(line.startswith("difference: paid in the ledger, no payment in Stripe: ") for line in differences)
    assert last == f"Ledger and Stripe: {len(differences)} differences"


def test_a_failed_payment_and_a_refund_in_stripe_are_one_line_each(demo_in_stripe, stripe_stand_in, session, capsys):
    first, second = session.scalars(
        select(PaymentLink).join(Player, Player.id == PaymentLink.player_id)
        .where(PaymentLink.status == LinkStatus.ACTIVE, Player.status != PlayerStatus.WITHDRAWN)
        .order_by(PaymentLink.id).limit(2)
    ).all()
    pending = stripe_stand_in.complete_checkout_session(first.stripe_payment_link_id, paid=False)
    paid = stripe_stand_in.complete_checkout_session(second.stripe_payment_link_id)
    assert main(["sync-payments"]) == 0
    capsys.readouterr()
    stripe_stand_in.fail_checkout_session(pending["id"])
    refund = stripe_stand_in.refund_in_dashboard(paid["id"], 1500)

    assert main(["sync-payments"]) == 0

    out, err = capsys.readouterr()
    assert err == ""
    failed, refunded = out.splitlines()
    assert failed.startswith("failed: ") and "is owed again" in failed and pending["id"] in failed
    assert refunded.startswith("refunded in Stripe: $15.00 to ") and refund["id"] in refunded


def test_a_stripe_failure_is_one_line_on_stderr_and_exit_1(demo_in_stripe, stripe_stand_in, session, capsys):
    stripe_stand_in.inject("error", status=401, message="Invalid API Key provided", times=None)

    assert main(["sync-payments"]) == 1

    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("error: payment sync incomplete: ") and "Invalid API Key provided" in err
    assert session.get(Tenant, demo_in_stripe.id).payments_synced_at is None


def test_without_a_stripe_key_it_says_what_is_missing(database_url, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)

    assert main(["sync-payments"]) == 1

    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip() == (
        "error: STRIPE_API_KEY is not set: add it to the environment or .streamlit/secrets.toml to sync payments."
    )


def test_an_unknown_league_is_one_clear_line(demo_in_stripe, capsys):
    assert main(["sync-payments", "--tenant", "nope"]) == 1
    assert capsys.readouterr().err.strip() == "error: No league called 'nope' (leagues: demo)."
