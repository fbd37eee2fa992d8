"""Benchmark: payment sync against the Stripe stand-in at Stripe's test-mode latency and rate limit.

A league of 10k active links (seeded straight into the database and the stand-in, not
minted over HTTP) and 200 new payments since the last sync, plus payments that fall in
the overlap (already recorded) and older ones (outside the window); each payment's event is
stamped when it was paid. Prints:

* the incremental sync: Stripe calls made and wall time (goal: at most 5 calls, under 3 s);
* a full per-link sync: calls per second as a fraction of the 25 requests/s test-mode
  limit (goal: at least 0.9), and any 429s the stand-in had to answer.

The stand-in adds 100 ms to every request and answers 429 above 25 requests/s.

    .venv/bin/python bench/bench_sync.py [--links 10000] [--full-links N] [--sqlite]

``--full-links`` shortens the full run (10k links take about seven minutes at 24/s).
Uses a scratch PostgreSQL database (``BENCH_POSTGRES_URL``) unless ``--sqlite``.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert, select, text, update  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from core.access.permissions import ActingUser, Role  # noqa: E402
from core.db import make_engine, normalise_url, session_factory, upgrade_database  # noqa: E402
from core.ledger.billing import Owed, bill_owed  # noqa: E402
from core.models import (  # noqa: E402
    Charge,
    LinkStatus,
    Parent,
    PaymentLink,
    Player,
    PlayerStatus,
    PriceTier,
    Product,
    ProductKind,
    StripeEventCursor,
    Tenant,
    utcnow,
)
from core.payments.stripe_gateway import StripeGateway, documented_rate_limit  # noqa: E402
from core.payments.sync import sync_payments  # noqa: E402
from tests.scratch_database import scratch_postgres_database  # noqa: E402
from tests.stripe_stand_in import StripeStandIn  # noqa: E402

ADMIN_URL = normalise_url(os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
API_KEY = "sk_test_bench"
LATENCY = 0.100
AMOUNT = 15000


@contextmanager
def scratch_database(sqlite: bool) -> Iterator[str]:
    if sqlite:
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite:///{folder}/bench.db"
            upgrade_database(url)
            yield url
        return
    with scratch_postgres_database(ADMIN_URL, "bench_sync") as url:
        yield url


def build_league(session: Session, stand_in: StripeStandIn, slug: str, links: int, *, synced_at: datetime) -> tuple[int, list[str]]:
    """A league with ``links`` active one-time links, in the database and in the stand-in."""
    tenant = Tenant(slug=slug, name=slug.title(), payments_synced_at=synced_at)
    session.add(tenant)
    session.flush()
    product = Product(tenant_id=tenant.id, name="Registration", kind=ProductKind.ONE_TIME, required=True)
    session.add(product)
    session.flush()
    tier = PriceTier(product_id=product.id, amount_cents=AMOUNT, currency="usd", is_default=True)
    session.add(tier)
    session.flush()
    parent_ids = session.scalars(insert(Parent).returning(Parent.id, sort_by_parameter_order=True), [
        {"tenant_id": tenant.id, "name": f"Parent {i:05d}", "email": f"p{i}@example.org", "email_opt_out": False,
         "external_ref": f"P{i}"} for i in range(links)
    ]).all()
    player_ids = session.scalars(insert(Player).returning(Player.id, sort_by_parameter_order=True), [
        {"tenant_id": tenant.id, "parent_id": parent_id, "first_name": "Kid", "last_name": f"Family{i}",
         "status": PlayerStatus.SIGNED, "external_ref": f"K{i}"} for i, parent_id in enumerate(parent_ids)
    ]).all()
    created = synced_at - timedelta(days=60)
    stripe_ids = [f"plink_{slug}_{i:05d}" for i in range(links)]
    # What each player owes is a charge in the ledger (as the backfill bills it); its link pays it.
    operator = ActingUser("bench", Role.ADMIN, tenant.id)
    bill_owed(session, operator, [Owed(parent_id=parent_id, player_id=player_id, product_id=product.id, order_id=None,
                                       amount_cents=AMOUNT, description=product.name)
                                  for parent_id, player_id in zip(parent_ids, player_ids, strict=True)])
    charge_of = dict(session.execute(select(Charge.player_id, Charge.id).where(Charge.tenant_id == tenant.id)).all())
    rows = [
        {"tenant_id": tenant.id, "player_id": player_id, "product_id": product.id, "price_tier_id": tier.id,
         "amount_cents": AMOUNT, "currency": "usd", "stripe_payment_link_id": stripe_id,
         "url": f"https://buy.stripe.com/test_{stripe_id}", "status": LinkStatus.ACTIVE, "created_at": created,
         "processing": False, "amount_mismatch": False, "charge_id": charge_of[player_id]}
        for player_id, stripe_id in zip(player_ids, stripe_ids, strict=True)
    ]
    for start in range(0, len(rows), 5000):
        session.execute(insert(PaymentLink), rows[start : start + 5000])
    session.commit()
    for player_id, stripe_id in zip(player_ids, stripe_ids, strict=True):
        stand_in.add_payment_link(stripe_id, amount_cents=AMOUNT, single_payment=True, metadata={
            "tenant": slug, "tenant_id": str(tenant.id), "player_id": str(player_id), "product_id": str(product.id),
        })
    return tenant.id, stripe_ids


def pay(stand_in: StripeStandIn, stripe_ids: list[str], when: datetime, spread: timedelta) -> dict[str, str]:
    """A completed paid session on each link, created within ``spread`` after ``when``."""
    sessions = {}
    for stripe_id in stripe_ids:
        created = when + timedelta(seconds=random.uniform(0, spread.total_seconds()))
        stand_in.events_created_at = lambda created=created: int(created.timestamp())  # type: ignore[misc]
        sessions[stripe_id] = stand_in.complete_checkout_session(stripe_id, created=int(created.timestamp()))["id"]
    return sessions


def mark_recorded(session: Session, sessions: dict[str, str], paid_at: datetime) -> None:
    """What an earlier sync recorded for these payments."""
    for stripe_id, session_id in sessions.items():
        session.execute(
            update(PaymentLink).where(PaymentLink.stripe_payment_link_id == stripe_id)
            .values(status=LinkStatus.PAID, checkout_session_id=session_id, paid_at=paid_at, paid_amount_cents=AMOUNT)
        )
    session.commit()


def settle(engine) -> None:  # type: ignore[no-untyped-def]
    """Statistics for the planner, and the seeding's writes flushed, so they do not land in the timing."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("ANALYZE"))
            connection.execute(text("CHECKPOINT"))


