"""Benchmark: mint families' "Pay the balance" links against the Stripe stand-in at Stripe's test-mode limit.

A league of 10,000 families (one or two charges each, billed straight into the ledger), in a
fresh SQLite database. The stand-in adds 100 ms to every request and answers 429 above 25
requests/s (a sliding one-second window), like Stripe in test mode; the real ``StripeGateway``
paces itself with its default pacer (95% of the documented 25/s). ``refresh_family_links``
then runs as the send to everyone runs it: per family one Stripe request, each link committed
as soon as Stripe answers, with the family's balance read again in that transaction.

Minting all 10,000 at 25/s takes about seven minutes, so by default a shorter run mints the
links of ``--mint`` families of the 10,000 (the league stays the full size: every balance read
is a read of the full league). ``--mint 10000`` runs the whole league. Printed: links and
requests per second, the fraction of the 25/s limit reached (goal: at least 0.9) and the
number of 429s left unhandled (goal: 0).

    python bench/bench_family_links.py               # 10,000 families, 1,500 links minted (about a minute)
    python bench/bench_family_links.py --mint 10000  # every family (about seven minutes)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", type=int, default=10_000, help="families in the league (default 10000)")
    parser.add_argument("--mint", type=int, default=1500, help="families whose link is minted (default 1500)")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per request at the stand-in")
    parser.add_argument("--limit", type=float, default=25, help="stand-in requests/s before 429")
    parser.add_argument("--concurrency", type=int, default=None, help="requests in flight (default: the minting's)")
    args = parser.parse_args()

    sys.path.insert(0, str(REPO_ROOT))
    from sqlalchemy import insert

    from core.db import make_engine, session_factory, upgrade_database
    from core.ledger.positions import mark_written
    from core.models import Charge, ChargePurpose, EntryOrigin, LedgerEntry, LedgerEntryKind, Parent
    from core.payments.family_links import DEFAULT_CONCURRENCY, FamilyLinkMinting, refresh_family_links
    from core.payments.stripe_gateway import StripeGateway
    from tests.factories import acting, make_tenant
    from tests.stripe_stand_in import StripeStandIn

    with tempfile.TemporaryDirectory() as folder, StripeStandIn(latency=args.latency, rate_limit=args.limit) as stand_in:
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        upgrade_database(url)
        engine = make_engine(url)
        sessions = session_factory(engine)
        with sessions() as session:
            tenant = make_tenant(session, "bench", name="Bench League")
            session.execute(insert(Parent), [{"tenant_id": tenant.id, "name": f"Parent {n:05d}",
                                              "email": f"p{n}@example.org"} for n in range(args.families)])
            parent_ids = sorted(session.scalars(Parent.__table__.select().with_only_columns(Parent.id)))
            # Registration for everyone, and a uniform for every third family: about a dozen
            # distinct balances, as in a real league, so Prices are shared.
            charges = [(parent_id, 15000 + 500 * (n % 6), "Registration") for n, parent_id in enumerate(parent_ids)]
            charges += [(parent_id, 4000, "Uniform") for parent_id in parent_ids[::3]]
            session.execute(insert(LedgerEntry), [
                {"tenant_id": tenant.id, "parent_id": parent_id, "kind": LedgerEntryKind.CHARGE,
                 "origin": EntryOrigin.BACKFILL, "recorded_by": "bench"} for parent_id, _, _ in charges])
            entry_ids = sorted(session.scalars(LedgerEntry.__table__.select().with_only_columns(LedgerEntry.id)))
            session.execute(insert(Charge), [
                {"id": entry_id, "tenant_id": tenant.id, "parent_id": parent_id, "purpose": ChargePurpose.FEE,
                 "charge_key": f"fee:e{entry_id}", "description": what, "amount_cents": cents, "currency": "usd",
                 "due_on": date(2026, 9, 1)}
                for entry_id, (parent_id, cents, what) in zip(entry_ids, charges, strict=True)])
            mark_written(session, tenant.id, parent_ids)  # billed around the ORM
            session.commit()
            admin = acting(tenant)
        gateway = StripeGateway("sk_test_bench", api_base=stand_in.api_base)
        concurrency = args.concurrency or DEFAULT_CONCURRENCY
        chosen = parent_ids[: args.mint]
        print(f"League of {args.families:,} families ({len(charges):,} charges); minting the balance links of "
              f"{len(chosen):,} of them{'' if len(chosen) == args.families else ' (a shorter run: --mint N)'}.")
        print(f"Stand-in latency {args.latency * 1000:.0f} ms, limit {args.limit:g} requests/s; gateway paces at "
              f"{gateway.pacer.requests_per_second:.2f}/s, {concurrency} in flight", flush=True)
        started = time.perf_counter()
        result = refresh_family_links(sessions, admin, FamilyLinkMinting(gateway, "https://example.org/thanks",
                                                                         concurrency), parent_ids=chosen)
        elapsed = time.perf_counter() - started
        engine.dispose()

    rate = result.minted / elapsed
    request_rate = gateway.stats.requests / elapsed
    unhandled = gateway.stats.rate_limit_give_ups
    print(f"links minted:                 {result.minted:,} in {elapsed:.1f} s ({result.prices_created} prices, "
          f"{gateway.stats.requests:,} requests)")
    print(f"errors:                       {len(result.errors)}")
    print(f"links per second:             {rate:.2f}")
    print(f"requests per second:          {request_rate:.2f}")
    print(f"fraction of the {args.limit:g}/s limit:   {request_rate / args.limit:.3f} of requests, "
          f"{rate / args.limit:.3f} as links  (goal >= 0.9)")
    print(f"429s answered by stand-in:    {stand_in.rate_limited}")
    print(f"429s retried by gateway:      {gateway.stats.rate_limit_retries}")
    print(f"429s left unhandled:          {unhandled}  (goal 0)")
    return 0 if result.ok and unhandled == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
