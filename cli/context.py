"""What every command needs: the database, the league, and the operator acting in it."""

from __future__ import annotations

import argparse
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, cli_operator
from core.db import make_engine, session_factory, upgrade_database
from core.models import Tenant
from core.settings import Settings, load_settings
from core.access.leagues import find_or_create_tenant, find_tenant


@dataclass
class CommandContext:
    settings: Settings
    engine: Engine
    session: Session
    tenant: Tenant
    user: ActingUser
    # True when this command created the league (``create_league=True`` and it did not exist).
    tenant_created: bool = False


def add_tenant_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tenant", metavar="SLUG", help="the league to act in (may be left out when there is one)"
    )


def open_database() -> tuple[Settings, Engine]:
    """Settings and an engine on a database migrated to the current schema."""
    settings = load_settings()
    upgrade_database(settings.database_url)
    return settings, make_engine(settings.database_url)


@contextmanager
def league_command(args: argparse.Namespace, *, create_league: bool = False) -> Iterator[CommandContext]:
    """Open the league named by ``--tenant`` as the CLI operator. The caller commits.

    With ``create_league`` (the roster import) a league that does not exist yet is created
    in the session, named by ``--tenant`` or ``default``; it lands only if the caller commits.
    """
    settings, engine = open_database()
    try:
        with session_factory(engine)() as session:
            slug = getattr(args, "tenant", None)
            if create_league:
                tenant, created = find_or_create_tenant(session, slug)
            else:
                tenant, created = find_tenant(session, slug), False
            yield CommandContext(settings, engine, session, tenant, cli_operator(tenant.id), created)
    finally:
        engine.dispose()
