"""The treasurer's commands: record-payment, adjust, reverse, statement."""

from __future__ import annotations

import csv
import io
import re

import pytest
from sqlalchemy import func, select

from cli.main import main
from core.access.leagues import find_tenant
from core.db import unit_of_work
from core.ledger.statement import family_statement
from core.models import Charge, LedgerEntry, LinkStatus, Parent, PaymentLink, Player, Tenant
from core.reporting.balances import outstanding_balances
from tests.demo_copy import put_demo_league
from tests.factories import acting
from tests.stripe_links import mirror_league


@pytest.fixture
def demo(engine, database_url, monkeypatch) -> Tenant:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    put_demo_league(engine)
    with unit_of_work(engine) as session:
        return session.scalars(select(Tenant)).one()


def a_family_owing(session, *, registration_link: bool = False) -> tuple[Parent, int]:
    """A family of the demo that owes something (and has an active registration link, if asked)."""
    tenant = find_tenant(session, "demo")
    for balance in outstanding_balances(session, acting(tenant)):
        if registration_link and not any(i.pay_url and i.product_name == "Registration" for i in balance.items):
            continue
        parent = session.get(Parent, balance.parent_id)
        if parent.email:
            return parent, balance.total_cents
    raise AssertionError("nobody owes anything")


def entries(session) -> int:
    return session.scalar(select(func.count()).select_from(LedgerEntry))


def balance_of(session, parent) -> int:
    session.expire_all()
    return family_statement(session, acting(find_tenant(session, "demo")), parent.id).balance_cents


