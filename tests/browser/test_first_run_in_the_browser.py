"""A volunteer sets a league up from an empty database and sends the first reminders, in Chromium,
without a terminal: names the league, imports the roster, creates the payment links through the
local Stripe stand-in, previews the email and sends it to every family.

The steps are functions of ``LeagueSetUp``, each asserting on what the admin sees, so a later
part of the journey adds steps, not a new server start.
"""

from __future__ import annotations

import email
import email.policy
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import REPO, start_dashboard
from tests.browser.streamlit_page import wait_until_idle
from tests.stripe_stand_in import StripeStandIn

pytestmark = pytest.mark.browser

EXAMPLES = REPO / "examples"
# The example roster: 8 players in 7 families; 5 families have a signed player and owe, and
# 4 of them have an email address (the Williams family has none).
FAMILIES_WITH_AN_ADDRESS = {"ngozi.okafor@example.org", "siobhan.obrien@example.org",
                            "amelie.lefevre@example.org", "jose.garcia@example.org"}


@pytest.fixture
def empty_dashboard(tmp_path: Path, stripe_stand_in: StripeStandIn) -> Iterator[str]:
    """The dashboard on a new, empty SQLite file (no league, no demo data), its Stripe the local stand-in."""
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'league.db'}", "EMAIL_OUTBOX_DIR": str(tmp_path / "outbox"),
           "AUTH_MODE": "demo", "STRIPE_API_KEY": "sk_test_stand_in", "STRIPE_API_BASE": stripe_stand_in.api_base}
    yield from start_dashboard(env, tmp_path)


def outbox_messages(outbox: Path) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
            for p in sorted(outbox.glob("*.eml"))]


class LeagueSetUp:
    """What the admin does, step by step, each asserting on what they see."""

    def __init__(self, page: Page, artifacts: Path) -> None:
        self.page = page
        self.artifacts = artifacts
        self.shots = 0

    def screenshot(self, name: str) -> None:
        self.shots += 1
        self.page.screenshot(path=str(self.artifacts / f"first-run-{self.shots}-{name}.png"), full_page=True)

    def open(self, url: str) -> None:
        self.page.goto(url)
        self.page.get_by_role("heading", name="Set up your league").wait_for(timeout=60_000)
        wait_until_idle(self.page)
        expect(self.page.get_by_text("setting up the first league")).to_be_visible()
        self.screenshot("empty-database")

    def name_the_league(self, name: str, *, sender: str, reply_to: str) -> None:
        page = self.page
        page.get_by_role("textbox", name="League name").fill(name)
        page.get_by_role("textbox", name="Emails come from (name)").fill(sender)
        page.get_by_role("textbox", name="Replies go to (email)").fill(reply_to)
        page.get_by_role("button", name="Create the league").click()
        page.get_by_role("heading", name="Import roster").wait_for(timeout=60_000)
        wait_until_idle(page)
        expect(page.get_by_text(name).first).to_be_visible()
        self.screenshot("league-named")

    def import_file(self, path: Path, *, rows: int, next_step: str) -> None:
        page = self.page
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(path))
        page.get_by_text(f"Preview: {path.stem} file, {rows} rows").wait_for(timeout=60_000)
        wait_until_idle(page)
        page.get_by_role("button", name="Import", exact=True).click()
        page.get_by_text(f"Imported {path.name} ({rows} rows)").wait_for(timeout=60_000)
        wait_until_idle(page)
        expect(page.get_by_role("heading", name=f"Imported: {path.stem} file")).to_be_visible()
        expect(page.get_by_role("heading", name="Next steps")).to_be_visible()
        expect(page.get_by_text(next_step).first).to_be_visible()
        # The file picker is empty again: no second, armed Import of the same file.
        expect(page.get_by_role("button", name="Import", exact=True)).to_have_count(0)
        self.screenshot(f"imported-{path.stem}")

    def open_page(self, title: str) -> None:
        self.page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True).click()
        self.page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)
        wait_until_idle(self.page)

    def create_payment_links(self, stand_in: StripeStandIn) -> int:
        """The dry run's plan, then the links created in Stripe; how many."""
        page = self.page
        self.open_page("Create payment links")
        expect(page.get_by_text("Dry run: nothing is changed.")).to_be_visible()
        wait_until_idle(page)
        # The table's cells are drawn on a canvas; its accessible copy holds their text.
        expect(page.get_by_test_id("stDataFrame").locator('[role="gridcell"]').first).to_be_attached(timeout=30_000)
        to_create = int(page.get_by_test_id("stMetric").filter(has_text="Payment links to create")
                        .get_by_test_id("stMetricValue").inner_text())
        assert to_create > 0
        totals = page.get_by_text(re.compile(r"payment links? to create \(")).inner_text()
        assert "prices to create in Stripe" in totals or "price to create in Stripe" in totals
        plan = " ".join([totals, *page.get_by_test_id("stDataFrame").locator('[role="gridcell"]').all_text_contents()])
        assert "create link" in plan
        # ... and each family's one "Pay the balance" link, counted in the same line.
        families = int(re.search(r"(\d+) family balance links? to create", totals).group(1))
        assert families > 0
        for word in ("mint", "tier", "0 waiting", "0 blocked"):
            assert word not in plan.lower()
        self.screenshot("payment-links-plan")
        page.get_by_text("Dry run: show the plan, change nothing").click()
        wait_until_idle(page)
        page.get_by_text(re.compile(rf"^Create {to_create} payment links in Stripe, billing")).click()
        wait_until_idle(page)
        page.get_by_role("button", name="Create payment links").click()
        page.get_by_text(f"Last run: {to_create} payment links created").wait_for(timeout=120_000)
        wait_until_idle(page)
        expect(page.get_by_text("Every signed player already has their payment links.")).to_be_visible()
        assert len(stand_in.payment_links) == to_create + families
        self.screenshot("payment-links-created")
        return to_create

    def preview_the_email(self, *, greeting: str, zone: str) -> None:
        page = self.page
        self.open_page("Email")
        inner = page.frame_locator('iframe[title="Email preview"]').first.frame_locator('iframe[sandbox=""]')
        inner.get_by_text("Pay now").first.wait_for(timeout=30_000)
        expect(inner.get_by_text(greeting)).to_be_visible()
        expect(inner.get_by_text(re.compile(rf"^Balance as of \d{{4}}-\d\d-\d\d \d\d:\d\d {zone}\.$"))).to_be_visible()
        self.screenshot("email-preview")

    def send_to_everyone(self, outbox: Path) -> int:
        page = self.page
        page.get_by_role("tab", name="Send to everyone").click()
        page.get_by_role("button", name="Sync payments and prepare the send").click()
        page.get_by_text("Emails to send").wait_for(timeout=60_000)
        wait_until_idle(page)
        self.screenshot("send-manifest")
        send_button = page.get_by_role("button", name=re.compile(r"^Send \d+ emails…$"))
        count = int(re.search(r"\d+", send_button.inner_text()).group())  # type: ignore[union-attr]
        send_button.click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_text(f"Email {count} families").wait_for(timeout=30_000)
        assert outbox_messages(outbox) == []  # nothing goes out before the admin says yes
        self.screenshot("send-confirm")
        dialog.get_by_role("button", name="Yes, send now").click()
        page.get_by_text(re.compile(r"^Campaign #\d+$")).wait_for(timeout=120_000)
        wait_until_idle(page)
        self.screenshot("sent")
        return count


