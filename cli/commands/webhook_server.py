"""``webhook-server [--host H] [--port N]``: receive Stripe's webhooks and sync payments when they come.

For a league that can expose an address to Stripe. Each request's signature is verified with
``STRIPE_WEBHOOK_SECRET`` (the endpoint's signing secret); an event payment sync reads starts an
incremental sync of the league (``core.payments.webhook``), which applies it like cron's would.
Polling with ``sync-payments`` stays the default, and keeps covering what a webhook misses.
Runs until interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cli.context import add_tenant_option, league_command
from core.composition import make_webhook_verifier
from core.payments.sync import sync_payments
from core.payments.webhook import WebhookReceiver

log = logging.getLogger(__name__)
MAX_BODY = 1_000_000  # Stripe's events are a few kilobytes


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "webhook-server",
        help="receive Stripe's webhooks and sync payments when they arrive",
        description="Listen for Stripe's webhook requests (POST, signed with STRIPE_WEBHOOK_SECRET); each "
        "payment, refund or dispute event starts a payment sync of the league. Polling with sync-payments "
        "stays the default and covers whatever a webhook misses. Runs until interrupted.",
    )
    add_tenant_option(parser)
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8787, help="the port to listen on (default 8787)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    with league_command(args, stripe_action="receive Stripe's webhooks") as ctx:
        verify = make_webhook_verifier(ctx.settings)
        gateway = ctx.services.payment_gateway(action="receive Stripe's webhooks")
        user, sessions = ctx.user, ctx.services.sessions
        ctx.session.close()  # the league is found; hold no transaction open while serving
        receiver = WebhookReceiver(user, verify, lambda: sync_payments(sessions, user, gateway))
        server = make_server(receiver, args.host, args.port)
        print(f"Receiving Stripe's webhooks at http://{args.host}:{server.server_address[1]}/ "
              f"for {ctx.tenant.slug}; Ctrl-C stops.", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
            receiver.close()
    return 0


def make_server(receiver: WebhookReceiver, host: str, port: int) -> ThreadingHTTPServer:
    """An HTTP server answering each POST with what ``receiver`` says (any path)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._answer(413, "too large")
                return
            answer = receiver.receive(self.rfile.read(length), self.headers.get("Stripe-Signature"))
            self._answer(answer.status, answer.message)

        def _answer(self, status: int, message: str) -> None:
            body = message.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.info("webhook: " + format, *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server
