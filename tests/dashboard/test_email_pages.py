"""The Email and Email history pages, driven by widget keys as an admin would."""

from __future__ import annotations

import email
import email.policy
import html
import re
from pathlib import Path

import pytest

from core.access.leagues import find_tenant
from core.access.permissions import Role
from core.db import unit_of_work
from core.email.campaigns import build_manifest
from core.email.registry import OUTSTANDING_BALANCE
from core.models import PaymentLink
from dashboard.navigation import pages_for
from tests.factories import acting, pay_link
from tests.stripe_links import mirror_league


@pytest.fixture
def outbox(tmp_path) -> Path:  # the demo_league fixture points EMAIL_OUTBOX_DIR here
    return tmp_path / "outbox"


def sent_to(outbox: Path) -> list[str]:
    return sorted(
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)["To"].addresses[0].addr_spec
        for p in outbox.glob("*.eml")
    )


def frame_html(at) -> str:  # type: ignore[no-untyped-def]
    (frame,) = at.get("iframe")
    return frame.proto.srcdoc


def table_with(at, column: str):  # type: ignore[no-untyped-def]
    """The first table on the page that has ``column`` (AppTest does not expose a dataframe's key)."""
    return next(frame.value for frame in at.dataframe if column in frame.value.columns)


def expected_manifest(session):  # type: ignore[no-untyped-def]
    return build_manifest(session, acting(find_tenant(session, "demo")), OUTSTANDING_BALANCE)


def test_the_preview_shows_the_exact_html_in_a_sandboxed_frame_with_text_and_headers(demo_league, open_app):
    at = open_app("admin", page="email")
    assert not at.exception
    family = at.selectbox(key="preview_parent")
    assert family.options and "—" in family.options[0]
    srcdoc = frame_html(at)
    assert srcdoc.startswith('<iframe sandbox="" ') and "allow-scripts" not in srcdoc
    shown = html.unescape(srcdoc.split('srcdoc="', 1)[1].rsplit('"></iframe>', 1)[0])
    assert shown.startswith("<!DOCTYPE html>") and ">Pay now</a>" in shown
    text = at.code[0].value
    assert "Total: $" in text and "Westside Youth Basketball" in text
    headers = table_with(at, "Header")
    assert {"Subject", "From", "To", "Reply-To", "Message-ID"} <= set(headers["Header"])
    assert at.get("download_button")[0].proto.label == "Download as .eml"


def test_a_test_send_to_a_bad_address_says_why_and_sends_nothing(demo_league, open_app, outbox):
    at = open_app("admin", page="email")
    at.text_input(key="test_address").input("not an address").run()
    at.button(key="send_test").click().run()
    assert not at.exception
    assert "is not a valid email address" in at.error[0].value
    assert sent_to(outbox) == []


def test_a_test_send_delivers_one_email_marked_test(demo_league, open_app, outbox):
    at = open_app("admin", page="email")
    at.text_input(key="test_address").input("me@example.org").run()
    at.button(key="send_test").click().run()
    assert not at.exception
    assert at.success[0].value == "Test email sent to me@example.org."
    (path,) = outbox.glob("*.eml")
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert message["To"].addresses[0].addr_spec == "me@example.org"
    assert message["Subject"].strip().startswith("[TEST] ")


def test_send_to_everyone_shows_the_manifest_and_sends_only_after_confirmation(
    demo_league, open_app, outbox, session
):
    manifest = expected_manifest(session)
    at = open_app("admin", page="email")
    at.button(key="prepare_send").click().run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Emails to send"] == str(manifest.count) and metrics["Owed by them"] == manifest.total
    assert "Stripe is not configured" in at.info[0].value
    skipped = table_with(at, "Why skipped")
    assert set(skipped["Why skipped"]) >= {"no email address", "opted out of email", "nothing owed"}
    assert sent_to(outbox) == []

    at.button(key="open_send_dialog").click().run()
    assert not at.exception and sent_to(outbox) == []
    at.button(key="confirm_send").click().run()
    assert not at.exception
    results = {m.label: m.value for m in at.metric}
    assert results["Sent"] == str(manifest.count) and results["Failed"] == "0"
    assert sent_to(outbox) == sorted(e.email for e in manifest.recipients)
    table = table_with(at, "Reason")
    assert (table["Status"] == "sent").sum() == manifest.count


