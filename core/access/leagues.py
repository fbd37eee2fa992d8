"""Finding the league a command or page acts in."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import InvalidInput, NotFound
from core.models import Tenant

DEFAULT_TENANT_SLUG = "default"
SLUG_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")


def find_tenant(session: Session, slug: str | None = None) -> Tenant:
    """The league called ``slug``; without a slug, the only league there is."""
    if slug:
        tenant = session.scalars(select(Tenant).where(Tenant.slug == slug)).one_or_none()
        if tenant is None:
            known = ", ".join(list_tenant_slugs(session)) or "none yet"
            raise NotFound(f"No league called {slug!r} (leagues: {known}).")
        return tenant
    tenants = session.scalars(select(Tenant).order_by(Tenant.slug).limit(2)).all()
    if not tenants:
        raise NotFound("There is no league yet: run `python -m core demo` or import a roster.")
    if len(tenants) > 1:
        known = ", ".join(list_tenant_slugs(session))
        raise InvalidInput(f"There are several leagues ({known}): choose one with --tenant SLUG.")
    return tenants[0]


def find_or_create_tenant(
    session: Session, slug: str | None = None, *, new_league: bool = False
) -> tuple[Tenant, bool]:
    """The league to import into: ``slug``, the only league, or a new one. Returns (tenant, created).

    A league is created only in a database that has none yet (called ``slug``, or ``default``)
    or when ``new_league`` says so: otherwise a mistyped slug would quietly start a second
    league, and every command without ``--tenant`` would then stop at "several leagues".
    """
    existing = session.scalars(select(Tenant).order_by(Tenant.slug).limit(2)).all()
    if not slug:
        if new_league:
            raise InvalidInput("--new-league needs --tenant SLUG: the new league's name.")
        if len(existing) == 1:
            return existing[0], False
        if len(existing) > 1:
            return find_tenant(session, None), False  # raises: ambiguous
        slug = DEFAULT_TENANT_SLUG
    tenant = session.scalars(select(Tenant).where(Tenant.slug == slug)).one_or_none()
    if tenant is not None:
        return tenant, False
    if existing and not new_league:
        known = ", ".join(list_tenant_slugs(session))
        raise NotFound(
            f"No league called {slug!r} (leagues: {known}). Check --tenant, or pass --new-league "
            f"to create a new league called {slug!r}."
        )
    if not SLUG_PATTERN.fullmatch(slug):
        raise InvalidInput(
            f"{slug!r} cannot name a league: use lower-case letters, digits and dashes "
            "(e.g. westside-hoops), starting with a letter or digit, at most 64 characters."
        )
    tenant = Tenant(slug=slug, name=slug.replace("-", " ").title())
    session.add(tenant)
    session.flush()
    return tenant, True


def list_tenant_slugs(session: Session) -> list[str]:
    return list(session.scalars(select(Tenant.slug).order_by(Tenant.slug)))
