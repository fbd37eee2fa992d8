"""Who may use which league, in which role: the ``[roles.<league-slug>]`` tables of secrets.toml.

Sign-in (OIDC) proves an email address; this module turns that address into an
``ActingUser`` per league. One table per league, keyed by the league's slug::

    [roles.westside]
    admins = ["ada@westside-hoops.org"]
    treasurers = ["tom@westside-hoops.org"]

    [roles.westside.coaches]
    "coach.kim@westside-hoops.org" = ["U12 Hawks", "U10 Rockets"]

Addresses are compared without regard to case. Someone listed twice in one league gets
the strongest role (admin, then treasurer, then coach). A coach is limited to the teams
named for them; names that match no team are ignored (and logged).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, Role
from core.models import Team, Tenant
from core.settings import ConfigurationError

logger = logging.getLogger(__name__)

_LIST_KEYS = {"admins": Role.ADMIN, "treasurers": Role.TREASURER}
_KNOWN_KEYS = {*_LIST_KEYS, "coaches"}
_STRENGTH = {Role.ADMIN: 3, Role.TREASURER: 2, Role.COACH: 1}


@dataclass(frozen=True)
class LeagueRoles:
    """The people configured for one league."""

    slug: str
    admins: frozenset[str] = frozenset()
    treasurers: frozenset[str] = frozenset()
    coaches: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # email -> team names


@dataclass(frozen=True)
class Membership:
    """One person's role in one league, as configured (team names, not ids yet)."""

    league_slug: str
    role: Role
    team_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class LeagueAccess:
    """A league the signed-in person may act in, and who they are there."""

    league_slug: str
    league_name: str
    user: ActingUser


def normalise_email(address: str) -> str:
    return address.strip().lower()


class EmailClaimProblem(enum.Enum):
    """Why a signed-in identity does not identify anyone (the page puts it into words)."""

    NO_EMAIL = "no_email"  # no ``email`` claim, or one that is not an address
    NOT_VERIFIED = "not_verified"  # ``email_verified`` is not an explicit true


def email_claim_problem(claims: Mapping[str, Any]) -> EmailClaimProblem | None:
    """Why the OIDC ``claims`` do not prove an email address, or None when they do.

    Only an explicit true ``email_verified`` (the boolean, or the string ``"true"`` in any
    case) counts. A missing claim counts as unverified: with a provider that omits it,
    anyone who put an admin's address on their account there would sign in as that admin.
    ``1``, ``"1"`` and ``"yes"`` are refused too: the claim is a boolean in OpenID Connect.
    """
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email:
        return EmailClaimProblem.NO_EMAIL
    verified = claims.get("email_verified")
    if verified is True or (isinstance(verified, str) and verified.lower() == "true"):
        return None
    return EmailClaimProblem.NOT_VERIFIED


def verified_email(claims: Mapping[str, Any]) -> str | None:
    """The email address of an OIDC identity, or None unless it is explicitly verified."""
    if email_claim_problem(claims) is not None:
        return None
    return normalise_email(str(claims["email"]))


def parse_role_directory(section: Mapping[str, Any]) -> dict[str, LeagueRoles]:
    """The ``[roles]`` table of secrets.toml, checked; raises ``ConfigurationError`` when malformed."""
    directory: dict[str, LeagueRoles] = {}
    for slug, table in section.items():
        if not isinstance(table, Mapping):
            raise ConfigurationError(f"[roles.{slug}] must be a table with admins, treasurers and coaches")
        unknown = set(table) - _KNOWN_KEYS
        if unknown:
            raise ConfigurationError(
                f"[roles.{slug}] has unknown keys {sorted(unknown)}; use admins, treasurers and coaches"
            )
        directory[str(slug)] = LeagueRoles(
            slug=str(slug),
            admins=frozenset(_addresses(table.get("admins", []), f"roles.{slug}.admins")),
            treasurers=frozenset(_addresses(table.get("treasurers", []), f"roles.{slug}.treasurers")),
            coaches=_coaches(table.get("coaches", {}), f"roles.{slug}.coaches"),
        )
    return directory