@pytest.fixture
def stripe_configured(demo_league, session, stripe_stand_in, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_stand_in")
    monkeypatch.setenv("STRIPE_API_BASE", stripe_stand_in.api_base)
    mirror_league(stripe_stand_in, session, find_tenant(session, "demo").id)
    return stripe_stand_in


def links_of_first_recipient(session) -> list[PaymentLink]:  # type: ignore[no-untyped-def]
    entry = expected_manifest(session).recipients[0]
    session.rollback()
    return [session.get(PaymentLink, item.link_id) for item in entry.balance.items]


def test_the_send_is_refused_when_the_list_changed_after_the_admin_reviewed_it(demo_league, open_app, outbox, session):
    before = expected_manifest(session)
    session.rollback()
    at = open_app("admin", page="email")
    at.button(key="prepare_send").click().run()
    at.button(key="open_send_dialog").click().run()
    for link in links_of_first_recipient(session):  # a family pays while the admin reads the dialog
        pay_link(session, link)
    session.commit()

    at.button(key="confirm_send").click().run()

    assert not at.exception
    assert sent_to(outbox) == []
    assert at.error[0].value.startswith("The list changed since you reviewed it: review again.")
    assert {m.label: m.value for m in at.metric}["Emails to send"] == str(before.count - 1)  # the list as it is now
    assert "confirm_send" not in [b.key for b in at.button]


def test_confirming_syncs_payments_again_so_a_family_who_just_paid_is_not_emailed(
    stripe_configured, open_app, outbox, session
):
    at = open_app("admin", page="email")
    at.button(key="prepare_send").click().run()
    assert "Payments synced from Stripe first" in at.info[0].value
    at.button(key="open_send_dialog").click().run()
    stripe_configured.complete_checkout_session(links_of_first_recipient(session)[0].stripe_payment_link_id)

    at.button(key="confirm_send").click().run()

    assert not at.exception
    assert sent_to(outbox) == []
    assert at.error[0].value.startswith("The list changed since you reviewed it")


def test_a_failed_payment_sync_refuses_the_send_and_shows_no_list(stripe_configured, open_app, outbox):
    stripe_configured.inject("error", status=401, message="Invalid API Key provided", times=None,
                             path="/v1/events")
    at = open_app("admin", page="email")
    at.button(key="prepare_send").click().run()

    assert not at.exception
    assert at.error[0].value.startswith("Payments could not be synced from Stripe (")
    assert "nothing was sent" in at.error[0].value
    assert "open_send_dialog" not in [b.key for b in at.button] and not at.metric
    assert sent_to(outbox) == []


def test_cancelling_the_confirmation_sends_nothing(demo_league, open_app, outbox):
    at = open_app("admin", page="email")
    at.button(key="prepare_send").click().run()
    at.button(key="open_send_dialog").click().run()
    at.button(key="cancel_send").click().run()
    assert not at.exception
    assert "confirm_send" not in [b.key for b in at.button]
    assert sent_to(outbox) == []


def test_failed_messages_are_listed_with_the_reason_and_can_be_retried(
    demo_league, open_app, outbox, session, monkeypatch, smtp_nobody_answers
):
    manifest = expected_manifest(session)
    at = open_app("admin", page="email")
    at.button(key="prepare_send").click().run()
    at.button(key="open_send_dialog").click().run()
    at.button(key="confirm_send").click().run()
    assert not at.exception
    table = table_with(at, "Reason")
    failed = table[table["Status"] == "failed"]
    assert len(failed) == manifest.count and failed["Reason"].str.contains("Could not connect").all()

    monkeypatch.setenv("EMAIL_BACKEND", "file")
    at.button(key="retry_failed").click().run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Sent"] == str(manifest.count)
    assert sent_to(outbox) == sorted(e.email for e in manifest.recipients)


def test_the_history_lists_campaigns_and_shows_each_messages_exact_html(demo_league, open_app, engine):
    with unit_of_work(engine) as session:
        find_tenant(session, "demo").time_zone = "America/Los_Angeles"
    at = open_app("admin", page="email")
    at.text_input(key="test_address").input("me@example.org").run()
    at.button(key="send_test").click().run()
    at.switch_page("views/email_history.py").run()
    assert not at.exception
    campaigns = table_with(at, "Campaign")
    assert list(campaigns["To"]) == ["test to me@example.org"] and list(campaigns["Sent"]) == [1]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d P[SD]T", campaigns["Started"][0])  # the league's clock
    messages = table_with(at, "Provider id")
    assert list(messages["Status"]) == ["sent"]
    assert re.fullmatch(r"[\d-]+ \d\d:\d\d:\d\d P[SD]T", messages["Sent at"][0])
    srcdoc = frame_html(at)
    assert srcdoc.startswith('<iframe sandbox="" ') and "Pay now" in srcdoc
    assert "Subject: [TEST] " in at.text[0].value


def test_the_history_page_says_when_nothing_was_sent(demo_league, open_app):
    at = open_app("admin", page="email_history")
    assert not at.exception
    assert at.info[0].value == "No email has been sent yet."


@pytest.mark.parametrize("role", [Role.TREASURER, Role.COACH])
def test_only_admins_get_the_email_pages(role):
    from core.access.permissions import ActingUser

    titles = [page.title for page in pages_for(ActingUser("x", role, 1))]
    assert "Email" not in titles and "Email history" not in titles
    admin_titles = [page.title for page in pages_for(ActingUser("x", Role.ADMIN, 1))]
    assert {"Email", "Email history"} <= set(admin_titles)


def test_a_delivering_backend_with_the_placeholder_sender_is_refused_before_anything_is_sent(
    demo_league, open_app, outbox, monkeypatch
):
    monkeypatch.setenv("EMAIL_BACKEND", "smtp")
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.delenv("EMAIL_FROM", raising=False)
    at = open_app("admin", page="email")
    assert not at.exception
    shown = [e.value.replace("\\", "") for e in at.error]  # as read, without Markdown escapes
    assert any("Nothing can be sent yet: EMAIL_FROM is not set" in e and "treasurer@example.org;" in e for e in shown)
    assert at.button(key="send_test").disabled and at.button(key="prepare_send").disabled
    assert sent_to(outbox) == []


def test_the_command_line_and_the_page_prepare_the_same_send(demo_league, open_app, outbox, session, monkeypatch,
                                                            capsys):
    """One workflow, two presenters: the same families to email, and the same skipped with the same reasons."""
    import io
    import re

    from cli.main import main

    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # no terminal: the command line shows the list and stops
    assert main(["send-outstanding", "--all"]) == 1
    out = capsys.readouterr().out
    to_email, _, skipped = out.partition("\nSkipped ")
    assert "(1 item)" in to_email and "(1 items)" not in to_email
    cli_recipients = [m.groups() for m in re.finditer(r"^  (.*) <([^<>]*)>: (\S+) \((\d+) items?\)$", to_email, re.M)]
    cli_skipped = [m.groups() for m in re.finditer(r"^  (.*?): (.*)$", skipped, re.M)]

    at = open_app("admin", page="email")
    at.button(key="prepare_send").click().run()
    assert not at.exception
    page_recipients = [(r["Family"], r["Email"], r["Owes"], str(r["Items"]))
                       for r in table_with(at, "Items").to_dict("records")]
    page_skipped = [(r["Family"], r["Why skipped"]) for r in table_with(at, "Why skipped").to_dict("records")]

    manifest = expected_manifest(session)
    assert cli_recipients == page_recipients and len(page_recipients) == manifest.count > 0
    assert cli_skipped == page_skipped and len(page_skipped) == len(manifest.skipped) > 0
    assert {reason for _, reason in page_skipped} >= {"no email address", "opted out of email", "nothing owed"}
    assert sent_to(outbox) == []


def interrupted_send(engine, session):  # type: ignore[no-untyped-def]
    """A send to everyone whose run was killed while its first message was in the provider call."""
    from sqlalchemy import update

    from core.email.campaigns import message_rows, start_campaign
    from core.models import EmailMessage, MessageStatus, utcnow
    from tests.core.email.conftest import dead_process_token

    admin = acting(find_tenant(session, "demo"))
    campaign = start_campaign(session, admin, OUTSTANDING_BALANCE, email_from="Treasurer <t@example.org>",
                              sender=dead_process_token())
    session.commit()
    first = next(row for row in message_rows(session, admin, campaign.id) if row.status == "pending")
    session.execute(update(EmailMessage).where(EmailMessage.id == first.id).values(
        status=MessageStatus.SENDING, claimed_at=utcnow(), attempts=1, claimed_by=dead_process_token()))
    session.commit()
    return campaign.id, first


@pytest.mark.parametrize("decision, delivered", [("decide_was_sent", 0), ("decide_send_again", 1)])
def test_a_message_whose_run_was_killed_is_shown_with_its_message_id_for_the_admin_to_decide(
    demo_league, open_app, outbox, engine, session, decision, delivered
):
    campaign_id, first = interrupted_send(engine, session)
    at = open_app("admin", page="email")
    assert not at.exception
    at.button(key=f"open_campaign_{campaign_id}").click().run()
    awaiting = table_with(at, "Message-ID")
    assert list(awaiting["Message-ID"]) == [first.message_id_header]  # interrupted at once: its run is gone
    assert at.button(key=decision).disabled  # nothing is decided until the admin picks the message
    at.multiselect(key="decide_messages").select(str(first.id)).run()
    at.button(key=decision).click().run()
    assert not at.exception
    assert sent_to(outbox).count(first.to_address) == delivered
    if decision == "decide_was_sent":
        assert sent_to(outbox) == []  # recording a decision sends nothing at all
    shown = table_with(at, "Reason")
    assert shown[shown["Family"] == first.parent_name]["Status"].tolist() == ["sent"]
    assert not [frame for frame in at.dataframe if "Message-ID" in frame.value.columns]
