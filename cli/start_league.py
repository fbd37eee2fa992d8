"""``python -m cli.start_league``: ready the database of your own league (``bash scripts/start-league``).

Without ``DATABASE_URL`` that is ``data/league.db``; a demo league an earlier start-demo left
there is moved to the demo's own file first, so your league never starts among made-up
families. The database is migrated to the current schema; the dashboard then asks for the
league's name on its first run.
"""

from __future__ import annotations

import os
import sys

from cli.output import shown
from core.db import make_engine, session_factory, upgrade_database
from core.settings import ConfigurationError, load_settings
from core.setup.database_file import database_url_configured, holds_demo_league, move_demo_out_of_the_league_file


def main() -> int:
    try:
        if not database_url_configured(os.environ):
            moved = move_demo_out_of_the_league_file()
            if moved:
                print(shown(moved))
        settings = load_settings()
        upgrade_database(settings.database_url)
    except ConfigurationError as exc:
        print(f"error: {shown(exc)}", file=sys.stderr)
        return 1
    engine = make_engine(settings.database_url)
    try:
        with session_factory(engine)() as session:
            on_demo = holds_demo_league(session)
    finally:
        engine.dispose()
    where = shown(settings.database_url_for_display())
    if on_demo:
        print(f"note: {where} (your DATABASE_URL) holds the demo league.", file=sys.stderr)
    print(f"Your league's database: {where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
