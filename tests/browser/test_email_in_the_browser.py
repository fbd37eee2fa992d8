"""An admin previews the email, sends a test, then sends to everyone, in Chromium; the .eml files are checked."""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path

import pytest

from tests.browser.streamlit_page import wait_until_idle

pytestmark = pytest.mark.browser


def outbox_messages(outbox: Path) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
            for p in sorted(outbox.glob("*.eml"))]


def test_admin_previews_tests_and_sends_the_outstanding_balance_email(page, demo_dashboard, artifacts_dir, tmp_path):
    outbox = tmp_path / "outbox"  # where demo_dashboard points EMAIL_OUTBOX_DIR
    page.goto(demo_dashboard)
    page.get_by_text("Outstanding balances", exact=True).first.wait_for(timeout=60_000)
    wait_until_idle(page)
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Email", exact=True).click()
    page.get_by_role("heading", name="Email").first.wait_for(timeout=60_000)
    wait_until_idle(page)

    # Preview: the exact HTML, in a frame whose own frame is sandboxed.
    outer = page.frame_locator('iframe[title="Email preview"]').first
    inner = outer.frame_locator('iframe[sandbox=""]')
    inner.get_by_text("Pay now").first.wait_for(timeout=30_000)
    assert inner.get_by_text("Total").count() >= 1
    # It leads with the family's balance button, for exactly the total of the table below.
    total = inner.locator("tr.total td.amount").inner_text().strip()
    balance_button = inner.get_by_role("link", name=f"Pay {total}", exact=True)
    assert balance_button.count() == 1
    assert (balance_button.get_attribute("href") or "").startswith("https://buy.stripe.com/test_demo_family")
    page.screenshot(path=str(artifacts_dir / "email-1-preview.png"), full_page=True)

    # Test send to a validated address.
    page.get_by_role("tab", name="Test send").click()
    page.get_by_label("Send the test to").fill("not an address")
    page.get_by_role("button", name="Send test email").click()
    page.get_by_text("is not a valid email address").wait_for(timeout=30_000)
    assert outbox_messages(outbox) == []
    page.get_by_label("Send the test to").fill("me@example.org")
    page.get_by_role("button", name="Send test email").click()
    page.get_by_text("Test email sent to me@example.org.").wait_for(timeout=30_000)
    wait_until_idle(page)
    page.screenshot(path=str(artifacts_dir / "email-2-test-send.png"), full_page=True)
    (test_message,) = outbox_messages(outbox)
    assert test_message["Subject"].strip().startswith("[TEST] ")

    # Send to everyone: manifest, confirmation dialog, progress, results.
    page.get_by_role("tab", name="Send to everyone").click()
    page.get_by_role("button", name="Sync payments and prepare the send").click()
    page.get_by_text("Emails to send").wait_for(timeout=30_000)
    wait_until_idle(page)
    page.screenshot(path=str(artifacts_dir / "email-3-manifest.png"), full_page=True)
    send_button = page.get_by_role("button", name=re.compile(r"^Send \d+ emails…$"))
    count = int(re.search(r"\d+", send_button.inner_text()).group())
    send_button.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text(f"Email {count} families").wait_for(timeout=30_000)
    page.screenshot(path=str(artifacts_dir / "email-4-confirm.png"))
    assert len(outbox_messages(outbox)) == 1
    dialog.get_by_role("button", name="Yes, send now").click()
    page.get_by_text(re.compile(r"^Campaign #\d+$")).wait_for(timeout=120_000)
    wait_until_idle(page)
    page.screenshot(path=str(artifacts_dir / "email-5-sent.png"), full_page=True)

    messages = outbox_messages(outbox)
    parents = [m["To"].addresses[0].addr_spec for m in messages if not m["Subject"].strip().startswith("[TEST]")]
    assert len(parents) == count and len(set(parents)) == count  # everyone once, nobody twice
    for message in messages:
        assert message.get_content_type() == "multipart/alternative"
        assert "Total: $" in message.get_body(("plain",)).get_content()
        assert "https://buy.stripe.com/test_demo_family" in message.get_body(("plain",)).get_content()
        assert message["Message-ID"] and message["Reply-To"]
