"""Benchmark: the balances name search on stored folded names, against folding every row.

Builds leagues of 10k and 50k families in a scratch PostgreSQL database (analyzed), then for a
few search terms prints the median time of finding the players the search names (a player or
their parent named so) on the stored folded names, and as it used to be done (folding every
joined name in SQL with ``translate``), with the ratio, and the median time of
``outstanding_balances`` with that search; then the plan of one search, to check by hand that
PostgreSQL looks the term up in the trigram indexes (``ix_parents_search_name``,
``ix_players_search_name``).

    .venv/bin/python bench/bench_name_search.py [--sizes 10000 50000] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Engine, and_, or_, select, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from bench.bench_balances import ADMIN_URL, build_league  # noqa: E402
from core.access.permissions import ActingUser, Role  # noqa: E402
from core.db import make_engine  # noqa: E402
from core.models import Parent, Player  # noqa: E402
from core.reporting.balances import (  # noqa: E402
    BalanceFilter,
    _escape_like,
    _players_named,
    outstanding_balances,
)
from core.reporting.name_search import fold, folded  # noqa: E402
from tests.scratch_database import scratch_postgres_database  # noqa: E402

# A few families, a hundred families, nobody, and one child of a few families.
TERMS = ("family4242", "parent 0012", "zz", "kid1 family4998")


def median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def folding_every_row(engine: Engine, user: ActingUser, term: str) -> set[int]:
    """The players the search names, as it was done: each joined name folded in SQL, compared
    with the folded term."""
    pattern = f"%{_escape_like(fold(term))}%"
    statement = (
        select(Player.id)
        .join(Parent, and_(Parent.id == Player.parent_id, Parent.tenant_id == user.tenant_id))
        .where(Player.tenant_id == user.tenant_id, or_(
            folded(Parent.name).like(pattern, escape="\\"),
            folded(Player.first_name + " " + Player.last_name).like(pattern, escape="\\"),
        ))
    )
    with engine.connect() as connection:
        return set(connection.execute(statement).scalars())


def stored_names(engine: Engine, user: ActingUser, term: str) -> set[int]:
    """The players the search names, found on the stored folded names (as the balances do)."""
    with engine.connect() as connection:
        return set(connection.execute(_players_named(user, term)).scalars())


def balances_found(engine: Engine, user: ActingUser, term: str) -> int:
    with Session(engine) as session:
        return sum(len(b.items) for b in outstanding_balances(session, user, BalanceFilter(parent_search=term)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with scratch_postgres_database(ADMIN_URL, "bench_name_search") as url:
        engine = make_engine(url)
        print(f"{'families':>8} {'search':<17} {'players':>7} | {'stored ms':>9} | {'folding ms':>10} | "
              f"{'ratio':>6} | {'balances ms':>11} {'items':>6}")
        for size in args.sizes:
            with Session(engine) as session:
                user = ActingUser("bench", Role.TREASURER, build_league(session, size))
            with engine.begin() as connection:
                connection.execute(text("ANALYZE"))
            for term in TERMS:
                players = stored_names(engine, user, term)
                assert players == folding_every_row(engine, user, term), "both searches must agree"
                new = median_ms(partial(stored_names, engine, user, term), args.runs)
                old = median_ms(partial(folding_every_row, engine, user, term), args.runs)
                balances = median_ms(partial(balances_found, engine, user, term), args.runs)
                items = balances_found(engine, user, term)
                print(f"{size:>8} {term:<17} {len(players):>7} | {new:>9.1f} | {old:>10.1f} | {old / new:>5.1f}x | "
                      f"{balances:>11.1f} {items:>6}", flush=True)
        compiled = _players_named(user, TERMS[-1]).compile(engine)
        with engine.connect() as connection:
            plan = [row[0] for row in connection.exec_driver_sql(f"EXPLAIN {compiled}", compiled.params)]
        print(f"\nPlan of the search {TERMS[-1]!r} at {args.sizes[-1]:,} families (the lines naming search_name):")
        print("\n".join(line for line in plan if "search_name" in line))
        engine.dispose()


if __name__ == "__main__":
    main()
