"""The real server: demo mode runs on the project's loopback address and refuses anything wider."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.browser.conftest import demo_league_env, start_dashboard
from tests.browser.streamlit_page import wait_until_idle

pytestmark = pytest.mark.browser
running_dashboard = contextmanager(start_dashboard)


def test_the_project_config_keeps_the_demo_on_loopback(browser, tmp_path: Path):
    with running_dashboard(demo_league_env(tmp_path), tmp_path, address=None) as url:  # config.toml decides
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url)
        page.get_by_test_id("stMetricValue").first.wait_for(timeout=60_000)
        wait_until_idle(page)
        assert page.get_by_text("Demo mode.", exact=False).count() >= 1
        page.close()


def test_demo_mode_refuses_to_start_when_the_server_listens_on_every_interface(
    browser, tmp_path: Path, artifacts_dir: Path
):
    with running_dashboard(demo_league_env(tmp_path), tmp_path, address="0.0.0.0") as url:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url)
        page.get_by_text("Demo mode refused to start").wait_for(timeout=60_000)
        wait_until_idle(page)
        assert page.get_by_text("This server listens on 0.0.0.0", exact=False).count() == 1
        assert page.get_by_test_id("stMetricValue").count() == 0
        assert page.get_by_text("Act as").count() == 0
        page.screenshot(path=str(artifacts_dir / "demo-mode-refused.png"), full_page=True)
        page.close()
