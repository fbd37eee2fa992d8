"""Benchmark: rendering the outstanding-balance email, and sending through the Gmail backend.

1. Render: builds 10,000 parents' balances in memory (1-3 items each, names with accents,
   quotes and markup), then renders each email on one thread (templates + CSS inlining) and
   also composes the exact message bytes. Prints emails per second (goal: >= 2,000/s).
2. Send: starts a local HTTP server on 127.0.0.1 that answers like Gmail's messages.send with
   200 ms latency and a quota of 600 sends a minute (10 a second with a burst of 10; a 429
   rateLimitExceeded above it), queues a campaign in a scratch SQLite database through the
   real outbox, and drains it with the real GmailBackend (googleapiclient, paced at the quota,
   several sending threads). Prints the send rate as a fraction of the quota (goal: >= 0.95)
   and how many messages were lost or sent twice (goal: 0 and 0).

    .venv/bin/python bench/bench_email.py            # 10k renders, 600 sends (about a minute)
    .venv/bin/python bench/bench_email.py --short    # 2k renders, 150 sends (about 15 s)
"""

from __future__ import annotations

import argparse
import base64
import email
import email.policy
import json
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httplib2  # noqa: E402
from googleapiclient.discovery import build  # noqa: E402
from sqlalchemy import insert, select  # noqa: E402

from core.access.permissions import ActingUser, Role  # noqa: E402
from core.db import make_engine, session_factory, upgrade_database  # noqa: E402
from core.email.backends.gmail import GmailBackend  # noqa: E402
from core.email.brand import Brand  # noqa: E402
from core.email.campaigns import start_campaign  # noqa: E402
from core.email.outbox import drain_outbox  # noqa: E402
from core.email.registry import OUTSTANDING_BALANCE  # noqa: E402
from core.email.rendering import compose_message, message_id_for, render_email  # noqa: E402
from core.ledger.billing import Owed, bill_owed  # noqa: E402
from core.models import (  # noqa: E402
    Charge,
    EmailMessage,
    LinkStatus,
    MessageStatus,
    Parent,
    PaymentLink,
    Player,
    PlayerStatus,
    PriceTier,
    Product,
    ProductKind,
    Tenant,
)
from core.reporting.balances import LineItem, OutstandingBalance  # noqa: E402

EMAIL_FROM = "Westside Treasurer <treasurer@westside.example.org>"
FIRST = ("Zoë", "Renée", "Amir", "Chloé", "Liam", "Sofía", "O'Neil", "Grace", "Kwame", "Ingrid")
LAST = ("Núñez", "O'Brien", "Müller", "D'Angelo", "Lefèvre", "Søndergaard", "Smith <Jr>", "Chen & Co")
PRODUCTS = (("Registration", 15000), ("Monthly dues", 6000), ("Uniform", 4500))


# --- 1. render -----------------------------------------------------------------------------------

def balances_in_memory(parents: int, rng: random.Random) -> list[OutstandingBalance]:
    result = []
    link = 0
    for parent_id in range(1, parents + 1):
        surname = rng.choice(LAST)
        items = []
        for kid in range(rng.choice((1, 1, 2))):
            player = f"{rng.choice(FIRST)} {surname}"
            for product, amount in rng.sample(PRODUCTS, rng.choice((1, 2))):
                link += 1
                items.append(LineItem(link, parent_id * 10 + kid, player, "U12 Hawks", 1, product, amount, "usd",
                                      f"https://buy.stripe.com/test_{link:08d}?prefilled_email=x&y=1"))
        result.append(OutstandingBalance(parent_id, f"{rng.choice(FIRST)} {surname}",
                                         f"parent{parent_id}@families.example", False, tuple(items)))
    return result


