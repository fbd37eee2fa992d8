"""The stand-in itself: it must be able to say no, or the tests built on it prove nothing."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from sqlalchemy import select

from tests.stripe_stand_in import check_parameters, decode_form, stripe_params


def _call(stand_in, method: str, path: str, body: str = "", *, key: str | None = "sk_test_x",
          idempotency_key: str | None = None) -> tuple[int, Any]:
    url = stand_in.api_base + path + (f"?{body}" if method == "GET" and body else "")
    request = urllib.request.Request(url, data=body.encode() if method == "POST" else None, method=method)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    if idempotency_key:
        request.add_header("Idempotency-Key", idempotency_key)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _price(stand_in) -> str:
    status, price = _call(stand_in, "POST", "/v1/prices",
                          "unit_amount=1500&currency=usd&product_data[name]=Registration")
    assert status == 200
    return price["id"]


def test_a_misspelt_parameter_is_refused_by_name(stripe_stand_in):
    price = _price(stripe_stand_in)
    status, body = _call(
        stripe_stand_in, "POST", "/v1/payment_links",
        f"line_items[0][price]={price}&line_items[0][quantity]=1"
        "&payment_intent_data[setup_future_usge]=off_session",
    )
    assert status == 400
    assert body["error"]["code"] == "parameter_unknown"
    assert body["error"]["param"] == "payment_intent_data[setup_future_usge]"
    assert stripe_stand_in.payment_links == {}


def test_a_parameter_declared_for_another_endpoint_is_refused(stripe_stand_in):
    # customer_creation belongs to payment links, not prices
    status, body = _call(stripe_stand_in, "POST", "/v1/prices",
                         "unit_amount=1500&currency=usd&product_data[name]=X&customer_creation=always")
    assert (status, body["error"]["param"]) == (400, "customer_creation")


def test_request_options_are_headers_not_parameters(stripe_stand_in):
    status, body = _call(stripe_stand_in, "POST", "/v1/prices",
                         "unit_amount=1500&currency=usd&product_data[name]=X&idempotency_key=abc")
    assert (status, body["error"]["param"]) == (400, "idempotency_key")


def test_list_filters_are_checked_too(stripe_stand_in):
    status, body = _call(stripe_stand_in, "GET", "/v1/checkout/sessions", "paymnet_link=plink_1")
    assert (status, body["error"]["param"]) == (400, "paymnet_link")


def test_every_name_the_sdk_declares_is_accepted():
    # Names the product never sends still pass: the list is the SDK's, not a copy of ours.
    declared = {
        "custom_text": {"submit": {"message": "Pay"}},
        "consent_collection": {"terms_of_service": "required"},
        "invoice_creation": {"invoice_data": {"rendering_options": {"template": "x"}}},
        "line_items": {"0": {"price_data": {"product_data": {"name": "x"}}}},
        "shipping_options": {"0": {"shipping_rate": "shr_1"}},
    }
    assert check_parameters(declared, stripe_params.PaymentLinkCreateParams) is None
    assert check_parameters({"custom_text": {"submit": {"massage": "Pay"}}},
                            stripe_params.PaymentLinkCreateParams) == "custom_text[submit][massage]"
    assert check_parameters({"line_items": {"0": {"prise": "p"}}},
                            stripe_params.PaymentLinkCreateParams) == "line_items[0][prise]"


def test_nested_brackets_are_decoded():
    assert decode_form("a[b][0][c]=1&a[b][1][c]=2&x=&m[k]=v") == {
        "a": {"b": {"0": {"c": "1"}, "1": {"c": "2"}}}, "x": "", "m": {"k": "v"}
    }


def test_a_request_without_a_key_is_unauthorised(stripe_stand_in):
    status, _ = _call(stripe_stand_in, "GET", "/v1/prices", key=None)
    assert status == 401


def test_a_link_needs_a_price_that_exists(stripe_stand_in):
    status, body = _call(stripe_stand_in, "POST", "/v1/payment_links",
                         "line_items[0][price]=price_missing&line_items[0][quantity]=1")
    assert (status, body["error"]["param"]) == (400, "line_items[0][price]")


def test_saving_a_card_is_refused_for_a_subscription_price(stripe_stand_in):
    status, price = _call(stripe_stand_in, "POST", "/v1/prices",
                          "unit_amount=6000&currency=usd&product_data[name]=Dues&recurring[interval]=month")
    status, body = _call(
        stripe_stand_in, "POST", "/v1/payment_links",
        f"line_items[0][price]={price['id']}&line_items[0][quantity]=1"
        "&payment_intent_data[setup_future_usage]=off_session",
    )
    assert (status, body["error"]["param"]) == (400, "payment_intent_data")


def test_above_the_rate_limit_requests_get_429(stripe_stand_in):
    stripe_stand_in.rate_limit = 5
    statuses = [_call(stripe_stand_in, "GET", "/v1/prices")[0] for _ in range(8)]
    assert statuses == [200] * 5 + [429] * 3
    assert stripe_stand_in.rate_limited == 3


def test_a_one_time_link_stops_after_its_single_payment(stripe_stand_in):
    price = _price(stripe_stand_in)
    _, link = _call(stripe_stand_in, "POST", "/v1/payment_links",
                    f"line_items[0][price]={price}&line_items[0][quantity]=1"
                    "&restrictions[completed_sessions][limit]=1")
    status, session = _call(stripe_stand_in, "POST", f"/_stand_in/payment_links/{link['id']}/complete",
                            "amount_total=1400&paid=false")
    assert (status, session["amount_total"], session["payment_status"]) == (200, 1400, "unpaid")
    assert stripe_stand_in.payment_links[link["id"]]["active"] is False
    status, _ = _call(stripe_stand_in, "POST", f"/_stand_in/payment_links/{link['id']}/complete")
    assert status == 400


def test_a_refusal_from_inside_the_endpoint_is_replayed_to_its_key_until_stripe_forgets_it(stripe_stand_in):
    price = _price(stripe_stand_in)
    body = f"line_items[0][price]={price}&line_items[0][quantity]=1"
    stripe_stand_in.inject("refuse", status=400, message="The account cannot take payments")
    assert _call(stripe_stand_in, "POST", "/v1/payment_links", body, idempotency_key="k")[0] == 400
    status, _ = _call(stripe_stand_in, "POST", "/v1/payment_links", body, idempotency_key="k")
    assert status == 400 and stripe_stand_in.requests[-1].replayed  # as Stripe keeps a refusal under its key

    stripe_stand_in.forget_idempotency_keys()  # a day later
    status, link = _call(stripe_stand_in, "POST", "/v1/payment_links", body, idempotency_key="k")
    assert status == 200 and list(stripe_stand_in.payment_links) == [link["id"]]


def test_payment_links_are_listed_and_filtered_by_active(stripe_stand_in):
    price = _price(stripe_stand_in)
    ids = [_call(stripe_stand_in, "POST", "/v1/payment_links",
                 f"line_items[0][price]={price}&line_items[0][quantity]=1&metadata[link_id]={n}")[1]["id"]
           for n in range(3)]
    _call(stripe_stand_in, "POST", f"/v1/payment_links/{ids[1]}", "active=false")
    _, everything = _call(stripe_stand_in, "GET", "/v1/payment_links", "limit=2")
    _, active = _call(stripe_stand_in, "GET", "/v1/payment_links", "active=true")
    assert ([link["id"] for link in everything["data"]], everything["has_more"]) == ([ids[2], ids[1]], True)
    assert [link["metadata"]["link_id"] for link in active["data"]] == ["2", "0"]
    assert _call(stripe_stand_in, "GET", "/v1/payment_links", "metadata[link_id]=2")[0] == 400  # no search


def test_mirroring_the_demo_league_lets_payment_sync_check_every_link(engine, session, database_url, monkeypatch):
    """README's try-Stripe-without-an-account path: the stand-in starts with the demo's links."""
    from core.access.leagues import find_tenant
    from core.demo import build_demo_league
    from core.models import LinkStatus, PaymentLink
    from core.payments.stripe_gateway import StripeGateway
    from core.payments.sync import sync_payments
    from core.reporting.balances import outstanding_balances, summarise
    from tests.factories import acting
    from tests.stripe_stand_in import StripeStandIn, _mirror_database

    build_demo_league(session)
    session.commit()
    links = session.scalars(select(PaymentLink)).all()
    with StripeStandIn() as stand_in:
        assert _mirror_database(stand_in, database_url) == len(links)
        # Links deactivated here stay on at Stripe until switched off (the demo's treasurer's
        # cash payments retired some; the next backfill switches them off).
        assert {link.stripe_payment_link_id for link in links
                if link.status is not LinkStatus.DEACTIVATED or link.stripe_deactivation_pending} == {
            i for i, link in stand_in.payment_links.items() if link["active"]}
        admin = acting(find_tenant(session, "demo"))
        owed = summarise(outstanding_balances(session, admin)).total_cents
        gateway = StripeGateway("sk_test_mirror", api_base=stand_in.api_base, requests_per_second=1000)
        result = sync_payments(engine, admin, gateway, full=True)
        assert result.ok, result.errors
        assert summarise(outstanding_balances(session, admin)).total_cents == owed


# --- paying through a link by its address (README: trying Stripe with the stand-in) ---------------


def test_a_link_is_paid_by_its_address_from_the_command_line(stripe_stand_in, capsys):
    from tests.stripe_stand_in import pay

    stripe_stand_in.add_payment_link("plink_reg1", amount_cents=15000)
    url = stripe_stand_in.payment_links["plink_reg1"]["url"]
    assert pay([url, "--stand-in", stripe_stand_in.api_base]) == 0
    assert capsys.readouterr().out.startswith(f"Paid 150.00 USD through {url} (checkout session cs_test_")
    [session] = stripe_stand_in.checkout_sessions
    assert (session["payment_link"], session["payment_status"]) == ("plink_reg1", "paid")


def test_an_address_no_link_has_is_one_clear_error(stripe_stand_in, capsys):
    from tests.stripe_stand_in import pay

    assert pay(["https://buy.stripe.com/test_nothing", "--stand-in", stripe_stand_in.api_base]) == 1
    assert capsys.readouterr().err == "error: No payment link has the address 'https://buy.stripe.com/test_nothing'.\n"
