"""Benchmark: the balances from the ledger, against a raw SQL aggregate of the same ledger, on PostgreSQL.

Builds leagues of 10k and 50k families in a scratch database (every third family has two
players; 3 charges per player; 60% of the charges have a payment, a tenth of those partial;
10% have an adjustment; the charges still open have their active Pay Now link), then prints
for each size, in the same run, the median time of a raw SQL aggregate of the same ledger (what
each family owes: charges less what counting allocations settled, reversals excluded, in one
GROUP BY) and, with their statement counts and their ratios to it:

* every family's balance, as the raw aggregate gives it (one figure per family, here with the
  family's processing amount, item count, credit and balance link too): ``family_page`` of all
  the families, sorted by name;
* every family's balance with each of its open items (``outstanding_balances``: what the
  email audience, the email bodies and the statements read).

Goals: 10k under 200 ms, 50k under 600 ms, within 3x the raw aggregate.

    .venv/bin/python bench/bench_ledger_balances.py [--sizes 10000 50000] [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Engine, event, insert, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from core.access.permissions import ActingUser, Role  # noqa: E402
from core.db import make_engine, normalise_url  # noqa: E402
from core.ledger.positions import rebuild_positions  # noqa: E402
from core.models import Parent, Player, PlayerStatus, PriceTier, Product, ProductKind, Team, Tenant  # noqa: E402
from core.reporting.balances import family_page, outstanding_balances  # noqa: E402
from tests.scratch_database import scratch_postgres_database  # noqa: E402

ADMIN_URL = normalise_url(os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
AMOUNTS = (15000, 6000, 4500)

# The same ledger, aggregated by hand: per family, the charges' amounts less what counting
# allocations settled (an allocation counts unless it, its charge, its payment or its
# adjustment was reversed, or its payment failed), for families owing something.
RAW_AGGREGATE = text("""
    WITH void AS (SELECT reversed_entry_id AS id FROM reversals WHERE tenant_id = :tenant),
    settled AS (
        SELECT a.charge_id, sum(a.amount_cents) AS cents
        FROM allocations a LEFT JOIN payments p ON p.id = a.payment_id
        WHERE a.tenant_id = :tenant AND (p.id IS NULL OR p.state <> 'failed')
          AND a.id NOT IN (SELECT id FROM void) AND a.charge_id NOT IN (SELECT id FROM void)
          AND coalesce(a.payment_id, 0) NOT IN (SELECT id FROM void)
          AND coalesce(a.adjustment_id, 0) NOT IN (SELECT id FROM void)
        GROUP BY a.charge_id
    )
    SELECT c.parent_id, sum(c.amount_cents - coalesce(s.cents, 0)) AS owed
    FROM charges c LEFT JOIN settled s ON s.charge_id = c.id
    WHERE c.tenant_id = :tenant AND c.id NOT IN (SELECT id FROM void)
    GROUP BY c.parent_id
    HAVING sum(c.amount_cents - coalesce(s.cents, 0)) > 0