def bench_render(parents: int) -> None:
    brand = Brand("Westside <Youth> Basketball", "#1d3557", "#e63946", "https://westside.example.org/logo.png",
                  "Westside Treasurer", "treasurer@westside.example.org", "replies@westside.example.org",
                  "Westside Youth Basketball · 100 Court Street")
    balances = balances_in_memory(parents, random.Random(7))
    render_email(OUTSTANDING_BALANCE, balances[0], brand)  # templates compiled once, as in a real run
    started = time.perf_counter()
    rendered = [render_email(OUTSTANDING_BALANCE, balance, brand) for balance in balances]
    render_seconds = time.perf_counter() - started
    started = time.perf_counter()
    size = 0
    for balance, text in zip(balances, rendered, strict=True):
        message = compose_message(text, brand=brand, to_name=balance.parent_name, to_address=balance.parent_email,
                                  message_id=message_id_for(tenant_id=1, campaign_id=1, parent_id=balance.parent_id,
                                                            domain=brand.sender_domain))
        size += len(message.as_bytes())
    compose_seconds = time.perf_counter() - started
    items = sum(len(b.items) for b in balances)
    print(f"Render: {parents:,} parents ({items:,} line items), one thread")
    print(f"  templates + CSS inlining:        {parents / render_seconds:8,.0f} emails/s  ({render_seconds:.2f} s)  goal >= 2,000/s")
    print(f"  + MIME message bytes (total):    {parents / (render_seconds + compose_seconds):8,.0f} emails/s  "
          f"({render_seconds + compose_seconds:.2f} s, {size / parents / 1024:.1f} KiB per email)")


# --- 2. send -------------------------------------------------------------------------------------

