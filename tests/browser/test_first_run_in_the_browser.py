"""A volunteer sets a league up from an empty database, in Chromium, without a terminal.

The steps are functions of ``LeagueSetUp`` so the rest of the journey (payment links through
the local Stripe stand-in, the email preview, the send to everyone) adds steps, not a new test.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import REPO, start_dashboard
from tests.browser.streamlit_page import wait_until_idle

pytestmark = pytest.mark.browser

EXAMPLES = REPO / "examples"


@pytest.fixture
def empty_dashboard(tmp_path: Path):  # type: ignore[no-untyped-def]
    """The dashboard on a new, empty SQLite file: no league, no demo data."""
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'league.db'}", "EMAIL_OUTBOX_DIR": str(tmp_path / "outbox"),
           "AUTH_MODE": "demo"}
    yield from start_dashboard(env, tmp_path)


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


def test_an_admin_names_the_league_and_imports_the_roster_from_an_empty_database(page, empty_dashboard, artifacts_dir):
    started = time.monotonic()
    admin = LeagueSetUp(page, artifacts_dir)
    admin.open(empty_dashboard)
    admin.name_the_league("Northside Nets", sender="Northside Nets Treasurer", reply_to="money@northside.example")
    admin.import_file(EXAMPLES / "players.csv", rows=8, next_step="Import your products file")
    admin.import_file(EXAMPLES / "products.csv", rows=4, next_step="Import your orders file")
    admin.import_file(EXAMPLES / "orders.csv", rows=5, next_step="Create the payment links families pay through.")

    admin.open_page("Setup checklist")
    expect(page.get_by_text("None: payment links cannot be created yet.")).to_be_visible()
    expect(page.get_by_text("8 players in 7 families.")).to_be_visible()
    admin.screenshot("setup-checklist")
    admin.open_page("Outstanding balances")
    expect(page.get_by_text("Northside Nets").first).to_be_visible()
    print(f"\nfrom an empty database to the roster imported: {time.monotonic() - started:.1f} s")
