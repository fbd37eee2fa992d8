"""Dashboard tests run the real app with AppTest against a migrated test database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import streamlit
from streamlit.testing.v1 import AppTest

from tests.demo_copy import put_demo_league

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


@pytest.fixture(autouse=True)
def stripe_paced_for_tests(monkeypatch) -> None:
    """The gateway the app builds from its settings, paced like the ``stripe_gateway`` fixture.

    The stand-in sets no rate limit, so the test mode's 25 requests a second would only make a
    page that mints the demo league's links wait; the production pace and back-off are
    exercised by tests/adapters/test_stripe_gateway.py and bench/bench_backfill.py.
    """
    from core.payments.stripe_gateway import StripeGateway

    from_settings = StripeGateway.from_settings.__func__  # type: ignore[attr-defined]

    def paced_for_tests(cls, settings, **overrides):  # type: ignore[no-untyped-def]
        fast = {"requests_per_second": 1000, "rate_limit_backoff_seconds": 0.01, "max_backoff_seconds": 0.05}
        return from_settings(cls, settings, **{**fast, **overrides})

    monkeypatch.setattr(StripeGateway, "from_settings", classmethod(paced_for_tests))


@pytest.fixture
def demo_league(engine, database_url, monkeypatch, tmp_path) -> Iterator[None]:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("EMAIL_OUTBOX_DIR", str(tmp_path / "outbox"))
    monkeypatch.setenv("AUTH_MODE", "demo")
    put_demo_league(engine)
    yield


@pytest.fixture
def bare_demo_league(engine, database_url, monkeypatch, tmp_path) -> Iterator[None]:
    """The demo league without what its treasurer recorded by hand (nothing in the audit log yet)."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("EMAIL_OUTBOX_DIR", str(tmp_path / "outbox"))
    monkeypatch.setenv("AUTH_MODE", "demo")
    put_demo_league(engine, ledger_examples=False)
    yield


@pytest.fixture
def secrets_file(tmp_path, monkeypatch) -> Path:
    """The secrets.toml the app reads: absent unless a test writes it (never the developer's own)."""
    path = tmp_path / "secrets" / "secrets.toml"
    path.parent.mkdir()
    monkeypatch.setattr("core.settings.SECRETS_FILE", path)
    return path


@pytest.fixture
def server_address(monkeypatch) -> Callable[[str | None], None]:
    """Set the address the app believes it listens on (``server.address``); loopback by default."""
    original = streamlit.config.get_option

    def listen_on(address: str | None) -> None:
        monkeypatch.setattr(
            streamlit, "get_option", lambda key: address if key == "server.address" else original(key)
        )

    listen_on("127.0.0.1")
    return listen_on


@pytest.fixture
def open_app(database_url, monkeypatch, secrets_file, server_address) -> Callable[..., AppTest]:
    """Start the app as a role (demo sign-in), optionally on a page by url path."""
    monkeypatch.setenv("DATABASE_URL", database_url)

    def start(role: str = "admin", page: str | None = None, coach_teams: list[int] | None = None) -> AppTest:
        # A new server: nothing cached from a league an earlier test changed outside the app.
        streamlit.cache_data.clear()
        # Widget values are preset through session state, before the first run.
        at = AppTest.from_file(APP, default_timeout=30)
        at.session_state["demo_role"] = _role(role)
        if coach_teams is not None:
            at.session_state["demo_coach_teams"] = coach_teams
        at.run()
        if page:
            at.switch_page(_page_file(page)).run()
        return at

    return start


def _page_file(page: str) -> str:
    """The file of a page named by its url path or its file's name, relative to dashboard/."""
    from dashboard.navigation import PAGES

    for entry in PAGES:
        if page in (entry.url_path, Path(entry.file).stem):
            return entry.file
    raise AssertionError(f"no page called {page!r}")


def _role(name: str):  # type: ignore[no-untyped-def]
    from core.access.permissions import Role

    return Role(name)


def open_family_rows(at: AppTest) -> AppTest:
    """Open every family row of the Balances page (each reads its items when opened) and run."""
    for row in at.expander:
        key = row.proto.id.split("-", 2)[-1]  # "$$ID-<hash>-family_12" → "family_12"
        if key.startswith("family_"):
            at.session_state[key] = True
    return at.run()


@pytest.fixture(autouse=True)
def _a_new_server() -> None:
    """Each test starts as a new server would: nothing kept from a league an earlier test wrote
    (the same database address serves every test of a worker)."""
    streamlit.cache_data.clear()