class FakeGmail(ThreadingHTTPServer):
    """Answers POST /gmail/v1/users/me/messages/send like Gmail: latency, a per-user quota, 429 above it."""

    daemon_threads = True

    def __init__(self, *, per_minute: int, latency: float) -> None:
        super().__init__(("127.0.0.1", 0), GmailHandler)
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)  # one second's worth of burst
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self.latency = latency
        self.lock = threading.Lock()
        self.accepted: list[tuple[float, str]] = []
        self.refused = 0

    def take(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            self.refused += 1
            return False


class GmailHandler(BaseHTTPRequestHandler):
    server: FakeGmail

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        allowed = self.server.take()
        time.sleep(self.server.latency)
        if not self.path.startswith("/gmail/v1/users/me/messages/send"):
            return self._answer(404, {"error": {"code": 404, "message": "not found"}})
        if not allowed:
            return self._answer(429, {"error": {"code": 429, "message": "User-rate limit exceeded",
                                                "errors": [{"reason": "rateLimitExceeded", "domain": "usageLimits"}]}})
        raw = base64.urlsafe_b64decode(json.loads(body)["raw"])
        message_id = email.message_from_bytes(raw, policy=email.policy.default)["Message-ID"]
        with self.server.lock:
            self.server.accepted.append((time.monotonic(), message_id))
            number = len(self.server.accepted)
        self._answer(200, {"id": f"gm{number:08d}", "threadId": f"gm{number:08d}", "labelIds": ["SENT"]})

    def _answer(self, status: int, payload: dict) -> None:  # type: ignore[type-arg]
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # keep the output to the figures
        return


def scratch_league(url: str, parents: int) -> ActingUser:
    upgrade_database(url)
    engine = make_engine(url)
    with session_factory(engine)() as session:
        tenant = Tenant(slug="bench", name="Westside Youth Basketball", reply_to="replies@westside.example.org")
        session.add(tenant)
        session.flush()
        product = Product(tenant_id=tenant.id, name="Registration", kind=ProductKind.ONE_TIME, required=True)
        session.add(product)
        session.flush()
        tier = PriceTier(product_id=product.id, amount_cents=15000, currency="usd", is_default=True)
        session.add(tier)
        session.flush()
        session.execute(insert(Parent), [{"tenant_id": tenant.id, "name": f"Parent {n} Núñez", "email_opt_out": False,
                                          "email": f"parent{n}@families.example", "external_ref": f"P{n}"}
                                         for n in range(parents)])
        parent_ids = session.scalars(select(Parent.id).where(Parent.tenant_id == tenant.id).order_by(Parent.id)).all()
        player_ids = session.scalars(insert(Player).returning(Player.id, sort_by_parameter_order=True), [
            {"tenant_id": tenant.id, "parent_id": pid, "first_name": "Kid", "last_name": str(pid),
             "status": PlayerStatus.SIGNED} for pid in parent_ids
        ]).all()
        admin = ActingUser("bench-admin", Role.ADMIN, tenant.id)
        # What each player owes is a charge in the ledger (as the backfill bills it); its link pays it.
        bill_owed(session, admin, [Owed(parent_id=parent_id, player_id=player_id, product_id=product.id, order_id=None,
                                        amount_cents=15000, description=product.name)
                                   for parent_id, player_id in zip(parent_ids, player_ids, strict=True)])
        charge_of = dict(session.execute(select(Charge.player_id, Charge.id).where(Charge.tenant_id == tenant.id)).all())
        session.execute(insert(PaymentLink), [{"tenant_id": tenant.id, "player_id": pid, "product_id": product.id,
                                               "price_tier_id": tier.id, "amount_cents": 15000, "currency": "usd",
                                               "stripe_payment_link_id": f"plink_{pid}", "status": LinkStatus.ACTIVE,
                                               "url": f"https://buy.stripe.com/test_{pid}", "charge_id": charge_of[pid]}
                                              for pid in player_ids])
        session.commit()
    engine.dispose()
    return admin


def bench_send(sends: int, *, per_minute: int, latency: float, workers: int) -> None:
    server = FakeGmail(per_minute=per_minute, latency=latency)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}/"
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/bench.db"
        admin = scratch_league(url, sends)
        engine = make_engine(url)
        with session_factory(engine)() as session:
            started = time.perf_counter()
            campaign = start_campaign(session, admin, OUTSTANDING_BALANCE, email_from=EMAIL_FROM)
            session.commit()
            queued_in = time.perf_counter() - started
        backend = GmailBackend(
            lambda: build("gmail", "v1", http=httplib2.Http(timeout=30), cache_discovery=False,
                          client_options={"api_endpoint": endpoint}),
            sends_per_minute=per_minute, parallel_sends=workers,
        )
        started = time.perf_counter()
        result = drain_outbox(engine, admin, campaign.id, backend=backend, email_from=EMAIL_FROM)
        elapsed = time.perf_counter() - started
        with session_factory(engine)() as session:
            statuses = Counter(session.scalars(select(EmailMessage.status)
                                               .where(EmailMessage.campaign_id == campaign.id)).all())
        engine.dispose()
    server.shutdown()
    delivered = Counter(message_id for _, message_id in server.accepted)
    doubled = sum(count - 1 for count in delivered.values())
    lost = sends - len(delivered)
    quota_per_second = per_minute / 60.0
    rate = len(server.accepted) / elapsed
    times = [t for t, _ in server.accepted]
    window = (times[-1] - times[0]) if len(times) > 1 else float("nan")
    print(f"Send: {sends:,} emails through GmailBackend to a local endpoint "
          f"({latency * 1000:.0f} ms latency, quota {per_minute}/min), {workers} sending threads")
    print(f"  queued (rendered + written) in {queued_in:.1f} s; drained in {elapsed:.1f} s")
    print(f"  send rate: {rate:.2f}/s = {rate / quota_per_second:.3f} of the quota  goal >= 0.95"
          f"  (first to last accepted: {(len(times) - 1) / window / quota_per_second:.3f})")
    print(f"  lost: {lost}  sent twice: {doubled}  refused by the quota (429, retried): {server.refused}")
    rows = {s.value: n for s, n in statuses.items()}
    print(f"  outbox rows: {rows}  drain result: sent {result.sent}, "
          f"failed {result.failed}, interrupted {result.interrupted}")
    if statuses.get(MessageStatus.SENT, 0) != sends or lost or doubled:
        print("  MISMATCH: the outbox and the server disagree")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="2,000 renders and 150 sends")
    parser.add_argument("--parents", type=int, help="emails to render (default 10,000)")
    parser.add_argument("--sends", type=int, help="emails to send (default 600: one minute of quota)")
    parser.add_argument("--per-minute", type=int, default=600, help="the endpoint's quota (default 600)")
    parser.add_argument("--latency", type=float, default=0.2, help="the endpoint's latency in seconds")
    parser.add_argument("--workers", type=int, default=4, help="sending threads")
    parser.add_argument("--skip-send", action="store_true")
    args = parser.parse_args()
    bench_render(args.parents or (2_000 if args.short else 10_000))
    if not args.skip_send:
        bench_send(args.sends or (150 if args.short else 600), per_minute=args.per_minute,
                   latency=args.latency, workers=args.workers)


if __name__ == "__main__":
    main()
