"""Which database file holds which league: the demo's own file, and the real league's default one.

``bash scripts/start-demo`` keeps the demo league in ``data/demo.db``; the product's default
``DATABASE_URL`` (``data/league.db``), which ``bash scripts/start-league`` and every command
without ``DATABASE_URL`` use, is the real league's. Before the demo had a file of its own it
was made in ``data/league.db``: ``move_demo_out_of_the_league_file`` moves such a file to
``data/demo.db`` so a real league never starts among made-up families, and the command line
says on stderr when it runs, without ``DATABASE_URL``, on a database that holds the demo league.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from core.db import make_engine, session_factory
from core.models import Tenant
from core.settings import DEFAULT_SQLITE_PATH, REPO_ROOT, SECRETS_FILE, ConfigurationError

DEMO_SQLITE_PATH = REPO_ROOT / "data" / "demo.db"
DEMO_DATABASE_URL = f"sqlite:///{DEMO_SQLITE_PATH}"
_SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def database_url_configured(environ: Mapping[str, str], secrets_file: Path | None = None) -> bool:
    """Whether ``DATABASE_URL`` is set in ``environ`` or at the top of ``secrets.toml``."""
    if environ.get("DATABASE_URL"):
        return True
    path = SECRETS_FILE if secrets_file is None else secrets_file
    try:
        with path.open("rb") as handle:
            return bool(tomllib.load(handle).get("DATABASE_URL"))
    except (OSError, tomllib.TOMLDecodeError):
        return False


def holds_demo_league(session: Session) -> bool:
    """Whether the database holds the demo league (made-up families)."""
    from core.demo import DEMO_SLUG  # the demo's makings, only when a database is looked at for it

    if not inspect(session.connection()).has_table(Tenant.__tablename__):
        return False
    return session.scalar(select(Tenant.id).where(Tenant.slug == DEMO_SLUG).limit(1)) is not None


def move_demo_out_of_the_league_file(
    league_file: Path = DEFAULT_SQLITE_PATH, demo_file: Path = DEMO_SQLITE_PATH
) -> str | None:
    """If ``league_file`` holds the demo league and no other, move it to ``demo_file``; what was done.

    ``None`` when there is nothing to move (no file, or a league of one's own in it).
    ``ConfigurationError`` saying what to do when it cannot move it: another league is in the
    file too, the demo's file exists already, or the file is in use (SQLite's write-ahead log
    is still there, so a dashboard or command may have it open).
    """
    from core.demo import DEMO_SLUG

    if not league_file.is_file():
        return None
    engine = make_engine(f"sqlite:///{league_file}")
    try:
        with session_factory(engine)() as session:
            if not holds_demo_league(session):
                return None
            others = session.scalars(select(Tenant.slug).where(Tenant.slug != DEMO_SLUG)).all()
    finally:
        engine.dispose()
    if others:
        raise ConfigurationError(
            f"{league_file} holds the demo league and your league(s) {', '.join(others)}; remove the demo "
            "league from it, or start with DATABASE_URL naming another file.")
    if demo_file.exists():
        raise ConfigurationError(
            f"{league_file} holds the demo league, and {demo_file} (the demo's file now) exists too; remove or "
            f"rename one of them, or start with DATABASE_URL naming another file.")
    in_use = [league_file.with_name(league_file.name + suffix) for suffix in _SQLITE_COMPANIONS]
    if any(path.exists() and path.stat().st_size for path in in_use):
        raise ConfigurationError(
            f"{league_file} holds the demo league and is in use: stop the demo dashboard first, then start again.")
    for path in in_use:
        if path.exists():
            path.unlink()
    os.replace(league_file, demo_file)
    return (f"Moved the demo league from {league_file} to {demo_file}, where the demo is kept now; "
            f"{league_file} is for your own league.")
