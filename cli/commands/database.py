"""``db upgrade``: bring the database schema to the current version."""

from __future__ import annotations

import argparse

from cli.output import shown
from core.db import make_engine, upgrade_if_behind
from core.settings import load_settings


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = commands.add_parser("db", help="database schema", description="Database schema commands.")
    actions = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    upgrade = actions.add_parser("upgrade", help="migrate the database to the current schema")
    upgrade.set_defaults(handler=run_upgrade)


def run_upgrade(args: argparse.Namespace) -> int:
    settings = load_settings()
    engine = make_engine(settings.database_url)
    try:
        upgrade_if_behind(engine)
    finally:
        engine.dispose()
    print(f"Database is at the current schema: {shown(settings.database_url_for_display())}")
    return 0
