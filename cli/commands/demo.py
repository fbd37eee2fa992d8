"""``demo``: create and fill the demo league (safe to run again)."""

from __future__ import annotations

import argparse

from cli.context import open_database
from cli.output import shown
from core.db import unit_of_work
from core.demo import build_demo_league


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "demo",
        help="create and fill a demo league",
        description="Create the demo league (teams, ~150 players, ~100 parents, products, links) in the "
        "demo's own file, data/demo.db, unless DATABASE_URL names another database. Running it again "
        "leaves an existing demo league as it is.",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    services = open_database(demo=True)
    try:
        with unit_of_work(services.sessions) as session:
            summary = build_demo_league(session)
    finally:
        services.close()
    verb = "Created" if summary.created else "Already there:"
    print(
        f"{verb} demo league '{shown(summary.tenant_slug)}' with {summary.teams} teams, {summary.parents} parents, "
        f"{summary.players} players and {summary.links} payment links "
        f"({shown(services.settings.database_url_for_display())})."
    )
    return 0
