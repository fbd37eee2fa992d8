"""Benchmark: the balances name search on stored folded names, against folding every row.

Builds leagues of 10k and 50k families in a scratch PostgreSQL database (analyzed), then for a
few search terms prints the median time of ``outstanding_balances`` with that search, and of
the same query filtering as it used to (folding every joined name in SQL with ``translate``),
with the ratio; then the plan of one search, to check by hand that PostgreSQL looks the term
up in the trigram indexes (``ix_parents_search_name``, ``ix_players_search_name``).

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

from sqlalchemy import Engine, or_, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from bench.bench_balances import ADMIN_URL, build_league  # noqa: E402
from core.access.permissions import ActingUser, Role  # noqa: E402
from core.db import make_engine  # noqa: E402
from core.models import Parent, Player  # noqa: E402
from core.reporting.balances import (  # noqa: E402
    BalanceFilter,
    _balances_statement,
    _escape_like,
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


def folding_every_row(engine: Engine, user: ActingUser, term: str) -> int:
    """The search as it was: each joined name folded in SQL, compared with the folded term."""
    pattern = f"%{_escape_like(fold(term))}%"
    statement = _balances_statement(user, BalanceFilter()).where(or_(
        folded(Parent.name).like(pattern, escape="\\"),
        folded(Player.first_name + " " + Player.last_name).like(pattern, escape="\\"),
    ))
    with engine.connect() as connection:
        return len(connection.execute(statement).all())


def stored_names(engine: Engine, user: ActingUser, term: str) -> int:
    with Session(engine) as session:
        return sum(len(b.items) for b in outstanding_balances(session, user, BalanceFilter(parent_search=term)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with scratch_postgres_database(ADMIN_URL, "bench_name_search") as url:
        engine = make_engine(url)
        print(f"{'families':>8} {'search':<17} {'items':>6} | {'stored ms':>9} | {'folding ms':>10} | {'ratio':>6}")
        for size in args.sizes:
            with Session(engine) as session:
                user = ActingUser("bench", Role.TREASURER, build_league(session, size))
            with engine.begin() as connection:
                connection.execute(text("ANALYZE"))
            for term in TERMS:
                items = stored_names(engine, user, term)
                assert items == folding_every_row(engine, user, term), "both searches must agree"
                new = median_ms(partial(stored_names, engine, user, term), args.runs)
                old = median_ms(partial(folding_every_row, engine, user, term), args.runs)
                print(f"{size:>8} {term:<17} {items:>6} | {new:>9.1f} | {old:>10.1f} | {old / new:>5.1f}x")
        statement = _balances_statement(user, BalanceFilter(parent_search=TERMS[-1]))
        compiled = statement.compile(engine)
        with engine.connect() as connection:
            plan = [row[0] for row in connection.exec_driver_sql(f"EXPLAIN {compiled}", compiled.params)]
        print(f"\nPlan of the search {TERMS[-1]!r} at {args.sizes[-1]:,} families (the lines naming search_name):")
        print("\n".join(line for line in plan if "search_name" in line))
        engine.dispose()


if __name__ == "__main__":
    main()
