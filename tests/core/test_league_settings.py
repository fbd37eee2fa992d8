"""League settings: the name and brand every email is signed with."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from cli.main import main
from core.access.league_settings import LeagueSettings, current_league_settings, update_league_settings
from core.access.permissions import Role
from core.errors import InvalidInput, PermissionDenied
from core.models import AuditEntry, Tenant
from tests.factories import acting, make_tenant

NO_SECRETS = Path("/nonexistent/secrets.toml")


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


# --- settings a league may set for itself, with the server's as the default -----------------------


def test_a_league_without_its_own_settings_gets_the_environment_then_the_default(session):
    from core.access.league_settings import SettingSource, effective_settings
    from core.settings import load_settings

    tenant = make_tenant(session)
    configured = load_settings({"EMAIL_FROM": "Club <club@westside.example>", "EMAIL_COOLDOWN_DAYS": "5"},
                               secrets_file=NO_SECRETS)
    in_force = effective_settings(tenant, configured)
    assert (in_force.email_from.value, in_force.email_from.source) == (
        "Club <club@westside.example>", SettingSource.ENVIRONMENT)
    assert (in_force.email_cooldown_days.value, in_force.email_cooldown_days.source) == (5, SettingSource.ENVIRONMENT)
    assert in_force.payment_success_url.source is SettingSource.DEFAULT and in_force.success_url_is_placeholder
    assert (in_force.time_zone.value, in_force.time_zone.source) == ("UTC", SettingSource.DEFAULT)


def test_a_league_value_wins_over_the_environment(session):
    from core.access.league_settings import SettingSource, effective_settings
    from core.settings import load_settings

    tenant = make_tenant(session)
    update_league_settings(session, acting(tenant), LeagueSettings(
        sender_address="Money@Westside.example", payment_success_url="https://westside.example/thanks",
        time_zone="America/Chicago", email_cooldown_days="0"))
    configured = load_settings({"EMAIL_FROM": "Club <club@westside.example>", "EMAIL_COOLDOWN_DAYS": "5",
                                "EMAIL_BACKEND": "smtp"}, secrets_file=NO_SECRETS)
    in_force = effective_settings(tenant, configured)
    assert (in_force.email_from.value, in_force.email_from.source) == ("Money@westside.example", SettingSource.LEAGUE)
    assert in_force.payment_success_url.value == "https://westside.example/thanks"
    assert in_force.time_zone.value == "America/Chicago"
    assert (in_force.email_cooldown_days.value, in_force.email_cooldown_days.source) == (0, SettingSource.LEAGUE)
    assert in_force.email_from_problem() is None and in_force.success_url_problem() is None


def test_clearing_a_league_value_falls_back_to_the_environment(session):
    from core.access.league_settings import SettingSource, effective_settings
    from core.settings import Settings

    tenant = make_tenant(session, time_zone="Europe/Paris", email_cooldown_days=9)
    update_league_settings(session, acting(tenant), LeagueSettings(time_zone="", email_cooldown_days=""))
    in_force = effective_settings(tenant, Settings())
    assert (tenant.time_zone, tenant.email_cooldown_days) == (None, None)
    assert in_force.time_zone.source is SettingSource.DEFAULT and in_force.email_cooldown_days.value == 3


def test_the_placeholder_sender_is_flagged_for_a_backend_that_delivers(session):
    from core.access.league_settings import effective_settings
    from core.settings import Settings

    tenant = make_tenant(session)
    assert effective_settings(tenant, Settings()).email_from_problem() is None  # the file backend sends nothing
    problem = effective_settings(tenant, Settings(email_backend="smtp")).email_from_problem()
    assert problem is not None and "treasurer@example.org" in problem and "League settings" in problem


def test_the_placeholder_thank_you_page_is_refused_for_live_links(session):
    from core.access.league_settings import effective_settings
    from core.settings import ConfigurationError, Secret, Settings

    tenant = make_tenant(session)
    assert "fine for a test key" in (effective_settings(tenant, Settings()).success_url_problem() or "")
    with pytest.raises(ConfigurationError, match="before creating live"):
        effective_settings(tenant, Settings(stripe_api_key=Secret("sk_live_x"))).success_url_problem()


@pytest.mark.parametrize(
    "changes, message",
    [
        (LeagueSettings(time_zone="Mars/Olympus"), "not a time zone"),
        (LeagueSettings(email_cooldown_days="-1"), "whole number of days"),
        (LeagueSettings(email_cooldown_days="two"), "whole number of days"),
        (LeagueSettings(payment_success_url="westside.example/thanks"), "full web address"),
        (LeagueSettings(sender_address="Treasurer <x@y.example>"), "valid email"),
        (LeagueSettings(currency="dollars"), "three-letter code"),
    ],
)
def test_bad_league_values_are_refused(session, changes, message):
    tenant = make_tenant(session)
    with pytest.raises(InvalidInput, match=message):
        update_league_settings(session, acting(tenant), changes)


def test_the_currency_cannot_change_once_the_league_has_prices(session):
    from tests.factories import make_product

    tenant = make_tenant(session)
    update_league_settings(session, acting(tenant), LeagueSettings(currency="CAD"))
    assert tenant.currency == "cad"
    make_product(session, tenant, currency="cad")
    with pytest.raises(InvalidInput, match="cannot change from CAD to USD"):
        update_league_settings(session, acting(tenant), LeagueSettings(currency="usd"))
