"""Benchmark: mint payment links against the Stripe stand-in at Stripe's test-mode limit.

The stand-in adds 100 ms to every request and answers 429 above 25 requests/s (a sliding
one-second window), like Stripe in test mode. The backfill runs as in production: the real
``StripeGateway`` with its default pacing and back-off, a fresh SQLite database, each link
committed as it is minted. Printed: links per second as a fraction of the 25/s limit
(goal: at least 0.9) and the number of 429s left unhandled (goal: 0).

    python bench/bench_backfill.py                # 3,000 links, about two minutes
    python bench/bench_backfill.py --links 500    # a quicker look
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--links", type=int, default=3000, help="links to mint (default 3000)")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per request at the stand-in")
    parser.add_argument("--limit", type=float, default=25, help="stand-in requests/s before 429")
    parser.add_argument("--concurrency", type=int, default=None, help="requests in flight (default: the backfill's)")
    args = parser.parse_args()

    sys.path.insert(0, str(REPO_ROOT))
    from core.backfill import DEFAULT_CONCURRENCY, commit_backfill, plan_backfill
    from core.db import make_engine, session_factory, upgrade_database
    from core.models import Parent, Player, PlayerStatus
    from core.payments.stripe_gateway import StripeGateway
    from tests.factories import acting, make_product, make_tenant
    from tests.stripe_stand_in import StripeStandIn

    with tempfile.TemporaryDirectory() as folder, StripeStandIn(latency=args.latency, rate_limit=args.limit) as stand_in:
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        upgrade_database(url)
        engine = make_engine(url)
        with session_factory(engine)() as session:
            tenant = make_tenant(session, "bench", name="Bench League")
            make_product(session, tenant, "Registration", amount_cents=15000)
            parents = [Parent(tenant_id=tenant.id, name=f"Parent {n:05d}", email=f"p{n}@example.org")
                       for n in range(args.links)]
            session.add_all(parents)
            session.flush()
            session.add_all(Player(tenant_id=tenant.id, parent_id=parent.id, first_name=f"Kid{n:05d}",
                                   last_name="Bench", status=PlayerStatus.SIGNED)
                            for n, parent in enumerate(parents))
            session.commit()
            admin = acting(tenant)
            plan = plan_backfill(session, admin)
            gateway = StripeGateway("sk_test_bench", api_base=stand_in.api_base)
            concurrency = args.concurrency or DEFAULT_CONCURRENCY
            print(f"Minting {len(plan.to_mint)} links: stand-in latency {args.latency * 1000:.0f} ms, "
                  f"limit {args.limit:g} requests/s; gateway paces at {gateway.pacer.requests_per_second:.2f}/s, "
                  f"{concurrency} in flight", flush=True)
            started = time.perf_counter()
            result = commit_backfill(engine, admin, gateway, plan, success_url="https://example.org/thanks",
                                     concurrency=concurrency)
            elapsed = time.perf_counter() - started
        engine.dispose()

    minted = len(result.minted)
    rate = minted / elapsed
    unhandled = gateway.stats.rate_limit_give_ups
    print(f"links minted:               {minted} in {elapsed:.1f} s ({result.prices_created} price, "
          f"{gateway.stats.requests} requests)")
    print(f"failed items:               {len(result.failed)}")
    print(f"links per second:           {rate:.2f}")
    print(f"fraction of the {args.limit:g}/s limit: {rate / args.limit:.3f}  (goal >= 0.9)")
    print(f"429s answered by stand-in:  {stand_in.rate_limited}")
    print(f"429s retried by gateway:    {gateway.stats.rate_limit_retries}")
    print(f"429s left unhandled:        {unhandled}  (goal 0)")
    return 0 if result.ok and unhandled == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
