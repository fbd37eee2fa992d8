"""What every command needs: the database, the league, and the operator acting in it.

This is the command line's composition root: one ``Services`` (settings, engine, session
factory, adapters) per process, passed into the ``core`` workflows the commands present.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from cli.output import shown
from core.access.leagues import find_or_create_tenant, find_tenant
from core.access.permissions import ActingUser, cli_operator
from core.composition import Services, build_services
from core.db import upgrade_if_behind
from core.models import Tenant
from core.settings import Settings, load_settings
from core.setup.database_file import DEMO_DATABASE_URL, database_url_configured, holds_demo_league


@dataclass
class CommandContext:
    services: Services
    session: Session
    tenant: Tenant
    user: ActingUser
    # True when this command created the league (``create_league=True`` and it did not exist).
    tenant_created: bool = False

    @property
    def settings(self) -> Settings:
        return self.services.settings

    @property
    def engine(self) -> Engine:
        return self.services.engine


def add_tenant_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tenant", metavar="SLUG", help="the league to act in (may be left out when there is one)"
    )


def open_database(*, demo: bool = False) -> Services:
    """The services on a database migrated to the current schema.

    Without ``DATABASE_URL`` that is the real league's default file, or with ``demo`` (the
    ``demo`` command) the demo's own file, so made-up families never land in the real league's.
    A command that runs without ``DATABASE_URL`` on a database holding the demo league says so
    on stderr: a cron job would otherwise quietly act on made-up families.
    """
    settings = load_settings()
    configured = database_url_configured(os.environ)
    if demo and not configured:
        settings = replace(settings, database_url=DEMO_DATABASE_URL)
    services = build_services(settings)
    try:
        upgrade_if_behind(services.engine)  # one query of the schema version; Alembic only when behind
    except BaseException:
        services.close()
        raise
    if not demo and not configured:
        with services.sessions() as session:
            on_demo = holds_demo_league(session)
        if on_demo:
            print(f"note: DATABASE_URL is not set, so this runs on {shown(settings.database_url_for_display())}, "
                  "which holds the demo league (made-up families); set DATABASE_URL to your league's database, "
                  "or let bash scripts/start-league move the demo to its own file.", file=sys.stderr)
    return services


@contextmanager
def league_command(args: argparse.Namespace, *, create_league: bool = False,
                   stripe_action: str | None = None) -> Iterator[CommandContext]:
    """Open the league named by ``--tenant`` as the CLI operator. The caller commits.

    With ``create_league`` (the roster import) a league that does not exist yet is created
    in the session, named by ``--tenant`` or ``default``, when the database has no league yet
    or ``--new-league`` is given; it lands only if the caller commits.
    With ``stripe_action`` the Stripe gateway is built first (``ctx.services.payment_gateway``
    then returns it), so a missing key is the one error, naming the action, before the league
    is looked up.
    """
    services = open_database()
    try:
        if stripe_action is not None:
            services.payment_gateway(action=stripe_action)
        with services.sessions() as session:
            slug = getattr(args, "tenant", None)
            if create_league:
                tenant, created = find_or_create_tenant(
                    session, slug, new_league=bool(getattr(args, "new_league", False))
                )
            else:
                tenant, created = find_tenant(session, slug), False
            yield CommandContext(services, session, tenant, cli_operator(tenant.id), created)
    finally:
        services.close()
