"""The family page: the statement, and the treasurer's tools, per role."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from cli.main import main
from core.access.leagues import find_tenant
from core.db import unit_of_work
from core.ledger.statement import family_statement
from core.models import EmailCampaign, EmailMessage, LedgerEntry, Parent, Payment, PaymentLink, PaymentMethod
from core.reporting.balances import OutstandingBalance, outstanding_balances
from tests.dashboard.conftest import open_family_rows
from tests.factories import acting
from tests.stripe_links import mirror_league


def _a_family_owing(session) -> tuple[Parent, int]:
    tenant = find_tenant(session, "demo")
    balance = next(b for b in outstanding_balances(session, acting(tenant)) if b.parent_email)
    return session.get(Parent, balance.parent_id), balance.total_cents


def _balance(session, parent) -> int:
    session.expire_all()
    return family_statement(session, acting(find_tenant(session, "demo")), parent.id).balance_cents


def _entries(session) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(LedgerEntry))


def _family_page(open_app, role, parent):
    at = open_app(role)
    at.query_params["parent"] = str(parent.id)
    at.switch_page("views/family.py").run()
    assert not at.exception
    return at


def _success(at) -> str:
    assert [e.value for e in at.error] == []
    return " ".join(s.value for s in at.success).replace("\\", "")  # as shown: no Markdown escapes


def test_a_treasurer_records_a_cash_payment_and_sees_the_new_balance(demo_league, open_app, session):
    parent, owed = _a_family_owing(session)
    at = _family_page(open_app, "treasurer", parent)
    assert at.header[0].value == parent.name
    assert parent.email in at.caption[0].value  # the treasurer sees contact details
    at.text_input(key="payment_amount").input("10.00")
    at.text_input(key="payment_reference").input("desk")
    at.button(key="FormSubmitter:record_payment-Record the payment").click().run()
    assert not at.exception
    done = _success(at)
    assert re.search(r"Entry \d+;", done)
    assert f"now owes ${(owed - 1000) / 100:,.2f}" in done
    assert _balance(session, parent) == owed - 1000
    assert at.metric[0].value == f"${(owed - 1000) / 100:,.2f}"
    # The receipt is offered, previewed first.
    assert any(b.key == "send_receipt" for b in at.button)
    assert "payment of $10.00" in at.code[0].value


def test_a_bad_amount_is_one_error_and_nothing_is_written(demo_league, open_app, session):
    parent, owed = _a_family_owing(session)
    before = _entries(session)
    at = _family_page(open_app, "treasurer", parent)
    for amount in ("abc", "-5.00", "10.005", "0"):
        at.text_input(key="payment_amount").input(amount)
        at.button(key="FormSubmitter:record_payment-Record the payment").click().run()
        assert not at.exception
        assert len(at.error) == 1 and "Nothing was recorded." in at.error[0].value
    assert _entries(session) == before
    assert _balance(session, parent) == owed


def test_reversing_a_payment_restores_the_balance(demo_league, open_app, session):
    parent, owed = _a_family_owing(session)
    at = _family_page(open_app, "admin", parent)
    at.text_input(key="payment_amount").input("25.00")
    at.button(key="FormSubmitter:record_payment-Record the payment").click().run()
    entry = int(re.search(r"Entry (\d+);", _success(at)).group(1))
    assert _balance(session, parent) == owed - 2500
    at.selectbox(key="reverse_entry").select(entry)
    at.text_input(key="reverse_reason").input("recorded for the wrong family")
    at.button(key="FormSubmitter:reverse-Reverse the entry").click().run()
    assert f"Reversed entry {entry}" in _success(at)
    assert _balance(session, parent) == owed


def test_the_receipt_is_sent_once_through_the_outbox(demo_league, open_app, session, tmp_path):
    parent, _ = _a_family_owing(session)
    at = _family_page(open_app, "treasurer", parent)
    at.text_input(key="payment_amount").input("10.00")
    at.button(key="FormSubmitter:record_payment-Record the payment").click().run()
    at.button(key="send_receipt").click().run()
    assert f"was sent to {parent.email}" in _success(at)
    assert not any(b.key == "send_receipt" for b in at.button)  # sent: nothing to click twice
    assert any("It is not sent twice" in i.value for i in at.info)
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 1
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(EmailMessage)
                          .join(EmailCampaign, EmailCampaign.id == EmailMessage.campaign_id)
                          .where(EmailCampaign.email_type == "payment_received")) == 1


def test_a_coach_cannot_open_a_family_page(demo_league, open_app, session):
    parent, _ = _a_family_owing(session)
    at = open_app("coach", coach_teams=[])
    at.query_params["parent"] = str(parent.id)
    at.switch_page("views/family.py").run()
    assert not at.exception
    assert any("may not see a family's ledger" in e.value for e in at.error)
    assert not at.text_input  # no form, no picker
    assert parent.email not in " ".join(m.value for m in at.markdown)


def test_the_balances_page_links_each_family_to_its_page(demo_league, open_app):
    treasurer = open_family_rows(open_app("treasurer"))
    assert any(link.label == "Open the family page" for link in treasurer.get("page_link"))
    coach = open_family_rows(open_app("coach"))
    assert coach.dataframe, "the coach's opened rows show their items"
    assert not any(link.label == "Open the family page" for link in coach.get("page_link"))


def test_a_recorded_payment_empties_the_form_so_a_second_click_records_nothing(demo_league, open_app, session):
    parent, owed = _a_family_owing(session)
    at = _family_page(open_app, "treasurer", parent)
    at.text_input(key="payment_amount").input("10.00")
    at.button(key="FormSubmitter:record_payment-Record the payment").click().run()
    assert at.text_input(key="payment_amount").value == ""
    at.button(key="FormSubmitter:record_payment-Record the payment").click().run()
    assert len(at.error) == 1 and "Nothing was recorded." in at.error[0].value
    assert _balance(session, parent) == owed - 1000


def test_an_adjustment_and_a_refund_made_outside_stripe_from_the_page(demo_league, open_app, session):
    parent, owed = _a_family_owing(session)
    at = _family_page(open_app, "treasurer", parent)
    at.text_input(key="payment_amount").input("30.00")
    at.button(key="FormSubmitter:record_payment-Record the payment").click().run()
    payment = int(re.search(r"Entry (\d+);", _success(at)).group(1))
    at.selectbox(key="adjust_kind").select("financial aid")
    at.text_input(key="adjust_amount").input("20.00")
    at.text_input(key="adjust_reason").input("scholarship")
    at.button(key="FormSubmitter:adjust-Record the adjustment").click().run()
    assert "Recorded a financial aid of $20.00" in _success(at)
    assert _balance(session, parent) == owed - 5000
    at.selectbox(key="refund_payment").select(payment)
    at.text_input(key="refund_amount").input("30.00")
    at.text_input(key="refund_reason").input("paid by the club instead")
    at.checkbox(key="refund_outside").check()
    at.button(key="FormSubmitter:refund-Refund").click().run()
    assert f"Refunded $30.00 of payment {payment}" in _success(at)
    assert _balance(session, parent) == owed - 2000  # the refund re-opens what it paid


def test_an_admin_stops_reminders_from_the_family_page(demo_league, open_app, session):
    parent, _ = _a_family_owing(session)
    at = _family_page(open_app, "admin", parent)
    assert "gets reminder emails" in at.caption[0].value
    at.button(key="family_opt_out").click().run()
    assert "will get no more reminder emails" in _success(at)
    assert "opted out" in at.caption[0].value
    session.expire_all()
    assert session.get(Parent, parent.id).email_opt_out is True
    assert not any(b.key == "family_opt_out" for b in _family_page(open_app, "treasurer", parent).button)


@pytest.fixture
def demo_in_stripe(demo_league, engine, monkeypatch, stripe_stand_in):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_stand_in")
    monkeypatch.setenv("STRIPE_API_BASE", stripe_stand_in.api_base)
    with unit_of_work(engine) as session:
        mirror_league(stripe_stand_in, session, find_tenant(session, "demo").id)


def _a_family_with_one_link(session) -> tuple[Parent, OutstandingBalance]:
    tenant = find_tenant(session, "demo")
    balance = next(b for b in outstanding_balances(session, acting(tenant))
                   if len(b.items) == 1 and b.items[0].link_id is not None and b.parent_email)
    return session.get(Parent, balance.parent_id), balance


def test_a_cash_payment_on_the_page_switches_the_paid_link_off_in_stripe(demo_in_stripe, open_app, session,
                                                                          stripe_stand_in):
    parent, balance = _a_family_with_one_link(session)
    link = session.get(PaymentLink, balance.items[0].link_id)
    at = _family_page(open_app, "treasurer", parent)
    at.text_input(key="payment_amount").input(f"{balance.total_cents / 100:.2f}")
    at.button(key="FormSubmitter:record_payment-Record the payment").click().run()
    assert "1 payment link(s) no longer owed were switched off in Stripe" in _success(at)
    assert not [w for w in at.warning if "could not be switched off" in w.value]
    assert stripe_stand_in.payment_links[link.stripe_payment_link_id]["active"] is False
    assert _balance(session, parent) == 0


def test_a_stripe_payment_is_refunded_through_stripe_from_the_page(demo_in_stripe, open_app, session,
                                                                   stripe_stand_in):
    parent, balance = _a_family_with_one_link(session)
    checkout = stripe_stand_in.complete_checkout_session(
        session.get(PaymentLink, balance.items[0].link_id).stripe_payment_link_id)
    assert main(["sync-payments"]) == 0
    assert _balance(session, parent) == 0
    session.expire_all()
    payment = session.scalars(select(Payment.id).where(Payment.parent_id == parent.id,
                                                        Payment.method == PaymentMethod.STRIPE,
                                                        Payment.reference == checkout["id"])).one()
    at = _family_page(open_app, "treasurer", parent)
    at.selectbox(key="refund_payment").select(payment)
    at.text_input(key="refund_amount").input("10.00")
    at.text_input(key="refund_reason").input("sibling discount agreed after paying")
    at.button(key="FormSubmitter:refund-Refund").click().run()
    assert f"Refunded $10.00 of payment {payment} to {parent.name} through Stripe" in _success(at)
    assert [r["amount"] for r in stripe_stand_in.refunds.values()] == [1000]
    assert _balance(session, parent) == 1000