def memberships_for(directory: Mapping[str, LeagueRoles], email: str) -> list[Membership]:
    """Every league where ``email`` has a role, with the strongest role there, by slug."""
    address = normalise_email(email)
    found: list[Membership] = []
    for slug in sorted(directory):
        league = directory[slug]
        candidates = []
        if address in league.admins:
            candidates.append(Membership(slug, Role.ADMIN))
        if address in league.treasurers:
            candidates.append(Membership(slug, Role.TREASURER))
        if address in league.coaches:
            candidates.append(Membership(slug, Role.COACH, league.coaches[address]))
        if candidates:
            found.append(max(candidates, key=lambda membership: _STRENGTH[membership.role]))
    return found


def acting_user_for(
    membership: Membership,
    email: str,
    *,
    tenant_id: int | None,
    team_ids_by_name: Mapping[str, int],
) -> ActingUser | None:
    """The ``ActingUser`` of a membership, or None when the league or (for a coach) every team is unknown.

    ``team_ids_by_name`` maps the league's team names, folded by ``team_key``, to their ids.
    """
    if tenant_id is None:
        logger.warning("roles are configured for league %r, which does not exist", membership.league_slug)
        return None
    team_ids: frozenset[int] = frozenset()
    if membership.role is Role.COACH:
        known = {name: team_ids_by_name.get(team_key(name)) for name in membership.team_names}
        missing = sorted(name for name, team_id in known.items() if team_id is None)
        if missing:
            logger.warning("league %r has no team called %s", membership.league_slug, ", ".join(missing))
        team_ids = frozenset(team_id for team_id in known.values() if team_id is not None)
        if not team_ids:
            return None
    return ActingUser(
        identity=normalise_email(email), role=membership.role, tenant_id=tenant_id, team_ids=team_ids
    )


def league_access_for(
    session: Session, directory: Mapping[str, LeagueRoles], email: str
) -> list[LeagueAccess]:
    """The leagues a signed-in address may act in, by league name (two queries).

    This is sign-in itself, so it takes no acting user: it decides who the user is.
    """
    memberships = memberships_for(directory, email)
    if not memberships:
        return []
    slugs = [membership.league_slug for membership in memberships]
    tenants = {
        tenant.slug: tenant for tenant in session.scalars(select(Tenant).where(Tenant.slug.in_(slugs)))
    }
    teams: dict[int, dict[str, int]] = {}
    if tenants:
        tenant_ids = [tenant.id for tenant in tenants.values()]
        for tenant_id, team_id, name in session.execute(
            select(Team.tenant_id, Team.id, Team.name).where(Team.tenant_id.in_(tenant_ids))
        ):
            teams.setdefault(tenant_id, {}).setdefault(team_key(name), team_id)
    access: list[LeagueAccess] = []
    for membership in memberships:
        tenant = tenants.get(membership.league_slug)
        user = acting_user_for(
            membership,
            email,
            tenant_id=tenant.id if tenant else None,
            team_ids_by_name=teams.get(tenant.id, {}) if tenant else {},
        )
        if user is not None and tenant is not None:
            access.append(LeagueAccess(league_slug=tenant.slug, league_name=tenant.name, user=user))
    return sorted(access, key=lambda item: (item.league_name.lower(), item.league_slug))


def team_key(name: str) -> str:
    """A team name folded for matching configuration to the roster: case and spacing ignored."""
    return " ".join(name.split()).casefold()


def _addresses(value: Any, where: str) -> Iterable[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigurationError(f"{where} must be a list of email addresses")
    for item in value:
        if "@" not in item:
            raise ConfigurationError(f"{where} has an entry that is not an email address")
        yield normalise_email(item)


def _coaches(value: Any, where: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(f'{where} must be a table of "email" = ["team name", ...]')
    coaches: dict[str, tuple[str, ...]] = {}
    for address, teams in value.items():
        if "@" not in str(address):
            raise ConfigurationError(f"{where} has a key that is not an email address")
        if isinstance(teams, str):
            teams = [teams]
        if not isinstance(teams, list) or not teams or not all(isinstance(team, str) for team in teams):
            raise ConfigurationError(f"{where} must give each coach a list of team names")
        coaches[normalise_email(str(address))] = tuple(teams)
    return coaches
