"""Each role sees exactly its pages; a page opened by its address anyway is refused."""

from __future__ import annotations

from typing import Any

import pytest
import streamlit
from streamlit.testing.v1 import AppTest

from core.access.leagues import find_tenant
from core.access.permissions import ActingUser, Role
from dashboard.navigation import PAGES
from tests.dashboard.conftest import APP

# The menu of each role, from the roles table of the architecture brief.
MENU = {
    "admin": ["Outstanding balances", "Family page", "Sync from Stripe", "Import roster", "Create payment links", "League settings", "Setup checklist",
              "Audit log",
              "Email", "Email history"],
    "treasurer": ["Outstanding balances", "Family page", "Sync from Stripe"],
    "coach": ["Outstanding balances"],
}
PAGE_NAMES = [entry.url_path for entry in PAGES]


@pytest.fixture
def menu(monkeypatch) -> list[list[str]]:
    """The titles the sidebar menu shows (pages not hidden), one list per run of the router."""
    shown: list[list[str]] = []
    original = streamlit.navigation

    def recording_navigation(pages: Any, **options: Any):  # type: ignore[no-untyped-def]
        groups = pages.values() if isinstance(pages, dict) else [pages]
        shown.append([page.title for group in groups for page in group if page.visibility != "hidden"])
        return original(pages, **options)

    monkeypatch.setattr(streamlit, "navigation", recording_navigation)
    return shown


@pytest.mark.parametrize("role", list(MENU))
def test_each_role_sees_exactly_its_pages_in_the_menu(demo_league, open_app, menu, role):
    at = open_app(role)
    assert not at.exception
    assert menu[-1] == MENU[role]


@pytest.mark.parametrize("role", list(MENU))
@pytest.mark.parametrize("page", PAGE_NAMES)
def test_a_page_opens_for_the_roles_that_have_it_and_is_refused_for_the_others(demo_league, open_app, role, page):
    title = next(entry.title for entry in PAGES if entry.url_path == page)
    at = open_app(role, page=page)
    assert not at.exception
    refusals = [error.value for error in at.error]
    if title in MENU[role]:
        assert refusals == []
        assert at.title and at.title[0].value == title
    else:
        assert len(refusals) == 1 and refusals[0].startswith(f"A {role} may not")
        assert not at.title and not at.dataframe and not at.metric  # nothing of the page


def test_a_coach_opening_the_audit_log_by_its_address_is_told_why_and_shown_the_way_back(demo_league, open_app):
    at = open_app("coach", page="audit_log")
    assert not at.exception
    assert [error.value for error in at.error] == ["A coach may not view the audit log."]
    assert not at.dataframe and not at.get("download_button")
    assert [link.proto.label for link in at.get("page_link")] == ["Go to Outstanding balances"]


def test_the_audit_log_page_refuses_a_coach_even_without_the_router(demo_league, session):
    """A crafted run of the page script itself: core refuses, nothing is shown."""
    tenant = find_tenant(session, "demo")
    at = AppTest.from_file(APP.replace("app.py", "views/audit_log.py"), default_timeout=30)
    at.session_state["acting_user"] = ActingUser("demo-coach", Role.COACH, tenant.id)
    at.run()
    assert [exception.message for exception in at.exception] == ["A coach may not view the audit log."]
    assert not at.dataframe
