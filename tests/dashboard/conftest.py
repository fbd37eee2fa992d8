"""Dashboard tests run the real app with AppTest against a migrated test database."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest
from streamlit.testing.v1 import AppTest

from core.db import unit_of_work
from core.demo import build_demo_league

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


@pytest.fixture
def demo_league(engine, database_url, monkeypatch, tmp_path) -> Iterator[None]:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("EMAIL_OUTBOX_DIR", str(tmp_path / "outbox"))
    monkeypatch.setenv("AUTH_MODE", "demo")
    with unit_of_work(engine) as session:
        build_demo_league(session)
    yield


@pytest.fixture
def open_app(database_url, monkeypatch) -> Callable[..., AppTest]:
    """Start the app as a role (demo sign-in), optionally on a page by url path."""
    monkeypatch.setenv("DATABASE_URL", database_url)

    def start(role: str = "admin", page: str | None = None, coach_teams: list[int] | None = None) -> AppTest:
        # Widget values are preset through session state: AppTest drops the entrypoint's
        # sidebar from its element tree after a rerun with file pages, so the sign-in
        # widgets cannot be clicked there (the browser test clicks them for real).
        at = AppTest.from_file(APP, default_timeout=30)
        at.session_state["demo_role"] = _role(role)
        if coach_teams is not None:
            at.session_state["demo_coach_teams"] = coach_teams
        at.run()
        if page:
            at.switch_page(f"pages/{page}.py").run()
        return at

    return start


def _role(name: str):  # type: ignore[no-untyped-def]
    from core.access import Role

    return Role(name)