def incremental(engine, stand_in: StripeStandIn, args: argparse.Namespace) -> None:  # type: ignore[no-untyped-def]
    now = utcnow()
    last_sync = now - timedelta(hours=1)
    with Session(engine) as session:
        tenant_id, stripe_ids = build_league(session, stand_in, "incremental", args.links, synced_at=last_sync)
        session.add(StripeEventCursor(tenant_id=tenant_id, read_until=last_sync))
        session.commit()
        shuffled = random.sample(stripe_ids, len(stripe_ids))
        new = shuffled[: args.payments]
        overlap = shuffled[args.payments : args.payments + args.in_overlap]
        old = shuffled[args.payments + args.in_overlap : args.payments + args.in_overlap + args.older]
        mark_recorded(session, pay(stand_in, old, now - timedelta(days=30), timedelta(days=20)), now - timedelta(days=10))
        mark_recorded(session, pay(stand_in, overlap, last_sync - timedelta(hours=20), timedelta(hours=19)), last_sync)
        pay(stand_in, new, last_sync + timedelta(minutes=1), timedelta(minutes=55))
    settle(engine)

    gateway = StripeGateway(API_KEY, api_base=stand_in.api_base)
    before = stand_in.request_count
    user = ActingUser("bench", Role.TREASURER, tenant_id)
    started = time.perf_counter()
    result = sync_payments(session_factory(engine), user, gateway)
    elapsed = time.perf_counter() - started
    calls = stand_in.request_count - before
    assert result.ok, result.errors
    assert result.paid_count == args.payments, result.summary()
    print(f"incremental sync: {args.links:,} active links, {args.payments} new payments, "
          f"{args.in_overlap} already recorded in the overlap, {args.older:,} older")
    print(f"  Stripe calls: {calls} (goal <= 5)   wall time: {elapsed:.2f} s (goal < 3 s)   "
          f"sessions read: {result.sessions_seen}   paid recorded: {result.paid_count}   "
          f"still owed: {result.still_owed_count:,}")
    print(f"  {'OK' if calls <= 5 and elapsed < 3 else 'MISSED'}")


