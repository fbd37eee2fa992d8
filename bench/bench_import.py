"""Roster import speed and memory on PostgreSQL: 10,000 and 100,000 player rows.

Creates a scratch database, imports generated players files into it and drops it.
Each size runs in its own process so its peak memory is its own. Prints rows per second
for a preview of a new file, its commit, a re-import of the same file (all unchanged) and
an import where one row in ten changed, with the peak resident memory of the process.

    .venv/bin/python bench/bench_import.py [--sizes 10000 100000] [--postgres URL]

``BENCH_POSTGRES_URL`` (default: the local server, user postgres) names the server.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy.engine import make_url  # noqa: E402

from core.db import make_engine, session_factory  # noqa: E402
from tests.scratch_database import scratch_postgres_database  # noqa: E402

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
HEADER = "player_ref,first_name,last_name,status,team,parent_ref,parent_name,parent_email\n"
FIRST = ["Maya", "Daniel", "Liam", "Zoë", "Noah", "Sofia", "Ava", "Jordan", "Léa", "Seán", "Amara", "Kenji"]
LAST = ["Okafor", "O'Brien", "Lefèvre", "García", "Chen", "Williams", "Reyes", "Novak", "Haddad", "Kim"]


def write_players_file(path: Path, rows: int, *, changed_every: int = 0, seed: int = 7) -> None:
    """A players file of ``rows`` players, about 1.6 per family; every ``changed_every``-th moves team."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write(HEADER)
        family = 0
        for n in range(rows):
            if n == 0 or rng.random() < 0.62:
                family += 1
            last = LAST[family % len(LAST)]
            team = f"U{8 + 2 * (n % 5)} Team {n % 40}"
            if changed_every and n % changed_every == 0:
                team = f"U{8 + 2 * (n % 5)} Team {(n + 1) % 40}"
            status = "withdrawn" if n % 50 == 0 else "signed" if n % 7 else "prospect"
            email = "" if family % 20 == 0 else f"parent{family}@example.org"
            handle.write(
                f"K{n},{FIRST[n % len(FIRST)]},{last},{status},{team},P{family},Parent {family} {last},{email}\n"
            )


def run_size(rows: int, url: str) -> None:
    """One size, in this process: prints one line per step."""
    from core.access.leagues import find_or_create_tenant
    from core.access.permissions import cli_operator
    from core.roster.importing import import_roster

    engine = make_engine(url)
    with tempfile.TemporaryDirectory() as folder:
        original, changed = Path(folder, "players.csv"), Path(folder, "players-changed.csv")
        write_players_file(original, rows)
        write_players_file(changed, rows, changed_every=10)
        with session_factory(engine)() as session:
            tenant, _ = find_or_create_tenant(session, f"bench-{rows}", new_league=True)
            session.commit()
            user = cli_operator(tenant.id)
        baseline_mb = _peak_rss_mb()
        steps = [
            ("preview, all new", original, False),
            ("commit, all new", original, True),
            ("re-import, all unchanged", original, True),
            ("commit, 1 in 10 changed", changed, True),
        ]
        for label, path, commit in steps:
            with session_factory(engine)() as session:
                started = time.perf_counter()
                result = import_roster(session, user, path, commit=commit)
                session.commit()
                elapsed = time.perf_counter() - started
            assert result.ok, result.errors[:3]
            players = result.counts["players"]
            print(
                f"{rows:>7,} rows  {label:<26} {elapsed:6.2f} s  {rows / elapsed:>9,.0f} rows/s  "
                f"(players {players.created} new, {players.updated} updated, {players.unchanged} unchanged)",
                flush=True,
            )
    print(f"{rows:>7,} rows  peak memory {_peak_rss_mb():.0f} MB resident (was {baseline_mb:.0f} MB before importing)")
    engine.dispose()


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--postgres", default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_ADMIN_URL))
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_size(args.child, args.database)
        return 0

    with scratch_postgres_database(args.postgres, "bench_import") as url:
        print(f"Roster import benchmark on PostgreSQL ({make_url(url).render_as_string(hide_password=True)})")
        for rows in args.sizes:
            subprocess.run(
                [sys.executable, __file__, "--child", str(rows), "--database", url], check=True
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
