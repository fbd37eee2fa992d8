"""Browser tests: the real dashboard under ``streamlit run``, driven by Debian's Chromium."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def browser():  # type: ignore[no-untyped-def]
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def start_dashboard(
    env_overrides: dict[str, str], workdir: Path, *, address: str | None = "127.0.0.1"
) -> Iterator[str]:
    """Run ``python -m streamlit run dashboard/app.py`` on a free port; yield its loopback URL.

    ``address`` is passed as ``--server.address``; None leaves it to .streamlit/config.toml.
    """
    port = _free_port()
    env = {**os.environ, **env_overrides, "PYTHONUNBUFFERED": "1"}
    log = (workdir / "streamlit.log").open("w")
    listen = ["--server.address", address] if address is not None else []
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard/app.py",
         "--server.port", str(port), *listen, "--server.headless", "true",
         "--browser.gatherUsageStats", "false"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.3)
        else:
            raise RuntimeError("the dashboard did not start: " + (workdir / "streamlit.log").read_text()[-2000:])
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def demo_league_env(tmp_path: Path) -> dict[str, str]:
    """Settings for a fresh SQLite file holding the demo league (created now)."""
    database_url = f"sqlite:///{tmp_path / 'league.db'}"
    env = {"DATABASE_URL": database_url, "EMAIL_OUTBOX_DIR": str(tmp_path / "outbox"), "AUTH_MODE": "demo"}
    subprocess.run([sys.executable, "-m", "core", "demo"], cwd=REPO, env={**os.environ, **env},
                   check=True, capture_output=True, timeout=120)
    return env


@pytest.fixture
def demo_dashboard(tmp_path: Path) -> Iterator[str]:
    """The dashboard on a fresh SQLite file holding the demo league."""
    yield from start_dashboard(demo_league_env(tmp_path), tmp_path)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    report = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


_CALL_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def page(browser, request, artifacts_dir, tmp_path):  # type: ignore[no-untyped-def]
    """A browser tab; when the test fails, its screenshot and the server log are kept."""
    tab = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    yield tab
    if request.node.stash.get(_CALL_FAILED, False):
        name = request.node.name.replace("/", "_")
        tab.screenshot(path=str(artifacts_dir / f"FAILED-{name}.png"), full_page=True)
        log = tmp_path / "streamlit.log"
        if log.exists():
            (artifacts_dir / f"FAILED-{name}.log").write_text(log.read_text())
    tab.close()