def test_a_volunteer_goes_from_an_empty_database_to_reminders_sent(page, empty_dashboard, stripe_stand_in,
                                                                    artifacts_dir, tmp_path):
    outbox = tmp_path / "outbox"  # where empty_dashboard points EMAIL_OUTBOX_DIR
    started = time.monotonic()
    admin = LeagueSetUp(page, artifacts_dir)
    admin.open(empty_dashboard)
    admin.name_the_league("Northside Nets", sender="Northside Nets Treasurer", reply_to="money@northside.example")
    admin.import_file(EXAMPLES / "players.csv", rows=8, next_step="Import your products file")
    admin.import_file(EXAMPLES / "products.csv", rows=4, next_step="Import your orders file")
    admin.import_file(EXAMPLES / "orders.csv", rows=5, next_step="Create the payment links families pay through.")
    roster_imported = time.monotonic() - started

    admin.open_page("Setup checklist")
    expect(page.get_by_text(re.compile(r"^A test key: payment links take no real money."))).to_be_visible()
    expect(page.get_by_text("8 players in 7 families.")).to_be_visible()
    admin.screenshot("setup-checklist")

    admin.create_payment_links(stripe_stand_in)
    admin.open_page("Outstanding balances")
    expect(page.get_by_text("Northside Nets").first).to_be_visible()
    expect(page.get_by_text("Families owing")).to_be_visible()
    admin.screenshot("balances")

    admin.preview_the_email(greeting="Hi Amélie,", zone="EST")  # the first-run form's zone: America/New_York
    sent = admin.send_to_everyone(outbox)
    reminders_sent = time.monotonic() - started

    messages = outbox_messages(outbox)
    addresses = [m["To"].addresses[0].addr_spec for m in messages]
    assert sent == len(FAMILIES_WITH_AN_ADDRESS)
    assert sorted(addresses) == sorted(FAMILIES_WITH_AN_ADDRESS)  # one email per family, nobody twice
    for message in messages:
        body = message.get_body(("plain",)).get_content()
        assert "https://buy.stripe.com/" in body and "Total: $" in body
        assert re.search(r"Balance as of [\d-]+ \d\d:\d\d EST\.", body)

    admin.open_page("Audit log")
    expect(page.get_by_text(f"Sent {sent} reminder emails (campaign #1)")).to_be_attached()  # a data-grid cell
    expect(page.get_by_text("email.campaign_run")).to_have_count(0)
    admin.screenshot("audit-log")
    print(f"\nfrom an empty database to the roster imported: {roster_imported:.1f} s; "
          f"to all {sent} reminders sent: {reminders_sent:.1f} s")
