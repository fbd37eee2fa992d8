"""Refunds through the Stripe adapter: ``POST /v1/refunds`` with the SDK's own parameter names."""

from __future__ import annotations

import pytest

from core.errors import PaymentProviderError
from core.payments.gateway import PaymentLinkRequest


@pytest.fixture
def paid_session(stripe_gateway, stripe_stand_in) -> dict:
    price = stripe_gateway.create_price(amount_cents=15000, currency="usd", product_name="Registration",
                                        metadata={}, idempotency_key="price")
    link = stripe_gateway.create_payment_link(
        PaymentLinkRequest(price_id=price, success_url="https://league.example/thanks"), idempotency_key="link")
    return stripe_stand_in.complete_checkout_session(link.id)


def test_a_checkout_sessions_payment_is_refunded_through_its_payment_intent(stripe_gateway, stripe_stand_in,
                                                                              paid_session):
    receipt = stripe_gateway.refund(checkout_session=paid_session["id"], amount_cents=5000,
                                    idempotency_key="refund-1", metadata={"payment_id": "12"})
    [request] = [r for r in stripe_stand_in.requests if r.path == "/v1/refunds"]
    assert request.params == {"payment_intent": paid_session["payment_intent"], "amount": "5000",
                              "metadata": {"payment_id": "12"}}
    assert request.idempotency_key == "refund-1"
    assert (receipt.amount_cents, receipt.currency, receipt.status, receipt.payment_intent_id) == (
        5000, "usd", "succeeded", paid_session["payment_intent"])


def test_the_same_key_returns_the_same_refund(stripe_gateway, stripe_stand_in, paid_session):
    first = stripe_gateway.refund(checkout_session=paid_session["id"], amount_cents=5000, idempotency_key="same")
    again = stripe_gateway.refund(checkout_session=paid_session["id"], amount_cents=5000, idempotency_key="same")
    assert first == again and len(stripe_stand_in.refunds) == 1


def test_more_than_is_left_is_refused_and_changes_nothing(stripe_gateway, stripe_stand_in, paid_session):
    with pytest.raises(PaymentProviderError, match="greater than unrefunded amount") as refused:
        stripe_gateway.refund(checkout_session=paid_session["id"], amount_cents=15001, idempotency_key="too-much")
    assert refused.value.changed_nothing and stripe_stand_in.refunds == {}


def test_a_processing_payment_cannot_be_refunded(stripe_gateway, stripe_stand_in):
    price = stripe_gateway.create_price(amount_cents=100, currency="usd", product_name="x", metadata={},
                                        idempotency_key="p")
    link = stripe_gateway.create_payment_link(PaymentLinkRequest(price_id=price, success_url="https://x.example"),
                                              idempotency_key="l")
    session = stripe_stand_in.complete_checkout_session(link.id, paid=False)
    with pytest.raises(PaymentProviderError, match="does not have a successful charge"):
        stripe_gateway.refund(checkout_session=session["id"], amount_cents=100, idempotency_key="r")
