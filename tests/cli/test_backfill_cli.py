"""``python -m core backfill``: dry run by default, --commit mints, failures exit non-zero."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cli.main import main
from core.models import LinkStatus, PaymentLink, ProductKind
from tests.factories import make_parent, make_player, make_product, make_tenant

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def league(session, database_url, monkeypatch):
    for name in ("STRIPE_API_KEY", "STRIPE_API_BASE", "PAYMENT_SUCCESS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", database_url)
    tenant = make_tenant(session, "westside", name="Westside Hoops")
    make_product(session, tenant, "Registration", amount_cents=15000)
    make_product(session, tenant, "Monthly dues", kind=ProductKind.MONTHLY, amount_cents=6000)
    ana = make_parent(session, tenant, "Ana O'Neil")
    ben = make_parent(session, tenant, "Ben Zed")
    make_player(session, tenant, ana, first_name="Amy")
    bo = make_player(session, tenant, ben, first_name="Bo")
    session.commit()
    return {"tenant": tenant, "bo": bo}


def _links(session) -> int:
    session.expire_all()
    return session.execute(select(func.count()).select_from(PaymentLink)).scalar_one()


def _use_stand_in(monkeypatch, stand_in) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_cli")
    monkeypatch.setenv("STRIPE_API_BASE", stand_in.api_base)


def test_the_dry_run_prints_the_plan_and_changes_nothing(session, league, stripe_stand_in, capsys):
    assert main(["backfill"]) == 0
    out = capsys.readouterr().out
    assert "dry run, nothing changed" in out
    for column in ("Player", "Parent", "Product", "Amount", "Price", "Link exists?"):
        assert column in out
    assert "Amy Player" in out and "Ana O'Neil" in out and "$150.00" in out and "$60.00" in out
    assert "Totals: 4 payment links to create ($420.00), 2 prices to create in Stripe" in out
    assert "in Stripe, 2 family balance links to create and 0 to replace at the new balance;" in out  # as --commit
    assert "--commit" in out
    assert _links(session) == 0 and stripe_stand_in.request_count == 0


def test_commit_without_a_stripe_key_says_what_is_missing(session, league, capsys):
    assert main(["backfill", "--commit"]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [
        "error: STRIPE_API_KEY is not set: add it to the environment or .streamlit/secrets.toml "
        "to create payment links (the dry run works without it)."
    ]
    assert _links(session) == 0


def test_commit_mints_with_progress_and_a_rerun_mints_nothing(session, league, stripe_stand_in, monkeypatch, capsys):
    _use_stand_in(monkeypatch, stripe_stand_in)
    assert main(["backfill", "--commit", "--tenant", "westside"]) == 0
    out = capsys.readouterr().out
    assert "Creating 4 payment links for Westside Hoops" in out
    assert out.count("created ") >= 4 and "[4/4]" in out
    assert "Done: 4 payment links created" in out and "; 2 family balance links created" in out
    # Four item links, and each of the two families' "Pay the balance" link.
    assert _links(session) == 4 and len(stripe_stand_in.payment_links) == 6

    assert main(["backfill", "--commit"]) == 0
    assert "Done: 0 payment links created" in capsys.readouterr().out
    assert len(stripe_stand_in.payment_links) == 6


def test_a_test_key_with_the_placeholder_thank_you_page_mints_with_a_warning(session, league, stripe_stand_in,
                                                                             monkeypatch, capsys):
    _use_stand_in(monkeypatch, stripe_stand_in)
    assert main(["backfill", "--commit"]) == 0
    err = capsys.readouterr().err
    assert "warning: No thank-you page is set" in err and "(fine for a test key)" in err
    assert _links(session) == 4


def test_a_live_key_never_mints_links_that_send_families_to_the_placeholder_page(session, league, stripe_stand_in,
                                                                                 monkeypatch, capsys):
    _use_stand_in(monkeypatch, stripe_stand_in)
    monkeypatch.setenv("STRIPE_API_KEY", "sk_live_cli")
    assert main(["backfill"]) == 0  # the dry run says it already
    assert "warning: --commit will refuse: No thank-you page is set" in capsys.readouterr().err
    assert main(["backfill", "--commit"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: No thank-you page is set (League settings, or PAYMENT_SUCCESS_URL), so after paying a family lands "
        "on the placeholder https://example.org/thank-you; set your league's thank-you page before creating live "
        "payment links."
    ]
    assert _links(session) == 0 and stripe_stand_in.request_count == 0

    monkeypatch.setenv("PAYMENT_SUCCESS_URL", "https://westside.example/thanks")
    assert main(["backfill", "--commit"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert {link["after_completion"]["redirect"]["url"] for link in stripe_stand_in.payment_links.values()} == {
        "https://westside.example/thanks"}


def test_links_send_families_to_the_leagues_own_thank_you_page(session, league, stripe_stand_in, monkeypatch,
                                                              capsys):
    _use_stand_in(monkeypatch, stripe_stand_in)
    monkeypatch.setenv("STRIPE_API_KEY", "sk_live_cli")
    league["tenant"].payment_success_url = "https://westside.example/paid"
    session.commit()
    assert main(["backfill", "--commit"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert {link["after_completion"]["redirect"]["url"] for link in stripe_stand_in.payment_links.values()} == {
        "https://westside.example/paid"}


def test_a_failed_item_is_listed_and_the_exit_status_is_not_zero(session, league, stripe_stand_in, monkeypatch,
                                                                  capsys):
    _use_stand_in(monkeypatch, stripe_stand_in)
    bo = league["bo"]
    stripe_stand_in.inject("error", times=None, path="/v1/payment_links", message="Your account is restricted",
                           when=lambda r: r.params["metadata"]["player_id"] == str(bo.id))
    assert main(["backfill", "--commit"]) == 1
    captured = capsys.readouterr()
    assert "Done: 2 payment links created" in captured.out
    assert "Bo Player — Registration: Stripe could not create a payment link: HTTP 400: Your account is restricted" \
        in captured.err
    assert captured.err.strip().splitlines()[-1].startswith("error: 2 of the links could not be created")
    assert _links(session) == 2


@pytest.mark.postgres_only
def test_two_backfill_processes_at_once_mint_each_link_once(session, league, database_url, stripe_stand_in):
    for n in range(10):
        parent = make_parent(session, league["tenant"], f"Family {n:02d}")
        make_player(session, league["tenant"], parent, first_name=f"Kid{n:02d}")
    session.commit()
    env = {**os.environ, "DATABASE_URL": database_url, "STRIPE_API_KEY": "sk_test_cli",
           "STRIPE_API_BASE": stripe_stand_in.api_base}
    stripe_stand_in.latency = 0.02
    runs = [
        subprocess.Popen([sys.executable, "-m", "core", "backfill", "--commit"], cwd=REPO, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=120) for run in runs]

    assert [run.returncode for run in runs] == [0, 0], outputs
    pairs = 2 * 12  # registration and dues for 12 signed players
    session.expire_all()
    active = session.execute(
        select(PaymentLink.player_id, PaymentLink.product_id).where(PaymentLink.status == LinkStatus.ACTIVE)
    ).all()
    assert len(active) == len(set(active)) == pairs
    families = 12  # and one "Pay the balance" link each, minted once too
    assert len(stripe_stand_in.payment_links) == pairs + families


@pytest.fixture
def price_went_up(session, league, stripe_stand_in, monkeypatch, capsys, tmp_path) -> None:
    """Everything minted at the old prices, then a products file puts Registration up to $175."""
    _use_stand_in(monkeypatch, stripe_stand_in)
    assert main(["backfill", "--commit"]) == 0
    products = tmp_path / "products.csv"
    products.write_text("product,kind,required,amount\nRegistration,one_time,yes,175.00\n")
    assert main(["import", str(products), "--commit"]) == 0
    capsys.readouterr()


def test_the_dry_run_shows_a_price_change_as_old_to_new(session, league, price_went_up, capsys):

    assert main(["backfill"]) == 0

    out = capsys.readouterr().out
    [amy] = [line for line in out.splitlines() if line.startswith("Amy Player") and "Registration" in line]
    assert "$150.00 → $175.00" in amy and "replace" in amy
    assert "0 payment links to create ($0.00), 2 links to replace at a new price ($300.00 → $350.00)" in out
    assert "--commit" in out


def test_commit_replaces_the_links_and_a_rerun_changes_nothing(session, league, price_went_up, stripe_stand_in,
                                                              capsys):

    assert main(["backfill", "--commit"]) == 0

    out = capsys.readouterr().out
    assert "Creating 0 payment links and replacing 2 at a new price for Westside Hoops" in out
    assert "replaced Amy Player — Registration $150.00 → $175.00" in out
    assert "Done: 0 payment links created, 2 replaced at a new price" in out
    session.expire_all()
    active = session.scalars(select(PaymentLink).where(PaymentLink.status == LinkStatus.ACTIVE)).all()
    assert sorted(link.amount_cents for link in active) == [6000, 6000, 17500, 17500]
    old = session.scalars(select(PaymentLink).where(PaymentLink.status == LinkStatus.DEACTIVATED)).all()
    assert len(old) == 2 and not any(stripe_stand_in.payment_links[link.stripe_payment_link_id]["active"] for link in old)

    requests = stripe_stand_in.request_count
    assert main(["backfill", "--commit"]) == 0
    assert "Done: 0 payment links created, 0 replaced" in capsys.readouterr().out
    assert stripe_stand_in.request_count == requests


def test_an_old_link_stripe_would_not_switch_off_is_listed_and_the_exit_status_is_not_zero(
        session, league, price_went_up, stripe_stand_in, capsys):
    session.expire_all()
    bo_old = session.scalars(select(PaymentLink).where(PaymentLink.player_id == league["bo"].id,
                                                       PaymentLink.amount_cents == 15000)).one()
    stripe_stand_in.inject("error", times=None, method="POST",
                           path=f"/v1/payment_links/{bo_old.stripe_payment_link_id}", message="Stripe is having a moment")

    assert main(["backfill", "--commit"]) == 1

    captured = capsys.readouterr()
    assert "2 replaced at a new price" in captured.out
    assert (f"Bo Player — Registration: the old link {bo_old.stripe_payment_link_id} is deactivated here but still "
            "active in Stripe") in captured.err
    assert captured.err.strip().splitlines()[-1] == (
        "error: 1 old link is still active in Stripe (listed above); run the backfill again to retry, or "
        "deactivate them in the Stripe dashboard")

    # The dry run afterwards still shows it, and says what --commit would do.
    assert main(["backfill"]) == 0
    dry = capsys.readouterr().out
    assert "Deactivated here but still active in Stripe" in dry and bo_old.stripe_payment_link_id in dry
    assert "1 old link still to switch off in Stripe" in dry
    assert dry.strip().splitlines()[-1] == "Run again with --commit to switch the old links off in Stripe."
