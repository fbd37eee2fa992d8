"""Lists of a league's teams and products for pickers and filters, and finding a parent by reference."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, Permission, find_in_league, require
from core.errors import InvalidInput, NotFound
from core.models import Parent, Product, Team, Tenant
from core.reporting.name_search import contains_pattern

# Ids are 32-bit integers (PostgreSQL's integer); a longer number cannot be one.
_LARGEST_ID = 2**31 - 1


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


def families_named(session: Session, user: ActingUser, search: str = "", *, limit: int = 50,
                   first: int | None = None) -> list[Choice]:
    """The league's families whose name holds ``search`` (any case or accents), by name, at most
    ``limit``, and the family ``first`` (the one a page shows) before them whatever the search:
    the family page's picker. Names only; the statement is ``family_statement``'s."""
    require(user, Permission.VIEW_LEDGER)
    statement = select(Parent.id, Parent.name).where(Parent.tenant_id == user.tenant_id)
    if search.strip():
        statement = statement.where(Parent.search_name.like(contains_pattern(search), escape="\\"))
    found = [Choice(id, name) for id, name in session.execute(statement.order_by(Parent.name, Parent.id).limit(limit))]
    if first is None or any(choice.id == first for choice in found):
        return found
    shown = session.execute(
        select(Parent.id, Parent.name).where(Parent.tenant_id == user.tenant_id, Parent.id == first)
    ).first()
    return ([Choice(shown[0], shown[1])] if shown else []) + found


def find_parent(session: Session, user: ActingUser, reference: str) -> Parent:
    """The parent of the user's league named by ``reference``, as an operator would name them.

    ``reference`` is the parent's id, their ``parent_ref`` from the roster (``PA-501``) or
    their email address in any case. ``NotFound`` when it names nobody in this league;
    ``InvalidInput`` when it names more than one (two parents sharing an address).
    """
    require(user, Permission.VIEW_CONTACT_DETAILS)
    text = reference.strip()
    found = {
        parent.id: parent
        for parent in session.scalars(
            select(Parent).where(
                Parent.tenant_id == user.tenant_id,
                or_(Parent.external_ref == text, func.lower(Parent.email) == text.lower()),
            )
        )
    }
    if text.isascii() and text.isdigit() and int(text) <= _LARGEST_ID:
        try:
            by_id = find_in_league(session, user, Parent, int(text), label="parent")
            found[by_id.id] = by_id
        except NotFound:
            pass
    if not found:
        raise NotFound(f"No parent {text!r} in this league: give their id, parent_ref or email address.")
    if len(found) > 1:
        named = "; ".join(
            f"{p.name} (id {p.id}" + (f", parent_ref {p.external_ref})" if p.external_ref else ")")
            for p in sorted(found.values(), key=lambda p: p.id)
        )
        raise InvalidInput(
            f"{text!r} names {len(found)} parents in this league ({named}): give their parent_ref or id."
        )
    return next(iter(found.values()))


def league_of(session: Session, user: ActingUser) -> Tenant:
    """The acting user's league."""
    require(user, Permission.VIEW_LEAGUE)
    tenant = session.get(Tenant, user.tenant_id)
    assert tenant is not None, "an acting user always belongs to an existing league"
    return tenant
