"""Sign-in: OIDC with roles from configuration, and the demo mode that refuses to run in production."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import streamlit
from streamlit.testing.v1 import AppTest

from core.access.leagues import find_tenant
from core.access.permissions import ActingUser, Role
from core.db import unit_of_work
from core.money import format_cents
from core.reporting.balances import outstanding_balances, summarise
from core.reporting.directory import league_teams
from tests.dashboard.conftest import APP
from tests.factories import make_link, make_parent, make_player, make_product, make_team, make_tenant

AUTH = """
[auth]
redirect_uri = "http://localhost:8501/oauth2callback"
cookie_secret = "not-a-real-cookie-secret"
client_id = "test-client"
client_secret = "not-a-real-client-secret"
server_metadata_url = "https://accounts.example/.well-known/openid-configuration"
"""
ROLES = """
[roles.demo]
admins = ["ada@westside.example"]
treasurers = ["tom@westside.example"]

[roles.demo.coaches]
"kim@westside.example" = ["u12 hawks"]

[roles.eastside]
treasurers = ["ada@westside.example"]
"""


@pytest.fixture
def sign_in_as(demo_league, monkeypatch, secrets_file, server_address) -> Callable[..., AppTest]:
    """Start the app in OIDC mode as someone the identity provider vouched for (None: signed out)."""
    monkeypatch.setenv("AUTH_MODE", "oidc")
    secrets_file.write_text(AUTH + ROLES, encoding="utf-8")

    def start(email: str | None, *, verified: bool = True, league: str | None = None) -> AppTest:
        # A new server: nothing cached from a league an earlier test changed outside the app.
        streamlit.cache_data.clear()
        at = AppTest.from_file(APP, default_timeout=30)
        at.user = (
            {"is_logged_in": True, "email": email, "email_verified": verified, "name": "Someone"}
            if email else {"is_logged_in": False}
        )
        if league:
            at.session_state["signed_in_league"] = league
        return at.run()

    return start


def _metrics(at: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in at.metric}


def _texts(at: AppTest) -> str:
    return " ".join(str(element.value) for kind in ("info", "error", "caption") for element in at.get(kind))


# --- OIDC -------------------------------------------------------------------------------------


def test_a_signed_out_visitor_sees_only_the_sign_in_button(sign_in_as):
    at = sign_in_as(None)
    assert not at.exception
    assert [button.label for button in at.button] == ["Sign in"]
    assert not at.metric and not at.dataframe


def test_a_signed_in_admin_gets_the_league_with_their_address_in_the_sidebar(sign_in_as, session):
    at = sign_in_as("Ada@Westside.example", league="demo")
    assert not at.exception
    tenant = find_tenant(session, "demo")
    expected = summarise(outstanding_balances(session, ActingUser("x", Role.ADMIN, tenant.id)))
    assert _metrics(at)["Total outstanding"] == format_cents(expected.total_cents)
    sidebar = " ".join(caption.value for caption in at.sidebar.caption)
    assert "ada@westside.example" in sidebar and "Admin" in sidebar
    assert not at.warning  # no demo banner


def test_a_coach_from_configuration_sees_only_their_team(sign_in_as, session):
    at = sign_in_as("kim@westside.example")
    assert not at.exception
    tenant = find_tenant(session, "demo")
    hawks = next(team.id for team in league_teams(session, tenant.id) if team.label == "U12 Hawks")
    coach = ActingUser("kim@westside.example", Role.COACH, tenant.id, frozenset({hawks}))
    expected = summarise(outstanding_balances(session, coach))
    assert _metrics(at)["Total outstanding"] == format_cents(expected.total_cents)
    assert "@" not in " ".join(expander.label for expander in at.expander)


def test_someone_with_roles_in_two_leagues_picks_the_league(sign_in_as, engine):
    with unit_of_work(engine) as session:
        east = make_tenant(session, "eastside", name="Eastside Hoops")
        player = make_player(session, east, make_parent(session, east, "Eve East"), make_team(session, east))
        make_link(session, east, player, make_product(session, east, amount_cents=7000))

    at = sign_in_as("ada@westside.example")
    assert not at.exception
    assert at.sidebar.selectbox(key="signed_in_league").options == [
        "Eastside Hoops (Treasurer)", "Westside Youth Basketball (Admin)",
    ]
    assert _metrics(at)["Total outstanding"] == "$70.00"
    assert "Eastside Hoops" in _texts(at)

    at.sidebar.selectbox(key="signed_in_league").set_value("demo").run()
    assert not at.exception
    assert "Westside Youth Basketball" in _texts(at)
    assert _metrics(at)["Total outstanding"] != "$70.00"


def test_a_signed_in_person_without_a_role_is_asked_to_see_their_league_admin(sign_in_as):
    at = sign_in_as("stranger@example.org")
    assert not at.exception
    assert "ask your league admin" in _texts(at)
    assert "stranger@example.org" in _texts(at)
    assert [button.label for button in at.button] == ["Sign out"]
    assert not at.metric and not at.dataframe and not at.expander and not at.sidebar.selectbox


def test_the_no_role_page_signs_out(sign_in_as):
    at = sign_in_as("stranger@example.org")
    at.button(key="no_role_sign_out").click().run()
    assert not at.exception
    assert at.user.get("is_logged_in") is False
    at.run()
    assert [button.label for button in at.button] == ["Sign in"]


def test_an_unverified_address_gets_no_role_even_if_listed(sign_in_as):
    at = sign_in_as("ada@westside.example", verified=False)
    assert not at.exception
    assert "verified email address" in _texts(at)
    assert not at.metric


@pytest.mark.parametrize("claim", [{}, {"email_verified": "no"}, {"email_verified": 0}, {"email_verified": "1"}])
def test_an_address_the_provider_does_not_vouch_for_is_refused_with_the_reason(sign_in_as, claim):
    at = sign_in_as(None)
    at.user = {"is_logged_in": True, "email": "ada@westside.example", "name": "Someone", **claim}
    at.run()
    assert not at.exception
    shown = _texts(at)
    assert "did not confirm that ada@westside.example is verified" in shown
    assert "email_verified" in shown
    assert not at.metric and not at.dataframe and not at.sidebar.selectbox
    assert [button.label for button in at.button] == ["Sign out"]


def test_a_sign_in_without_an_email_address_says_so(sign_in_as):
    at = sign_in_as(None)
    at.user = {"is_logged_in": True, "name": "Someone", "email_verified": True}
    at.run()
    assert not at.exception
    assert "did not come with an email address" in _texts(at)
    assert not at.metric


def test_oidc_mode_without_an_auth_section_says_what_is_missing(sign_in_as, secrets_file):
    secrets_file.write_text(ROLES, encoding="utf-8")
    at = sign_in_as("ada@westside.example")
    assert not at.exception
    assert "no [auth] section" in " ".join(error.value for error in at.error)
    assert not at.metric


def test_a_malformed_roles_table_is_reported_not_crashed_on(sign_in_as, secrets_file):
    secrets_file.write_text(AUTH + '[roles.demo]\nadmins = "ada@westside.example"\n', encoding="utf-8")
    at = sign_in_as("ada@westside.example")
    assert not at.exception
    assert "roles.demo.admins must be a list" in " ".join(error.value for error in at.error)
    assert not at.metric


# --- demo mode --------------------------------------------------------------------------------


def test_demo_mode_shows_a_banner_on_every_page(demo_league, open_app):
    for page in (None, "balances", "audit_log"):
        at = open_app("admin", page=page)
        assert not at.exception
        assert any("Demo mode" in warning.value for warning in at.warning)


@pytest.mark.parametrize(
    "address, reason", [("0.0.0.0", "listens on 0.0.0.0"), (None, "every network interface")]
)
def test_demo_mode_refuses_to_start_on_a_network_address(demo_league, open_app, server_address, address, reason):
    server_address(address)
    at = open_app("admin")
    assert not at.exception
    assert [title.value for title in at.title] == ["Demo mode refused to start"]
    assert reason in at.error[0].value
    assert not at.metric and not at.sidebar.radio  # no role picker, no data


def test_demo_mode_refuses_to_start_when_sign_in_is_configured(demo_league, open_app, secrets_file):
    secrets_file.write_text(AUTH, encoding="utf-8")
    at = open_app("admin")
    assert not at.exception
    assert "[auth]" in at.error[0].value and "AUTH_MODE=oidc" in at.error[0].value
    assert not at.metric and not at.sidebar.radio


def test_demo_mode_also_sees_an_auth_section_only_streamlit_reads(demo_league, secrets_file, server_address):
    at = AppTest.from_file(APP, default_timeout=30)
    at.secrets = {"auth": {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x"}}
    at.run()
    assert not at.exception
    assert "[auth]" in at.error[0].value
    assert not at.metric


@pytest.mark.parametrize("url, expected", [
    ("sqlite:////nonexistent-folder/league.db", "DATABASE_URL names the SQLite file /nonexistent-folder/league.db"),
    ("mysql://treasurer@db.example/league", "DATABASE_URL names a mysql database"),
    ("postgresql://nobody:s3cret-pass@127.0.0.1:1/league", "The database cannot be reached"),
    ("postgresql://nobody:s3cret@pass@127.0.0.1:1/league", "the password must be URL-encoded"),
    ("postgresql://nobody:s3cret-pass@127.0.0.1:port/league", "the port 'port' is not a number"),
])
def test_a_database_the_dashboard_cannot_use_is_one_clear_line(monkeypatch, secrets_file, url, expected):
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("AUTH_MODE", "demo")
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not at.exception
    assert any(expected in e.value for e in at.error), [e.value for e in at.error]
    shown = " ".join(e.value for e in at.error)
    assert "s3cret" not in shown and "pass@" not in shown