""")


def build_league(session: Session, families: int) -> int:
    tenant = Tenant(slug=f"bench-{families}", name=f"Bench {families}")
    session.add(tenant)
    session.flush()
    teams = [Team(tenant_id=tenant.id, name=f"Team {i}") for i in range(20)]
    products = [
        Product(tenant_id=tenant.id, name="Registration", kind=ProductKind.ONE_TIME, required=True),
        Product(tenant_id=tenant.id, name="Monthly dues", kind=ProductKind.MONTHLY, required=True),
        Product(tenant_id=tenant.id, name="Uniform", kind=ProductKind.ONE_TIME, required=False),
    ]
    session.add_all(teams + products)
    session.flush()
    tiers = [PriceTier(product_id=p.id, amount_cents=a, currency="usd", is_default=True)
             for p, a in zip(products, AMOUNTS, strict=True)]
    session.add_all(tiers)
    session.flush()
    parent_ids = session.scalars(
        insert(Parent).returning(Parent.id),
        [{"tenant_id": tenant.id, "name": f"Parent {i:06d}", "email": f"p{i}@example.org",
          "email_opt_out": False, "external_ref": f"P{i}"} for i in range(families)],
    ).all()
    player_rows = []
    for index, parent_id in enumerate(parent_ids):
        for child in range(2 if index % 3 == 0 else 1):
            player_rows.append({"tenant_id": tenant.id, "parent_id": parent_id, "team_id": teams[index % 20].id,
                                "first_name": f"Kid{child}", "last_name": f"Family{index}",
                                "status": PlayerStatus.SIGNED, "external_ref": f"K{index}-{child}"})
    for start in range(0, len(player_rows), 20_000):
        session.execute(insert(Player), player_rows[start:start + 20_000])
    session.flush()
    _fill_the_ledger(session, tenant.id, [p.id for p in products], [t.id for t in tiers])
    session.commit()
    return tenant.id


def _fill_the_ledger(session: Session, tenant_id: int, product_ids: list[int], tier_ids: list[int]) -> None:
    """The ledger in set-based SQL: ids given explicitly, the entry sequence moved past them."""
    run = session.execute
    params = {"tenant": tenant_id, "p0": product_ids[0], "p1": product_ids[1], "p2": product_ids[2],
              "t0": tier_ids[0], "t1": tier_ids[1], "t2": tier_ids[2]}
    base = run(text("SELECT coalesce(max(id), 0) FROM ledger_entries")).scalar_one()
    run(text("""
        CREATE TEMP TABLE bench_charges ON COMMIT DROP AS
        SELECT :base + row_number() OVER (ORDER BY p.id, g) AS id, p.parent_id, p.id AS player_id, g,
               (ARRAY[:p0, :p1, :p2])[g] AS product_id, (ARRAY[:t0, :t1, :t2])[g] AS tier_id,
               (ARRAY[15000, 6000, 4500])[g] AS amount
        FROM players p CROSS JOIN generate_series(1, 3) g WHERE p.tenant_id = :tenant
    """), {**params, "base": base})
    charges = run(text("SELECT count(*) FROM bench_charges")).scalar_one()
    # 60% paid (a tenth of those partly), 10% adjusted; decided by the charge id, deterministically.
    run(text("""
        CREATE TEMP TABLE bench_money ON COMMIT DROP AS
        SELECT c.id AS charge_id, c.parent_id, c.amount,
               CASE WHEN c.id % 100 < 60 THEN CASE WHEN c.id % 10 = 0 THEN c.amount / 2 ELSE c.amount END END
                   AS paid,
               CASE WHEN c.id % 100 >= 60 AND c.id % 100 < 70 THEN 1000 END AS adjusted,
               :base + row_number() OVER (ORDER BY c.id) * 4 AS first_id
        FROM bench_charges c
    """), {"base": base + charges})
    run(text("""
        INSERT INTO ledger_entries (id, tenant_id, parent_id, kind, origin, recorded_by, recorded_at)
        SELECT id, :tenant, parent_id, 'charge'::ledger_entry_kind, 'backfill'::ledger_entry_origin, 'bench', now() FROM bench_charges
        UNION ALL SELECT first_id, :tenant, parent_id, 'payment'::ledger_entry_kind, 'manual'::ledger_entry_origin, 'bench', now() FROM bench_money
            WHERE paid IS NOT NULL
        UNION ALL SELECT first_id + 1, :tenant, parent_id, 'allocation'::ledger_entry_kind, 'manual'::ledger_entry_origin, 'bench', now() FROM bench_money
            WHERE paid IS NOT NULL
        UNION ALL SELECT first_id + 2, :tenant, parent_id, 'adjustment'::ledger_entry_kind, 'manual'::ledger_entry_origin, 'bench', now() FROM bench_money
            WHERE adjusted IS NOT NULL
        UNION ALL SELECT first_id + 3, :tenant, parent_id, 'allocation'::ledger_entry_kind, 'manual'::ledger_entry_origin, 'bench', now() FROM bench_money
            WHERE adjusted IS NOT NULL
    """), params)
    run(text("""
        INSERT INTO charges (id, tenant_id, parent_id, player_id, purpose, product_id, charge_key, description,
                             amount_cents, currency, due_on)
        SELECT id, :tenant, parent_id, player_id, 'product'::charge_purpose, product_id, 'product' || chr(58) || 'pl' || player_id || chr(58) || 'pr' || product_id,
               'charge', amount, 'usd', current_date - (id % 60)::int FROM bench_charges
    """), params)
    run(text("""
        INSERT INTO payments (id, tenant_id, parent_id, method, amount_cents, currency, received_on, state)
        SELECT first_id, :tenant, parent_id, 'cash'::payment_method, paid, 'usd', current_date, 'settled'::payment_state FROM bench_money
        WHERE paid IS NOT NULL
    """), params)
    run(text("""
        INSERT INTO allocations (id, tenant_id, parent_id, charge_id, payment_id, amount_cents)
        SELECT first_id + 1, :tenant, parent_id, charge_id, first_id, paid FROM bench_money WHERE paid IS NOT NULL
    """), params)
    run(text("""
        INSERT INTO adjustments (id, tenant_id, parent_id, kind, amount_cents, currency, charge_id, reason)
        SELECT first_id + 2, :tenant, parent_id, 'discount'::adjustment_kind, adjusted, 'usd', charge_id, 'sibling discount'
        FROM bench_money WHERE adjusted IS NOT NULL
    """), params)
    run(text("""
        INSERT INTO allocations (id, tenant_id, parent_id, charge_id, adjustment_id, amount_cents)
        SELECT first_id + 3, :tenant, parent_id, charge_id, first_id + 2, adjusted FROM bench_money
        WHERE adjusted IS NOT NULL
    """), params)
    # Each charge still open has its active Pay Now link, for exactly what is open.
    run(text("""
        INSERT INTO payment_links (tenant_id, player_id, product_id, price_tier_id, amount_cents, currency,
                                   stripe_payment_link_id, url, status, created_at, processing, amount_mismatch,
                                   stripe_deactivation_pending, charge_id)
        SELECT :tenant, c.player_id, c.product_id, c.tier_id, c.amount - coalesce(m.paid, 0) - coalesce(m.adjusted, 0),
               'usd', 'plink_' || c.id, 'https://buy.stripe.com/b' || c.id, 'active'::payment_link_status, now(), false, false, false, c.id
        FROM bench_charges c JOIN bench_money m ON m.charge_id = c.id
        WHERE c.amount - coalesce(m.paid, 0) - coalesce(m.adjusted, 0) > 0
    """), params)
    last = run(text("SELECT max(id) FROM ledger_entries")).scalar_one()
    run(text("SELECT setval(pg_get_serial_sequence('ledger_entries', 'id'), :last)"), {"last": last})
    rebuild_positions(session, tenant_id)  # the ledger was written around the ORM


def measure(engine: Engine, fn: Callable[[Session], object], runs: int) -> tuple[float, int]:
    """Median seconds of ``fn(session)`` over ``runs`` (fresh session each) and its statement count."""
    counts: list[int] = []

    def count(*_: object) -> None:
        counts.append(1)

    event.listen(engine, "before_cursor_execute", count)
    times = []
    statements = 0
    try:
        for _ in range(runs):
            counts.clear()
            with Session(engine) as session:
                started = time.perf_counter()
                fn(session)
                times.append(time.perf_counter() - started)
            statements = len(counts)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return statistics.median(times), statements


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    with scratch_postgres_database(ADMIN_URL, "bench_ledger") as url:
        engine = make_engine(url)
        print(f"{'families':>8} {'charges':>8} {'open':>7} | {'raw SQL ms':>10} | "
              f"{'balances ms':>11} {'stmts':>5} {'ratio':>5} {'goal':>6} | "
              f"{'with items ms':>13} {'stmts':>5} {'ratio':>5} {'goal':>6}")
        for size in args.sizes:
            with Session(engine) as session:
                tenant_id = build_league(session, size)
            with engine.begin() as connection:
                connection.execute(text("ANALYZE"))
                charges = connection.execute(text("SELECT count(*) FROM charges WHERE tenant_id = :t"),
                                             {"t": tenant_id}).scalar_one()
            user = ActingUser("bench", Role.ADMIN, tenant_id)
            raw, _ = measure(engine, lambda s, t=tenant_id: s.execute(RAW_AGGREGATE, {"tenant": t}).all(), args.runs)
            figures, figure_statements = measure(
                engine, lambda s, user=user, size=size: family_page(s, user, limit=size), args.runs)
            itemized, item_statements = measure(engine, lambda s, user=user: outstanding_balances(s, user), args.runs)
            with Session(engine) as session:
                by_sql = dict(session.execute(RAW_AGGREGATE, {"tenant": tenant_id}).all())
                page = family_page(session, user, limit=size)
                balances = outstanding_balances(session, user)
            assert {f.parent_id: f.total_cents for f in page.families} == by_sql, "the figures must agree"
            assert {b.parent_id: b.total_cents for b in balances} == by_sql, "the itemized balances must agree"
            items = sum(len(b.items) for b in balances)
            goal = 200 if size <= 10_000 else 600

            def verdict(seconds: float, goal: int = goal, raw: float = raw) -> str:
                return "met" if seconds * 1000 < goal and seconds < 3 * raw else "MISSED"

            print(f"{size:>8} {charges:>8} {items:>7} | {raw * 1000:>10.1f} | "
                  f"{figures * 1000:>11.1f} {figure_statements:>5} {figures / raw:>4.1f}x {verdict(figures):>6} | "
                  f"{itemized * 1000:>13.1f} {item_statements:>5} {itemized / raw:>4.1f}x {verdict(itemized):>6}",
                  flush=True)
        print("goals: 10k under 200 ms, 50k under 600 ms, and within 3x the raw aggregate")
        engine.dispose()


if __name__ == "__main__":
    main()