def test_record_payment_prints_what_it_did_its_entry_and_the_new_balance(demo, session, capsys):
    parent, owed = a_family_owing(session)
    assert main(["record-payment", parent.external_ref, "50.00", "--method", "check", "--reference", "2231",
                 "--on", "2026-09-14", "--note", "left at the desk"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"Recorded a check payment of $50.00 from {parent.name}")
    assert re.fullmatch(r"entry \d+", out[1])
    assert out[2] == f"balance: {parent.name} owes ${(owed - 5000) / 100:,.2f}"
    assert balance_of(session, parent) == owed - 5000


def test_a_family_named_by_email_in_any_case(demo, session, capsys):
    parent, owed = a_family_owing(session)
    assert main(["record-payment", parent.email.upper(), f"{owed / 100:.2f}", "--method", "cash"]) == 0
    assert capsys.readouterr().out.splitlines()[2] == f"balance: {parent.name} owes nothing"


@pytest.mark.parametrize("amount", ["abc", "-5.00", "10.005", "0", "5.00 CAD"])
def test_a_bad_amount_is_one_line_exit_1_and_writes_nothing(demo, session, capsys, amount):
    parent, _ = a_family_owing(session)
    before = entries(session)
    assert main(["record-payment", parent.external_ref, amount, "--method", "cash"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and captured.err.startswith("error: ")
    assert entries(session) == before


def test_an_unknown_parent_is_one_line_exit_1(demo, session, capsys):
    before = entries(session)
    assert main(["record-payment", "PA-NOBODY", "10.00", "--method", "cash"]) == 1
    assert capsys.readouterr().err.strip() == (
        "error: No parent 'PA-NOBODY' in this league: give their id, parent_ref or email address.")
    assert entries(session) == before


def test_record_payment_with_a_receipt_emails_it_through_the_outbox(demo, session, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("EMAIL_BACKEND", "file")
    monkeypatch.setenv("EMAIL_OUTBOX_DIR", str(tmp_path / "outbox"))
    parent, owed = a_family_owing(session)
    assert main(["record-payment", parent.external_ref, "10.00", "--method", "cash", "--receipt"]) == 0
    out = capsys.readouterr().out
    assert f"balance: {parent.name} owes ${(owed - 1000) / 100:,.2f}" in out
    assert re.search(rf"receipt: emailed to {re.escape(parent.email)} through the outbox \(campaign #\d+\)", out)
    sent = list((tmp_path / "outbox").glob("*.eml"))
    assert len(sent) == 1
    body = sent[0].read_text()
    assert "payment of $10.00" in body and f"${(owed - 1000) / 100:,.2f}" in body


def test_a_receipt_that_cannot_go_leaves_the_payment_recorded_and_says_so(demo, session, capsys, monkeypatch):
    monkeypatch.setenv("EMAIL_BACKEND", "smtp")
    monkeypatch.delenv("SMTP_HOST", raising=False)
    monkeypatch.setenv("EMAIL_FROM", "Treasurer <treasurer@league.example.org>")
    parent, owed = a_family_owing(session)
    assert main(["record-payment", parent.external_ref, "10.00", "--method", "cash", "--receipt"]) == 1
    captured = capsys.readouterr()
    assert re.search(r"entry \d+", captured.out)
    assert "error: the receipt was not sent: EMAIL_BACKEND is smtp but SMTP_HOST is not set." in captured.err
    assert "The payment is recorded" in captured.err
    assert balance_of(session, parent) == owed - 1000


def test_adjust_a_charge_and_refuse_more_than_is_open_on_it(demo, session, capsys):
    parent, owed = a_family_owing(session)
    charge = session.scalars(select(Charge).where(Charge.parent_id == parent.id).order_by(Charge.id)).first()
    open_item = next(i for b in outstanding_balances(session, acting(find_tenant(session, "demo")))
                     if b.parent_id == parent.id for i in b.items if i.charge_id == charge.id)
    before = entries(session)
    too_much = f"{(open_item.amount_cents + 1) / 100:.2f}"
    assert main(["adjust", parent.external_ref, too_much, "--kind", "waiver", "--reason", "x",
                 "--charge", str(charge.id)]) == 1
    assert "is more than the" in capsys.readouterr().err and entries(session) == before

    assert main(["adjust", parent.external_ref, "10.00", "--kind", "write-off", "--reason", "bad debt",
                 "--charge", str(charge.id)]) == 0
    out = capsys.readouterr().out
    assert "Recorded a write-off of $10.00" in out and balance_of(session, parent) == owed - 1000


def test_reverse_restores_the_balance(demo, session, capsys):
    parent, owed = a_family_owing(session)
    main(["record-payment", parent.external_ref, "20.00", "--method", "cash"])
    entry = re.search(r"^entry (\d+)$", capsys.readouterr().out, re.MULTILINE).group(1)
    assert main(["reverse", entry, "--reason", "recorded for the wrong family"]) == 0
    out = capsys.readouterr().out
    assert f"Reversed entry {entry}" in out and out.splitlines()[2] == f"balance: {parent.name} owes ${owed / 100:,.2f}"
    assert main(["reverse", entry, "--reason", "again"]) == 1
    assert "already reversed" in capsys.readouterr().err


def test_the_statement_lists_every_entry_with_a_running_balance_and_what_is_open(demo, session, capsys, tmp_path):
    parent, owed = a_family_owing(session)
    assert main(["statement", parent.external_ref]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Statement of {parent.name} <{parent.email}>")
    assert "Open now:" in out and out.rstrip().endswith(f"balance: {parent.name} owes ${owed / 100:,.2f}")
    target = tmp_path / "statement.csv"
    assert main(["statement", parent.external_ref, "--csv", str(target)]) == 0
    rows = list(csv.DictReader(io.StringIO(target.read_text("utf-8-sig"))))
    assert rows and int(rows[-1]["balance"].replace(".", "")) == owed
    assert sum(int(r["amount"].replace(".", "").replace("-", "")) * (-1 if r["amount"].startswith("-") else 1)
               for r in rows) == owed


def test_a_payment_switches_the_settled_charges_link_off_in_stripe(demo, session, capsys, monkeypatch,
                                                                     stripe_stand_in):
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_stand_in")
    monkeypatch.setenv("STRIPE_API_BASE", stripe_stand_in.api_base)
    mirror_league(stripe_stand_in, session, demo.id)
    parent, owed = a_family_owing(session, registration_link=True)
    links = session.scalars(select(PaymentLink).join(Player, Player.id == PaymentLink.player_id)
                            .where(Player.parent_id == parent.id, PaymentLink.status == LinkStatus.ACTIVE)).all()
    assert main(["record-payment", parent.external_ref, f"{owed / 100:.2f}", "--method", "bank"]) == 0
    out = capsys.readouterr().out
    assert f"switched off in Stripe: {len(links)} payment links no longer owed" in out
    assert all(stripe_stand_in.payment_links[link.stripe_payment_link_id]["active"] is False for link in links)


def test_without_stripe_the_payment_is_recorded_and_the_links_wait_for_the_backfill(demo, session, capsys):
    parent, owed = a_family_owing(session, registration_link=True)
    assert main(["record-payment", parent.external_ref, f"{owed / 100:.2f}", "--method", "cash"]) == 0
    captured = capsys.readouterr()
    assert "owes nothing" in captured.out and "the next backfill switches them off" in captured.err
