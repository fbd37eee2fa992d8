"""League settings: the name and brand every email is signed with."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from cli.main import main
from core.access.league_settings import LeagueSettings, current_league_settings, update_league_settings
from core.access.permissions import Role
from core.errors import InvalidInput, PermissionDenied
from core.models import AuditEntry, Tenant
from tests.factories import acting, make_tenant


def test_an_admin_renames_and_rebrands_the_league_and_it_is_audited(session):
    tenant = make_tenant(session, "westside", name="Default")
    admin = acting(tenant)
    result = update_league_settings(session, admin, LeagueSettings(
        name="Westside Hoops", reply_to="Treasurer@Westside.example", primary_color="#123456", logo_url=""))
    session.commit()
    assert (result.name, result.reply_to, result.primary_color) == (
        "Westside Hoops", "Treasurer@westside.example", "#123456")
    assert session.get(Tenant, tenant.id).name == "Westside Hoops"
    entry = session.scalars(select(AuditEntry)).one()
    assert entry.action == "league_settings" and "name" in entry.summary


@pytest.mark.parametrize(
    "changes, message",
    [
        (LeagueSettings(name="  "), "name cannot be empty"),
        (LeagueSettings(primary_color="red"), "hex colour"),
        (LeagueSettings(accent_color="#12345g"), "hex colour"),
        (LeagueSettings(reply_to="not an address"), "valid email"),
        (LeagueSettings(logo_url="http://insecure.example/logo.png"), "https://"),
        (LeagueSettings(sender_name="Evil\r\nBcc: everyone@example.org"), "one line"),
    ],
)
def test_bad_settings_are_refused_and_nothing_changes(session, changes, message):
    tenant = make_tenant(session, "westside", name="Westside")
    session.commit()
    with pytest.raises(InvalidInput, match=message):
        update_league_settings(session, acting(tenant), changes)
    session.rollback()
    assert current_league_settings(session, acting(tenant)).name == "Westside"


def test_every_bad_setting_is_named_at_once_and_nothing_changes(session):
    tenant = make_tenant(session, "westside", name="Westside")
    session.commit()
    with pytest.raises(InvalidInput) as refused:
        update_league_settings(session, acting(tenant), LeagueSettings(
            name="Eastside", primary_color="red", reply_to="not an address", logo_url="http://x.example/l.png"))
    reply_to, logo, colour = str(refused.value).splitlines()  # one line each, in the form's order
    assert "valid email" in reply_to and "https://" in logo and "hex colour" in colour
    session.rollback()
    assert current_league_settings(session, acting(tenant)).name == "Westside"


def test_only_an_admin_may_change_the_league(session):
    tenant = make_tenant(session)
    for role in (Role.TREASURER, Role.COACH):
        with pytest.raises(PermissionDenied):
            update_league_settings(session, acting(tenant, role), LeagueSettings(name="Mine"))


def test_the_league_command_shows_and_changes_settings(database_url, monkeypatch, capsys, session):
    monkeypatch.setenv("DATABASE_URL", database_url)
    main(["demo"])
    capsys.readouterr()
    assert main(["league", "--name", "Northside Nets", "--reply-to", "money@northside.example"]) == 0
    out = capsys.readouterr().out
    assert "Northside Nets" in out and "money@northside.example" in out
    assert main(["league", "--primary-color", "blue"]) == 1
    assert capsys.readouterr().err.startswith("error: The primary color must be a hex colour")
    assert main(["league", "--primary-color", "blue", "--reply-to", "nope"]) == 1
    [line] = capsys.readouterr().err.splitlines()  # every problem, on the one error line
    assert line.startswith("error: ") and "valid email" in line and "; The primary color must be a hex" in line
    session.expire_all()
    assert session.scalars(select(Tenant.name)).one() == "Northside Nets"