def full(engine, stand_in: StripeStandIn, args: argparse.Namespace) -> None:  # type: ignore[no-untyped-def]
    links = args.full_links
    with Session(engine) as session:
        tenant_id, stripe_ids = build_league(session, stand_in, "full", links, synced_at=utcnow() - timedelta(hours=1))
        pay(stand_in, random.sample(stripe_ids, max(1, links // 50)), utcnow() - timedelta(days=5), timedelta(days=4))
    settle(engine)
    gateway = StripeGateway(API_KEY, api_base=stand_in.api_base)
    limit = documented_rate_limit(API_KEY)
    before, refused_before = stand_in.request_count, stand_in.rate_limited
    user = ActingUser("bench", Role.TREASURER, tenant_id)
    print(f"full per-link sync: {links:,} active links (about {links / (limit * 0.95):.0f} s at the pace)...", flush=True)
    started = time.perf_counter()
    result = sync_payments(session_factory(engine), user, gateway, full=True)
    elapsed = time.perf_counter() - started
    calls = stand_in.request_count - before
    refused = stand_in.rate_limited - refused_before
    rate = calls / elapsed
    answered = (calls - refused) / elapsed  # 429s were retried; only answered calls did work
    assert result.ok, result.errors
    print(f"  Stripe calls: {calls:,} in {elapsed:.1f} s = {rate:.1f} requests/s = {rate / limit:.2f} of the "
          f"{limit}/s test-mode limit (goal >= 0.9)")
    print(f"  of which 429 (retried after back-off): {refused}; answered: {answered:.1f}/s = "
          f"{answered / limit:.2f} of the limit   links checked: {result.links_checked:,}   "
          f"paid recorded: {result.paid_count}")
    print(f"  {'OK' if answered / limit >= 0.9 else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--links", type=int, default=10_000, help="active links in the incremental league")
    parser.add_argument("--payments", type=int, default=200, help="new payments since the last sync")
    parser.add_argument("--in-overlap", type=int, default=100, help="payments already recorded, inside the overlap")
    parser.add_argument("--older", type=int, default=2000, help="payments older than the window")
    parser.add_argument("--full-links", type=int, default=10_000, help="active links for the full sync (0: skip)")
    parser.add_argument("--sqlite", action="store_true", help="use a scratch SQLite file instead of PostgreSQL")
    args = parser.parse_args()
    random.seed(519)

    with scratch_database(args.sqlite) as url, \
            StripeStandIn(latency=LATENCY, rate_limit=documented_rate_limit(API_KEY)) as stand_in:
        engine = make_engine(url)
        print(f"database: {engine.dialect.name}; stand-in: {LATENCY * 1000:.0f} ms latency, "
              f"{documented_rate_limit(API_KEY)} requests/s limit")
        incremental(engine, stand_in, args)
        if args.full_links:
            full(engine, stand_in, args)
        engine.dispose()


if __name__ == "__main__":
    main()
