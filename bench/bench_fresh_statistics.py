"""Benchmark: the balances right after a bulk write, before and after ``analyze_tables``.

Builds a league in a scratch PostgreSQL database with autovacuum off on its tables (so the
measurement is what a treasurer gets before autovacuum happens to come by, or in a database
nothing has analyzed, such as a restored dump), then times ``outstanding_balances`` as the
product reads it (a whole league: planned without nested loops, ``core.query_plans``) and the
same statement left to the planner, with the top of each plan: first as the bulk writes leave
the statistics, then after ``core.db.analyze_tables`` on the tables the roster import and the
backfill commit analyze. A statement that runs past ``--timeout`` seconds is reported as such.

    .venv/bin/python bench/bench_fresh_statistics.py [--sizes 1000 3000] [--timeout 120]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Engine, text  # noqa: E402
from sqlalchemy.exc import OperationalError  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from bench.bench_balances import ADMIN_URL, build_league  # noqa: E402
from core.access.permissions import ActingUser, Role  # noqa: E402
from core.db import analyze_tables, make_engine  # noqa: E402
from core.models import Charge, ChargePositionRow, LedgerEntry, PaymentLink, PriceTier  # noqa: E402
from core.query_plans import without_nested_loops  # noqa: E402
from core.reporting.balances import BalanceFilter, outstanding_balances, outstanding_rows  # noqa: E402
from core.roster.planning import PLANS  # noqa: E402
from tests.scratch_database import scratch_postgres_database  # noqa: E402

# What the roster import (each kind of file) and the backfill commit analyze.
WRITTEN = sorted({table for plan in PLANS.values() for table in plan.writes}
                 | {PaymentLink.__tablename__, PriceTier.__tablename__, Charge.__tablename__,
                    LedgerEntry.__tablename__, ChargePositionRow.__tablename__})


def timed(engine: Engine, user: ActingUser, timeout: int, *, as_the_product_reads: bool) -> tuple[str, str]:
    """The balances' time (or that they timed out) and the first lines of their statement's
    plan: as ``outstanding_balances`` reads them, or the statement left to the planner."""
    statement = outstanding_rows(user, BalanceFilter(), list)  # the rows outstanding_balances is built from
    with Session(engine) as session:
        connection = session.connection()
        connection.execute(text(f"SET statement_timeout = '{timeout}s'"))
        with without_nested_loops(connection, when=as_the_product_reads):
            plan = [row[0] for row in connection.execute(
                text("EXPLAIN " + str(statement.compile(engine, compile_kwargs={"literal_binds": True}))))]
        started = time.perf_counter()
        try:
            if as_the_product_reads:
                outstanding_balances(session, user)
            else:
                connection.execute(statement).all()
            took = f"{(time.perf_counter() - started) * 1000:,.0f} ms"
        except OperationalError:
            took = f"> {timeout} s"
    return took, " / ".join(line.strip().split("  (")[0] for line in plan[:4])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000])
    parser.add_argument("--timeout", type=int, default=120, help="seconds before a statement is stopped")
    args = parser.parse_args()
    for size in args.sizes:
        with scratch_postgres_database(ADMIN_URL, "bench_fresh_statistics") as url:
            engine = make_engine(url)
            with engine.begin() as connection:
                for table in WRITTEN:
                    connection.execute(text(f"ALTER TABLE {table} SET (autovacuum_enabled = false)"))
            with Session(engine) as session:
                tenant_id = build_league(session, size)
            # The rows ``outstanding_balances`` is built from, every column: its one statement.
            user = ActingUser("bench", Role.TREASURER, tenant_id)
            fresh, fresh_plan = timed(engine, user, args.timeout, as_the_product_reads=True)
            alone, alone_plan = timed(engine, user, args.timeout, as_the_product_reads=False)
            analyze_tables(engine, WRITTEN)
            analyzed, analyzed_plan = timed(engine, user, args.timeout, as_the_product_reads=True)
            print(f"{size:,} families, {size * 3:,} links")
            print(f"  right after the writes, as the product reads:   {fresh:>10}  {fresh_plan}")
            print(f"  right after the writes, left to the planner:    {alone:>10}  {alone_plan}")
            print(f"  after analyze_tables, as the product reads:     {analyzed:>10}  {analyzed_plan}")
            engine.dispose()


if __name__ == "__main__":
    main()
