"""Benchmark: the incremental payment sync from Stripe's events, at Stripe's test-mode latency and rate.

A league of 10k families (one active link each, seeded straight into the database and the
stand-in), synced once, then 500 new events since: 400 payments, 40 delayed payments that
complete and then settle (20) or fail (20), 15 refunds made in Stripe's dashboard and 5
disputes of earlier payments. Prints the Stripe calls of the sync (goal: at most 10) and its
wall time, and what it recorded.

The stand-in adds 100 ms to every request and answers 429 above 25 requests/s.

    .venv/bin/python bench/bench_events_sync.py [--families 10000] [--sqlite]

Uses a scratch PostgreSQL database (``BENCH_POSTGRES_URL``) unless ``--sqlite``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy.orm import Session  # noqa: E402

from bench.bench_sync import API_KEY, LATENCY, build_league, scratch_database, settle  # noqa: E402
from core.access.permissions import ActingUser, Role  # noqa: E402
from core.db import make_engine, session_factory  # noqa: E402
from core.models import utcnow  # noqa: E402
from core.payments.stripe_gateway import StripeGateway, documented_rate_limit  # noqa: E402
from core.payments.sync import sync_payments  # noqa: E402
from tests.stripe_stand_in import StripeStandIn  # noqa: E402

PAID, DELAYED, REFUNDS, DISPUTES = 400, 40, 15, 5


def run(engine, stand_in: StripeStandIn, families: int) -> None:  # type: ignore[no-untyped-def]
    now = utcnow()
    with Session(engine) as session:
        tenant_id, stripe_ids = build_league(session, stand_in, "events", families, synced_at=now - timedelta(hours=2))
    links = iter(random.sample(stripe_ids, PAID + DELAYED + REFUNDS + DISPUTES))
    user = ActingUser("bench", Role.TREASURER, tenant_id)
    gateway = StripeGateway(API_KEY, api_base=stand_in.api_base)

    # Earlier payments, recorded by the last sync: those refunded and disputed below.
    stand_in.events_created_at = lambda: int((now - timedelta(hours=2)).timestamp())
    earlier = [stand_in.complete_checkout_session(next(links))["id"] for _ in range(REFUNDS + DISPUTES)]
    first = sync_payments(session_factory(engine), user, gateway)
    assert first.ok and first.paid_count == REFUNDS + DISPUTES, first.summary()

    stand_in.events_created_at = lambda: int(time.time())
    for _ in range(PAID):
        stand_in.complete_checkout_session(next(links))
    delayed = [stand_in.complete_checkout_session(next(links), paid=False)["id"] for _ in range(DELAYED)]
    for n, session_id in enumerate(delayed):
        (stand_in.settle_checkout_session if n % 2 == 0 else stand_in.fail_checkout_session)(session_id)
    for session_id in earlier[:REFUNDS]:
        stand_in.refund_in_dashboard(session_id, 5000)
    for session_id in earlier[REFUNDS:]:
        stand_in.open_dispute(session_id)
    new_events = PAID + 2 * DELAYED + REFUNDS + DISPUTES
    settle(engine)

    before = stand_in.request_count
    started = time.perf_counter()
    result = sync_payments(session_factory(engine), user, gateway)
    elapsed = time.perf_counter() - started
    calls = stand_in.request_count - before
    assert result.ok, result.errors
    assert result.events_read == new_events, result.summary()
    print(f"events sync: {families:,} families, {new_events} new events ({PAID} payments, {DELAYED} delayed "
          f"payments that settle or fail, {REFUNDS} refunds in Stripe's dashboard, {DISPUTES} disputes)")
    print(f"  Stripe calls: {calls} (goal <= 10)   wall time: {elapsed:.2f} s   events applied: {result.events_read}")
    print(f"  paid: {result.paid_count}   failed: {len(result.failed)}   refunds recorded: {len(result.refunds)}   "
          f"new flags: {len(result.new_flags)}   still owed: {result.still_owed_count:,}")
    again_before = stand_in.request_count
    again = sync_payments(session_factory(engine), user, gateway)
    print(f"  the same sync again: {stand_in.request_count - again_before} Stripe calls, "
          f"{again.events_read} events applied (each event once)")
    print(f"  {'OK' if calls <= 10 else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", type=int, default=10_000)
    parser.add_argument("--sqlite", action="store_true", help="use a scratch SQLite file instead of PostgreSQL")
    args = parser.parse_args()
    random.seed(1012)
    with scratch_database(args.sqlite) as url, \
            StripeStandIn(latency=LATENCY, rate_limit=documented_rate_limit(API_KEY)) as stand_in:
        engine = make_engine(url)
        print(f"database: {engine.dialect.name}; stand-in: {LATENCY * 1000:.0f} ms latency, "
              f"{documented_rate_limit(API_KEY)} requests/s limit")
        run(engine, stand_in, args.families)
        engine.dispose()


if __name__ == "__main__":
    main()
