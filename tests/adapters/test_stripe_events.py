"""Stripe's events through the adapter and the stand-in: the SDK's parameter names, paging,
filters, and the event each of the stand-in's doings emits."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from core.payments.gateway import PaymentLinkRequest
from tests.stripe_stand_in import as_list

EVENT_TYPES = ("checkout.session.completed", "checkout.session.async_payment_succeeded",
               "checkout.session.async_payment_failed", "charge.refunded", "charge.dispute.created",
               "charge.dispute.closed")


@pytest.fixture
def link_id(stripe_gateway) -> str:  # type: ignore[no-untyped-def]
    price = stripe_gateway.create_price(amount_cents=15000, currency="usd", product_name="Registration",
                                        metadata={}, idempotency_key="price")
    return stripe_gateway.create_payment_link(
        PaymentLinkRequest(price_id=price, success_url="https://league.example/thanks"), idempotency_key="link").id


def _events(stripe_stand_in, **params):  # type: ignore[no-untyped-def]
    """``GET /v1/events`` straight from the stand-in's handler, as Stripe would answer it."""
    from tests.stripe_stand_in import RecordedRequest, _list_events

    return _list_events(stripe_stand_in, RecordedRequest("GET", "/v1/events", params, None, "sk_test_x"), None)


def test_what_happens_at_stripe_is_told_by_events_with_the_object_as_it_was(stripe_gateway, stripe_stand_in, link_id):
    processing = stripe_stand_in.complete_checkout_session(link_id, paid=False)
    stripe_stand_in.settle_checkout_session(processing["id"])
    refund = stripe_stand_in.refund_in_dashboard(processing["id"], 4000)
    dispute = stripe_stand_in.open_dispute(processing["id"])
    stripe_stand_in.close_dispute(dispute["id"], won=True)

    listed = list(stripe_gateway.list_events(types=EVENT_TYPES))

    assert [e.type for e in reversed(listed)] == [
        "checkout.session.completed", "checkout.session.async_payment_succeeded", "charge.refunded",
        "charge.dispute.created", "charge.dispute.closed"]
    completed, succeeded = listed[-1], listed[-2]
    assert completed.checkout is not None and succeeded.checkout is not None
    assert (completed.checkout.id, completed.checkout.paid, succeeded.checkout.paid) == (processing["id"], False, True)
    assert completed.payment_intent_id == processing["payment_intent"] == listed[2].payment_intent_id
    assert listed[0].dispute is not None and (listed[0].dispute.status, listed[1].dispute.status) == ("won",
                                                                                                       "needs_response")
    [receipt] = stripe_gateway.list_refunds(payment_intent_id=processing["payment_intent"])
    assert (receipt.id, receipt.amount_cents) == (refund["id"], 4000)
    found = stripe_gateway.checkout_for_payment_intent(processing["payment_intent"])
    assert found is not None and found.id == processing["id"]
    [listing] = [r for r in stripe_stand_in.requests if r.path == "/v1/events"]
    assert set(as_list(listing.params["types"])) == set(EVENT_TYPES) and listing.params["limit"] == "100"


def test_a_delayed_payment_that_fails_leaves_the_session_unpaid_and_says_so_in_an_event(stripe_stand_in, link_id):
    pending = stripe_stand_in.complete_checkout_session(link_id, paid=False)

    stripe_stand_in.fail_checkout_session(pending["id"])

    assert stripe_stand_in.session(pending["id"])["payment_status"] == "unpaid"
    assert stripe_stand_in.payment_intents[pending["payment_intent"]]["status"] == "requires_payment_method"
    assert stripe_stand_in.events[-1]["type"] == "checkout.session.async_payment_failed"


def test_events_come_newest_first_a_page_at_a_time_both_ways(stripe_gateway, stripe_stand_in, link_id):
    start = int(time.time()) - 1000
    for n in range(250):
        stripe_stand_in.events_created_at = lambda n=n: start + n
        stripe_stand_in.emit("checkout.session.completed", {"id": f"cs_{n}", "object": "checkout.session"})

    ids = [e.id for e in stripe_gateway.list_events(types=["checkout.session.completed"])]

    assert len(ids) == 250 and len(set(ids)) == 250
    assert [r.params.get("starting_after") for r in stripe_stand_in.requests if r.path == "/v1/events"] == [
        None, ids[99], ids[199]]
    first = _events(stripe_stand_in, limit="10")
    assert [e["id"] for e in first["data"]] == ids[:10] and first["has_more"]
    before = _events(stripe_stand_in, limit="10", ending_before=ids[15])
    assert [e["id"] for e in before["data"]] == ids[5:15] and before["has_more"]
    newest = _events(stripe_stand_in, limit="10", ending_before=ids[3])
    assert [e["id"] for e in newest["data"]] == ids[:3] and not newest["has_more"]


def test_events_are_filtered_by_when_and_what(stripe_gateway, stripe_stand_in, link_id):
    stripe_stand_in.events_created_at = lambda: 1_000
    old = stripe_stand_in.complete_checkout_session(link_id)
    stripe_stand_in.events_created_at = lambda: 2_000
    stripe_stand_in.refund_in_dashboard(old["id"], 100)

    since = list(stripe_gateway.list_events(types=EVENT_TYPES, created_since=datetime.fromtimestamp(2_000, UTC)))

    assert [e.type for e in since] == ["charge.refunded"]
    assert [e["type"] for e in _events(stripe_stand_in, created={"lt": "2000"})["data"]] == [
        "checkout.session.completed"]
    assert len(_events(stripe_stand_in, created={"gt": "999", "lte": "2000"})["data"]) == 2
    assert [e["type"] for e in _events(stripe_stand_in, type="charge.*")["data"]] == ["charge.refunded"]
    assert _events(stripe_stand_in, created="1000")["data"][0]["type"] == "checkout.session.completed"


def test_the_stand_in_refuses_what_stripe_refuses_in_an_events_list(stripe_stand_in):
    import json
    import urllib.error
    import urllib.request

    def get(query: str) -> tuple[int, dict]:
        request = urllib.request.Request(f"{stripe_stand_in.api_base}/v1/events?{query}",
                                         headers={"Authorization": "Bearer sk_test_x"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    assert get("type=charge.refunded&types[0]=charge.refunded")[0] == 400
    status, body = get("object_type=charge")
    assert (status, body["error"]["code"]) == (400, "parameter_unknown")
    assert get("starting_after=evt_x&ending_before=evt_y")[0] == 400
    assert get("limit=101")[0] == 400
