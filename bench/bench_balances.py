"""Benchmark: the balances function against the seed's naive walk, on PostgreSQL.

Builds leagues of 1k, 10k and 50k parents (3 active links each, siblings included, each with
its ledger charge) in a scratch database, then prints for each size the median time of ``outstanding_balances``,
its statement count, and the same for the naive way (load the links, then walk
``link.player.parent`` per row), with the ratio.

    .venv/bin/python bench/bench_balances.py [--sizes 1000 10000 50000] [--naive-max 10000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import event, insert, select, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from core.access.permissions import ActingUser, Role  # noqa: E402
from core.db import make_engine, normalise_url  # noqa: E402
from core.ledger.positions import rebuild_positions  # noqa: E402
from core.models import (  # noqa: E402
    LinkStatus,
    Parent,
    PaymentLink,
    Player,
    PlayerStatus,
    PriceTier,
    Product,
    ProductKind,
    Team,
    Tenant,
)
from core.reporting.balances import outstanding_balances  # noqa: E402
from tests.scratch_database import scratch_postgres_database  # noqa: E402

ADMIN_URL = normalise_url(os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))


def build_league(session: Session, parents: int) -> int:
    tenant = Tenant(slug=f"bench-{parents}", name=f"Bench {parents}")
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
             for p, a in zip(products, (15000, 6000, 4500), strict=True)]
    session.add_all(tiers)
    session.flush()
    parent_ids = session.scalars(
        insert(Parent).returning(Parent.id),
        [{"tenant_id": tenant.id, "name": f"Parent {i:06d}", "email": f"p{i}@example.org",
          "email_opt_out": False, "external_ref": f"P{i}"} for i in range(parents)],
    ).all()
    # Every third parent has two children; each parent ends up with exactly 3 active links.
    player_rows = []
    for index, parent_id in enumerate(parent_ids):
        for child in range(2 if index % 3 == 0 else 1):
            player_rows.append({"tenant_id": tenant.id, "parent_id": parent_id, "team_id": teams[index % 20].id,
                                "first_name": f"Kid{child}", "last_name": f"Family{index}",
                                "status": PlayerStatus.SIGNED, "external_ref": f"K{index}-{child}"})
    player_ids = session.scalars(insert(Player).returning(Player.id), player_rows).all()
    by_parent: dict[int, list[int]] = {}
    for row, player_id in zip(player_rows, player_ids, strict=True):
        by_parent.setdefault(row["parent_id"], []).append(player_id)
    link_rows = []
    for kids in by_parent.values():
        plan = [(kids[0], 0), (kids[0], 1), (kids[-1], 2)] if len(kids) == 1 else [(kids[0], 0), (kids[1], 0), (kids[1], 1)]
        for player_id, product_index in plan:
            n = len(link_rows)
            link_rows.append({"tenant_id": tenant.id, "player_id": player_id, "product_id": products[product_index].id,
                              "price_tier_id": tiers[product_index].id, "amount_cents": tiers[product_index].amount_cents,
                              "currency": "usd", "stripe_payment_link_id": f"plink_{tenant.id}_{n}",
                              "url": f"https://buy.stripe.com/b{tenant.id}_{n}", "status": LinkStatus.ACTIVE})
    for start in range(0, len(link_rows), 20_000):
        session.execute(insert(PaymentLink), link_rows[start : start + 20_000])
    _charge_each_link(session, tenant.id)
    session.commit()
    return tenant.id


def _charge_each_link(session: Session, tenant_id: int) -> None:
    """The ledger's charge of each link (what is owed is a charge; the link pays it), as
    migration 0008 makes them: ids given explicitly, the entry sequence moved past them."""
    base = session.execute(text("SELECT coalesce(max(id), 0) FROM ledger_entries")).scalar_one()
    params = {"tenant": tenant_id, "base": base}
    session.execute(text("""
        CREATE TEMP TABLE bench_link_charges ON COMMIT DROP AS
        SELECT :base + row_number() OVER (ORDER BY l.id) AS id, l.id AS link_id, p.parent_id, l.player_id,
               l.product_id, l.amount_cents
        FROM payment_links l JOIN players p ON p.id = l.player_id WHERE l.tenant_id = :tenant
    """), params)
    session.execute(text("""
        INSERT INTO ledger_entries (id, tenant_id, parent_id, kind, origin, recorded_by, recorded_at)
        SELECT id, :tenant, parent_id, 'charge'::ledger_entry_kind, 'backfill'::ledger_entry_origin, 'bench', now()
        FROM bench_link_charges
    """), params)
    session.execute(text("""
        INSERT INTO charges (id, tenant_id, parent_id, player_id, purpose, product_id, charge_key, description,
                             amount_cents, currency, due_on)
        SELECT id, :tenant, parent_id, player_id, 'product'::charge_purpose, product_id, 'link' || chr(58) || link_id,
               'charge', amount_cents, 'usd', current_date FROM bench_link_charges
    """), params)
    session.execute(text("UPDATE payment_links SET charge_id = c.id FROM bench_link_charges c WHERE c.link_id = "
                         "payment_links.id"))
    session.execute(text("SELECT setval(pg_get_serial_sequence('ledger_entries', 'id'), "
                         "(SELECT max(id) FROM ledger_entries))"))
    rebuild_positions(session, tenant_id)  # the ledger was written around the ORM


def naive_walk(session: Session, tenant_id: int) -> dict[int, int]:
    """The seed's way: load active links, then follow link.player.parent row by row."""
    totals: dict[int, int] = {}
    links = session.scalars(
        select(PaymentLink).where(PaymentLink.tenant_id == tenant_id, PaymentLink.status == LinkStatus.ACTIVE)
    ).all()
    for link in links:
        parent = link.player.parent
        totals[parent.id] = totals.get(parent.id, 0) + link.amount_cents
    return totals


