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
