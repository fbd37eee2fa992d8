"""The first run: on an empty database the admin names the league in the dashboard, then imports."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from core.models import AuditEntry, Tenant
from tests.dashboard.conftest import APP


@pytest.fixture
def empty_database(database_url, monkeypatch, tmp_path, secrets_file, server_address) -> str:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("EMAIL_OUTBOX_DIR", str(tmp_path / "outbox"))
    monkeypatch.setenv("AUTH_MODE", "demo")
    return database_url


def _fill_in(at: AppTest, *, name: str = "Northside Nets") -> AppTest:
    at.text_input(key="first_run_name").input(name)
    at.text_input(key="first_run_sender").input("Northside Nets Treasurer")
    at.text_input(key="first_run_reply_to").input("money@northside.example")
    at.selectbox(key="first_run_currency").select("cad")
    at.selectbox(key="first_run_time_zone").select("America/Toronto")
    return at


def test_on_an_empty_database_an_admin_is_let_in_to_name_the_league(empty_database):
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not at.exception
    assert at.title[0].value == "Set up your league"
    assert any("Acting as **Admin**" in m.value for m in at.sidebar.markdown)
    assert not any("python -m core" in element.value for element in (*at.info, *at.markdown))


def test_naming_the_league_creates_it_audited_and_opens_the_import_page(empty_database, session):
    at = _fill_in(AppTest.from_file(APP, default_timeout=30).run())
    at.button[0].click().run()
    assert not at.exception
    tenant = session.scalars(select(Tenant)).one()
    assert (tenant.name, tenant.slug, tenant.sender_name, tenant.reply_to, tenant.currency, tenant.time_zone) == (
        "Northside Nets", "northside-nets", "Northside Nets Treasurer", "money@northside.example", "cad",
        "America/Toronto")
    entry = session.scalars(select(AuditEntry)).one()
    assert (entry.action, entry.actor, entry.summary) == ("league_created", "demo-admin",
                                                          "Created the league Northside Nets")
    assert at.title[0].value == "Import roster"
    assert any("Sign-in is off" in w.value for w in at.warning)
    assert not any("Demo mode" in w.value for w in at.warning)


def test_a_league_without_a_name_or_with_a_bad_reply_address_is_explained(empty_database, session):
    at = _fill_in(AppTest.from_file(APP, default_timeout=30).run(), name="  ")
    at.text_input(key="first_run_reply_to").input("nope")
    at.button[0].click().run()
    assert not at.exception
    assert at.error and "name cannot be empty" in at.error[0].value
    assert session.scalars(select(Tenant)).all() == []


def test_the_demo_league_can_still_be_created_from_the_first_run(empty_database, session):
    at = AppTest.from_file(APP, default_timeout=30).run()
    at.button(key="create_demo").click().run()
    assert not at.exception
    assert session.scalars(select(Tenant.slug)).all() == ["demo"]
    assert any("Demo mode" in w.value for w in at.warning)


def test_a_second_league_is_never_created_by_the_first_run_form(empty_database, session):
    from core.access.league_settings import LeagueSettings, create_first_league
    from core.errors import InvalidInput

    create_first_league(session, LeagueSettings(name="First"), created_by="demo-admin")
    with pytest.raises(InvalidInput, match="has a league already"):
        create_first_league(session, LeagueSettings(name="Second"), created_by="demo-admin")


OIDC_SECRETS = """
[auth]
redirect_uri = "http://localhost:8501/oauth2callback"
cookie_secret = "not-a-real-cookie-secret"
client_id = "test-client"
client_secret = "not-a-real-client-secret"
server_metadata_url = "https://accounts.example/.well-known/openid-configuration"

[roles.northside]
admins = ["ada@northside.example"]
treasurers = ["tom@northside.example"]
"""


def _signed_in(email: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30)
    at.user = {"is_logged_in": True, "email": email, "email_verified": True, "name": "Someone"}
    return at.run()


def test_with_sign_in_the_configured_admin_creates_the_league_of_their_roles_table(
        empty_database, monkeypatch, secrets_file, session):
    monkeypatch.setenv("AUTH_MODE", "oidc")
    secrets_file.write_text(OIDC_SECRETS, encoding="utf-8")
    at = _fill_in(_signed_in("ada@northside.example"))
    assert at.title[0].value == "Set up your league"
    at.button[0].click().run()
    assert not at.exception
    assert session.scalars(select(Tenant.slug)).all() == ["northside"]
    assert session.scalars(select(AuditEntry.actor)).all() == ["ada@northside.example"]


def test_with_sign_in_a_treasurer_cannot_create_the_league(empty_database, monkeypatch, secrets_file):
    monkeypatch.setenv("AUTH_MODE", "oidc")
    secrets_file.write_text(OIDC_SECRETS, encoding="utf-8")
    at = _signed_in("tom@northside.example")
    assert not at.exception
    assert at.title[0].value == "Welcome" and not at.text_input
