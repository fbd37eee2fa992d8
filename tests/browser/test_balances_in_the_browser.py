"""A treasurer opens the dashboard in Chromium, sees the demo balances and downloads the CSV."""

from __future__ import annotations

import csv
import io
import re
import time

import pytest
from playwright.sync_api import expect
from sqlalchemy import text

from core.db import make_engine
from tests.browser.streamlit_page import wait_until_idle

pytestmark = pytest.mark.browser


def test_treasurer_sees_demo_balances_and_downloads_the_csv(demo_dashboard, page, artifacts_dir, tmp_path):
    page.goto(demo_dashboard)
    page.get_by_text("Outstanding balances", exact=True).first.wait_for(timeout=60_000)
    page.get_by_text("Treasurer (balances, export, sync)").click()
    wait_until_idle(page)
    total = page.get_by_test_id("stMetricValue").first
    expect(total).to_have_text(re.compile(r"^\$[\d,]+\.\d\d$"), timeout=30_000)
    page.get_by_text("Download line items (CSV)").wait_for(timeout=30_000)
    page.get_by_test_id("stExpander").first.wait_for()
    wait_until_idle(page)
    # Each family's row links to its "Pay the balance" link.
    family = page.get_by_test_id("stExpander").first
    family.click()
    pay_balance = family.get_by_role("link", name=re.compile(r"^.*Pay \$[\d,]+\.\d\d \(the whole balance\)$"))
    expect(pay_balance).to_have_attribute("href", re.compile(r"^https://buy\.stripe\.com/test_demo_family"),
                                          timeout=30_000)
    family_total = re.search(r"— (\$[\d,]+\.\d\d)", family.inner_text()).group(1)
    assert f"Pay {family_total} " in pay_balance.inner_text()
    expect(page.get_by_text("Act as")).to_have_count(1)
    page.screenshot(path=str(artifacts_dir / "balances-treasurer.png"), full_page=True)

    with page.expect_download(timeout=60_000) as download_info:
        page.get_by_text("Download line items (CSV)").click()
    path = download_info.value.path()
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    assert rows, "the export has line items"
    exported_cents = sum(int(row["amount"].replace(".", "")) for row in rows if row["status"] == "owed")
    shown_cents = int(total.inner_text().replace("$", "").replace(",", "").replace(".", ""))
    assert exported_cents == shown_cents
    balance_links = {row["parent"]: row["pay_balance_url"] for row in rows if row["status"] == "owed"}
    assert balance_links and all(url.startswith("https://buy.stripe.com/test_demo_family")
                                 for url in balance_links.values())
    # The download is recorded in the audit log, as the treasurer who clicked it (by the rerun
    # that the click starts, which may finish just after the file arrived).
    engine = make_engine(f"sqlite:///{tmp_path / 'league.db'}")
    deadline = time.monotonic() + 20
    while True:
        with engine.connect() as connection:
            exports = connection.execute(text("SELECT actor, summary FROM audit_log WHERE action = 'export'")).all()
        if exports or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    engine.dispose()
    assert [actor for actor, _ in exports] == ["demo-treasurer"]
    assert exports[0][1].startswith(f"Exported {len(rows)} line items")

    # The treasurer opens the first family's page, records a cash payment, and everything follows.
    wait_until_idle(page)
    family = page.get_by_test_id("stExpander").first
    label = re.search(r"^(.+?) — (\$[\d,]+\.\d\d)", family.locator("summary").inner_text(), re.MULTILINE)
    name, owed_before = label.group(1).strip(), _cents(label.group(2))
    total_before = _cents(total.inner_text())
    if family.locator("details").get_attribute("open") is None:  # opened above for its balance link
        family.locator("summary").click()
        wait_until_idle(page)
    link = family.get_by_role("link", name="Open the family page")
    expect(link).to_be_visible()
    link.click()
    page.get_by_role("heading", name=name).wait_for(timeout=30_000)
    wait_until_idle(page)
    form = page.get_by_test_id("stForm").first
    form.get_by_label("Amount").fill("10.00")
    form.get_by_label("Reference").fill("paid at the gym")
    form.get_by_role("button", name="Record the payment").click()
    page.get_by_text(re.compile(r"Entry \d+;")).wait_for(timeout=30_000)
    wait_until_idle(page)
    owed_after = owed_before - 1000
    expect(page.get_by_test_id("stMetricValue").first).to_have_text(_dollars(owed_after))
    # The receipt's preview, before anything is sent: this payment and the balance after it.
    outer = page.frame_locator('iframe[title="Receipt preview"]').first
    inner = outer.frame_locator('iframe[sandbox=""]')
    inner.get_by_text("cash payment of").first.wait_for(timeout=30_000)
    expect(inner.get_by_text(f"What is still owed after this payment: {_dollars(owed_after)}.")).to_have_count(1)
    assert not list((tmp_path / "outbox").glob("*.eml"))
    page.screenshot(path=str(artifacts_dir / "family-page-after-payment.png"), full_page=True)

    # Outstanding balances shows it at once: the total and the family's row.
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Outstanding balances").click()
    page.get_by_text("Download line items (CSV)").wait_for(timeout=30_000)
    wait_until_idle(page)
    expect(page.get_by_test_id("stMetricValue").first).to_have_text(_dollars(total_before - 1000))
    expect(page.get_by_test_id("stExpander").filter(has_text=name).first.locator("summary")).to_contain_text(
        _dollars(owed_after))

    # And the reminder the admin would send that family now asks for what is still owed.
    page.get_by_text("Admin (everything)").click()
    wait_until_idle(page)
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Email", exact=True).click()
    page.get_by_role("heading", name="Email").first.wait_for(timeout=30_000)
    wait_until_idle(page)
    # The preview of the family that just paid (picked by name) asks for what it owes now.
    family_picker = page.get_by_test_id("stSelectbox").filter(has_text="Family").first
    family_picker.locator("input").click()
    page.keyboard.type(f"{name} <")
    page.keyboard.press("Enter")
    wait_until_idle(page)
    reminder = page.frame_locator('iframe[title="Email preview"]').first.frame_locator('iframe[sandbox=""]')
    expect(reminder.locator("body")).to_contain_text(f"Hi {name},")
    expect(reminder.locator("tr", has_text="Total")).to_contain_text(_dollars(owed_after))


def _cents(dollars: str) -> int:
    return int(dollars.replace("$", "").replace(",", "").replace(".", ""))


def _dollars(cents: int) -> str:
    return f"${cents / 100:,.2f}"
