"""Roles come from configuration: a signed-in address becomes an admin, treasurer or coach of a league."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from core.access.permissions import Role
from core.access.roles import (
    EmailClaimProblem,
    Membership,
    acting_user_for,
    email_claim_problem,
    league_access_for,
    memberships_for,
    parse_role_directory,
    verified_email,
)
from core.access.sign_in import oidc_configuration_problem
from core.settings import REPO_ROOT, ConfigurationError, load_settings, read_secrets_section
from tests.factories import make_team, make_tenant

ROLES = {
    "westside": {
        "admins": ["Ada@Westside.example"],
        "treasurers": ["tom@westside.example", "ada@westside.example"],
        "coaches": {"kim@westside.example": ["U12 Hawks", "u10  rockets", "No Such Team"]},
    },
    "eastside": {"treasurers": ["ada@westside.example"], "coaches": {"lee@east.example": "U14 Storm"}},
}


def test_the_strongest_role_in_each_league_wins_and_case_is_ignored():
    directory = parse_role_directory(ROLES)
    assert memberships_for(directory, " ADA@westside.example ") == [
        Membership("eastside", Role.TREASURER),
        Membership("westside", Role.ADMIN),
    ]


def test_a_coach_keeps_the_team_names_they_were_given():
    directory = parse_role_directory(ROLES)
    assert memberships_for(directory, "lee@east.example") == [Membership("eastside", Role.COACH, ("U14 Storm",))]


def test_an_address_listed_nowhere_has_no_membership():
    assert memberships_for(parse_role_directory(ROLES), "stranger@example.org") == []


def test_a_coach_is_mapped_to_the_ids_of_their_teams_whatever_the_spelling():
    membership = Membership("westside", Role.COACH, ("U12 Hawks", "u10  rockets", "No Such Team"))
    user = acting_user_for(
        membership, "Kim@westside.example", tenant_id=7, team_ids_by_name={"u12 hawks": 1, "u10 rockets": 2}
    )
    assert user is not None
    assert (user.identity, user.role, user.tenant_id, user.team_ids) == (
        "kim@westside.example", Role.COACH, 7, frozenset({1, 2}),
    )


def test_a_coach_whose_teams_all_are_unknown_gets_no_access():
    membership = Membership("westside", Role.COACH, ("No Such Team",))
    assert acting_user_for(membership, "kim@x.org", tenant_id=7, team_ids_by_name={"u12 hawks": 1}) is None


def test_roles_for_a_league_that_does_not_exist_give_no_access():
    assert acting_user_for(Membership("gone", Role.ADMIN), "a@x.org", tenant_id=None, team_ids_by_name={}) is None


@pytest.mark.parametrize(
    "section, complaint",
    [
        ({"westside": ["ada@x.org"]}, "must be a table"),
        ({"westside": {"admin": ["ada@x.org"]}}, "unknown keys"),
        ({"westside": {"admins": "ada@x.org"}}, "list of email addresses"),
        ({"westside": {"treasurers": ["not an address"]}}, "not an email address"),
        ({"westside": {"coaches": ["kim@x.org"]}}, "table of"),
        ({"westside": {"coaches": {"kim@x.org": []}}}, "list of team names"),
    ],
)
def test_a_malformed_roles_table_is_a_clear_configuration_error(section, complaint):
    with pytest.raises(ConfigurationError, match=complaint):
        parse_role_directory(section)


@pytest.mark.parametrize(
    "claims, expected",
    [
        ({"email": "Ada@X.org", "email_verified": True}, "ada@x.org"),
        ({"email": "ada@x.org", "email_verified": "true"}, "ada@x.org"),
        ({"email": "ada@x.org", "email_verified": "TRUE"}, "ada@x.org"),
        # A provider that does not send the claim does not vouch for the address: anyone could
        # have typed an admin's address into their account there.
        ({"email": "ada@x.org"}, None),
        ({"email": "ada@x.org", "email_verified": None}, None),
        ({"email": "ada@x.org", "email_verified": False}, None),
        ({"email": "ada@x.org", "email_verified": "false"}, None),
        ({"email": "ada@x.org", "email_verified": 0}, None),
        ({"email": "ada@x.org", "email_verified": 1}, None),
        ({"email": "ada@x.org", "email_verified": "1"}, None),
        ({"email": "ada@x.org", "email_verified": "no"}, None),
        ({"email": "ada@x.org", "email_verified": "yes"}, None),
        ({"email": "ada@x.org", "email_verified": "truly"}, None),
        ({"email": "ada@x.org", "email_verified": ["true"]}, None),
        ({"name": "Ada"}, None),
    ],
)
def test_only_a_verified_email_address_identifies_someone(claims, expected):
    assert verified_email(claims) == expected


@pytest.mark.parametrize(
    "claims, problem",
    [
        ({"email": "ada@x.org", "email_verified": True}, None),
        ({"email": "ada@x.org"}, EmailClaimProblem.NOT_VERIFIED),
        ({"email": "ada@x.org", "email_verified": "0"}, EmailClaimProblem.NOT_VERIFIED),
        ({"email": "not an address", "email_verified": True}, EmailClaimProblem.NO_EMAIL),
        ({"name": "Ada", "email_verified": True}, EmailClaimProblem.NO_EMAIL),
    ],
)
def test_the_reason_an_identity_is_refused_is_named(claims, problem):
    assert email_claim_problem(claims) is problem


def test_league_access_resolves_leagues_and_teams_from_the_database(session):
    west = make_tenant(session, "westside", name="Westside Youth Basketball")
    east = make_tenant(session, "eastside", name="Eastside Hoops")
    hawks = make_team(session, west, "U12 Hawks")
    rockets = make_team(session, west, "U10 Rockets")
    make_team(session, east, "U12 Hawks")  # same name in another league: never mixed up
    directory = parse_role_directory(ROLES)

    ada = league_access_for(session, directory, "ada@westside.example")
    assert [(a.league_name, a.user.role, a.user.tenant_id) for a in ada] == [
        ("Eastside Hoops", Role.TREASURER, east.id),
        ("Westside Youth Basketball", Role.ADMIN, west.id),
    ]
    (kim,) = league_access_for(session, directory, "kim@westside.example")
    assert kim.user.team_ids == frozenset({hawks.id, rockets.id})
    assert league_access_for(session, directory, "lee@east.example") == []  # no team "U14 Storm" there
    assert league_access_for(session, directory, "stranger@example.org") == []


def test_the_example_secrets_file_works_once_uncommented(tmp_path):
    example = (REPO_ROOT / ".streamlit" / "secrets.toml.example").read_text(encoding="utf-8")
    setting = re.compile(r'^# ((?:[A-Za-z_]\w*|"[^"]+") = .+|\[[\w.]+\])$')
    uncommented = "\n".join(line[2:] if setting.match(line) else line for line in example.splitlines())
    secrets_file = tmp_path / "secrets.toml"
    secrets_file.write_text(uncommented, encoding="utf-8")
    tomllib.loads(uncommented)  # valid TOML

    settings = load_settings(environ={}, secrets_file=secrets_file)
    assert settings.auth_mode == "oidc" and settings.email_backend == "file" and settings.smtp_port == 587
    assert oidc_configuration_problem(read_secrets_section("auth", secrets_file)) is None
    directory = parse_role_directory(read_secrets_section("roles", secrets_file))
    assert set(directory) == {"westside", "eastside"}
    assert memberships_for(directory, "lee@westside-hoops.example") == [
        Membership("westside", Role.COACH, ("U10 Rockets", "U10 Comets"))
    ]


def test_every_setting_is_documented_in_the_example_secrets_file():
    from dataclasses import fields

    from core.settings import Settings

    example = Path(REPO_ROOT / ".streamlit" / "secrets.toml.example").read_text(encoding="utf-8")
    missing = [f.name.upper() for f in fields(Settings) if f"# {f.name.upper()} = " not in example]
    assert missing == []