def measure(engine, fn, runs: int) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    """Median seconds of ``fn(session)`` over ``runs`` (fresh session each) and its statement count."""
    counts: list[int] = []
    event.listen(engine, "before_cursor_execute", lambda *a: counts.append(1))
    times = []
    statements = 0
    for _ in range(runs):
        counts.clear()
        with Session(engine) as session:
            started = time.perf_counter()
            fn(session)
            times.append(time.perf_counter() - started)
        statements = len(counts)
    return statistics.median(times), statements


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 50_000])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--naive-max", type=int, default=50_000, help="skip the naive walk above this size")
    args = parser.parse_args()

    with scratch_postgres_database(ADMIN_URL, "bench_balances") as url:
        engine = make_engine(url)
        print(f"{'parents':>8} {'links':>7} | {'balances ms':>11} {'stmts':>5} | {'naive ms':>9} {'stmts':>6} | {'ratio':>6}")
        for size in args.sizes:
            with Session(engine) as session:
                tenant_id = build_league(session, size)
            with engine.begin() as connection:
                connection.execute(text("ANALYZE"))
            user = ActingUser("bench", Role.ADMIN, tenant_id)
            fast, fast_statements = measure(engine, lambda s, user=user: outstanding_balances(s, user), args.runs)
            with Session(engine) as session:
                balances = outstanding_balances(session, user)
            links = sum(len(b.items) for b in balances)
            if size <= args.naive_max:
                slow, slow_statements = measure(engine, lambda s, t=tenant_id: naive_walk(s, t), max(1, args.runs // 3))
                with Session(engine) as session:
                    naive_totals = naive_walk(session, tenant_id)
                assert naive_totals == {b.parent_id: b.total_cents for b in balances}, "both ways must agree"
                print(f"{size:>8} {links:>7} | {fast * 1000:>11.1f} {fast_statements:>5} | "
                      f"{slow * 1000:>9.1f} {slow_statements:>6} | {slow / fast:>5.1f}x")
            else:
                print(f"{size:>8} {links:>7} | {fast * 1000:>11.1f} {fast_statements:>5} | {'skipped':>9} {'':>6} |")
        engine.dispose()


if __name__ == "__main__":
    main()
