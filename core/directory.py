"""Lists of a league's teams, products and parents, for pickers and filters."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.access import ActingUser, Permission, require
from core.models import Parent, Product, Team, Tenant


@dataclass(frozen=True)
class Choice:
    id: int
    label: str


def list_leagues(session: Session) -> list[Tenant]:
    """Every league, for the demo sign-in's league picker (before anyone acts; never shown in OIDC mode)."""
    return list(session.scalars(select(Tenant).order_by(Tenant.name)))


def league_teams(session: Session, tenant_id: int) -> list[Choice]:
    """The teams of a league by name, for sign-in (which teams a coach has); not scoped to a user."""
    rows = session.execute(select(Team.id, Team.name).where(Team.tenant_id == tenant_id).order_by(Team.name))
    return [Choice(id, name) for id, name in rows]


def visible_teams(session: Session, user: ActingUser) -> list[Choice]:
    """The teams the user may browse: a coach's own, everyone else all of the league's."""
    require(user, Permission.VIEW_BALANCES)
    teams = league_teams(session, user.tenant_id)
    return teams if user.sees_all_teams else [team for team in teams if team.id in user.team_ids]


def league_products(session: Session, user: ActingUser) -> list[Choice]:
    """The league's products by name, for the item filter."""
    require(user, Permission.VIEW_BALANCES)
    rows = session.execute(
        select(Product.id, Product.name).where(Product.tenant_id == user.tenant_id).order_by(Product.name)
    )
    return [Choice(id, name) for id, name in rows]


def league_parents(session: Session, user: ActingUser) -> list[Choice]:
    """Parents with their email, for pickers of people who may see contact details."""
    require(user, Permission.VIEW_CONTACT_DETAILS)
    rows = session.execute(
        select(Parent.id, Parent.name, Parent.email).where(Parent.tenant_id == user.tenant_id).order_by(Parent.name)
    )
    return [Choice(id, f"{name} <{email}>" if email else f"{name} (no email)") for id, name, email in rows]


def league_of(session: Session, user: ActingUser) -> Tenant:
    """The acting user's league."""
    require(user, Permission.VIEW_LEAGUE)
    tenant = session.get(Tenant, user.tenant_id)
    assert tenant is not None, "an acting user always belongs to an existing league"
    return tenant
