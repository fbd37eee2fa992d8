"""``python -m core webhook-server``: a verified Stripe event starts a payment sync; others are refused."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import urllib.error
import urllib.request

import pytest

from cli.commands.webhook_server import make_server
from cli.main import main
from core.composition import make_webhook_verifier
from core.models import LinkStatus, PaymentLink
from core.payments.sync import sync_payments
from core.payments.webhook import WebhookReceiver
from core.settings import Secret, Settings
from tests.factories import acting, make_link, make_parent, make_player, make_product, make_tenant
from tests.stripe_links import mirror_links

SECRET = "whsec_test_secret"


def _signed(payload: bytes, secret: str = SECRET) -> str:
    """A ``Stripe-Signature`` header as Stripe computes it (HMAC-SHA256 of ``t.payload``)."""
    stamp = int(time.time())
    digest = hmac.new(secret.encode(), f"{stamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={digest}"


def _post(url: str, payload: bytes, signature: str | None) -> int:
    request = urllib.request.Request(url, data=payload, method="POST")
    if signature:
        request.add_header("Stripe-Signature", signature)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture
def server(engine, session, stripe_stand_in, stripe_gateway):  # type: ignore[no-untyped-def]
    tenant = make_tenant(session)
    link = make_link(session, tenant, make_player(session, tenant, make_parent(session, tenant)),
                     make_product(session, tenant, amount_cents=15000))
    session.commit()
    mirror_links(stripe_stand_in, session, [link])
    user = acting(tenant)
    syncs: list[object] = []
    receiver = WebhookReceiver(user, make_webhook_verifier(Settings(stripe_webhook_secret=Secret(SECRET))),
                               lambda: syncs.append(sync_payments(engine, user, stripe_gateway)))
    http = make_server(receiver, "127.0.0.1", 0)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{http.server_address[1]}/stripe", receiver, link, syncs
    http.shutdown()
    http.server_close()
    receiver.close()


def test_a_verified_payment_event_syncs_the_league_and_a_forged_one_is_refused(
    server, session, stripe_stand_in
):
    url, receiver, link, syncs = server
    stripe_stand_in.complete_checkout_session(link.stripe_payment_link_id)
    payload = json.dumps({k: v for k, v in stripe_stand_in.events[-1].items() if not k.startswith("_")}).encode()

    assert _post(url, payload, _signed(payload, "whsec_someone_else")) == 400
    assert _post(url, payload, None) == 400
    assert _post(url, b"not json", _signed(b"not json")) == 400
    assert receiver.wait_until_idle(10) and syncs == []

    assert _post(url, payload, _signed(payload)) == 200
    assert receiver.wait_until_idle(30)

    assert len(syncs) == 1
    session.expire_all()
    assert session.get_one(PaymentLink, link.id).status is LinkStatus.PAID


def test_an_event_payment_sync_does_not_read_starts_no_sync(server):
    url, receiver, _, syncs = server
    payload = json.dumps({"id": "evt_1", "object": "event", "type": "customer.created", "created": 1,
                          "data": {"object": {"id": "cus_1", "object": "customer"}}}).encode()

    assert _post(url, payload, _signed(payload)) == 200
    assert receiver.wait_until_idle(10) and syncs == []


def test_without_a_signing_secret_the_command_says_what_is_missing(database_url, session, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_x")
    monkeypatch.delenv("STRIPE_WEBHOOK_SECRET", raising=False)
    make_tenant(session)
    session.commit()

    assert main(["webhook-server"]) == 1

    assert capsys.readouterr().err.startswith("error: STRIPE_WEBHOOK_SECRET is not set")
