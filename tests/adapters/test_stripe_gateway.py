"""The Stripe adapter, driven through the real SDK client against the local stand-in."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from core.composition import make_payment_gateway
from core.errors import PaymentProviderError
from core.payments.gateway import PaymentLinkRequest, StripeNotConfigured
from core.payments.stripe_gateway import RequestPacer, StripeGateway, documented_rate_limit
from core.settings import load_settings
from tests.stripe_stand_in import ApiError


def _price(gateway: StripeGateway, amount: int = 15000, key: str = "price-key") -> str:
    return gateway.create_price(
        amount_cents=amount, currency="usd", product_name="Registration",
        metadata={"tenant": "westside"}, idempotency_key=key,
    )


def _link(price_id: str, **fields: object) -> PaymentLinkRequest:
    return PaymentLinkRequest(price_id=price_id, success_url="https://league.example/thanks", **fields)


def _fast_gateway(stand_in, **overrides: object) -> StripeGateway:
    options = {"requests_per_second": 1000, "rate_limit_backoff_seconds": 0.01, "max_backoff_seconds": 0.05}
    options.update(overrides)
    return StripeGateway("sk_test_stand_in", api_base=stand_in.api_base, **options)


# -- prices and links --------------------------------------------------------------------------


def test_a_price_is_a_one_time_price_with_its_own_product(stripe_gateway, stripe_stand_in):
    price_id = _price(stripe_gateway, 6000)
    price = stripe_stand_in.prices[price_id]
    assert (price["unit_amount"], price["currency"], price["type"]) == (6000, "usd", "one_time")
    assert stripe_stand_in.products[price["product"]]["name"] == "Registration"
    assert price["metadata"] == {"tenant": "westside"}


def test_a_one_time_link_accepts_one_payment_and_redirects_after_it(stripe_gateway, stripe_stand_in):
    price_id = _price(stripe_gateway)
    link = stripe_gateway.create_payment_link(
        _link(price_id, metadata={"player_id": "7"}, single_payment=True), idempotency_key="one-time"
    )
    assert stripe_stand_in.link_params(link.id) == {
        "line_items": {"0": {"price": price_id, "quantity": "1"}},
        "metadata": {"player_id": "7"},
        "after_completion": {"type": "redirect", "redirect": {"url": "https://league.example/thanks"}},
        "restrictions": {"completed_sessions": {"limit": "1"}},
    }
    assert link.url.startswith("https://buy.stripe.com/") and link.active


def test_a_monthly_link_saves_the_card_on_a_new_customer(stripe_gateway, stripe_stand_in):
    price_id = _price(stripe_gateway, 6000)
    link = stripe_gateway.create_payment_link(
        _link(price_id, metadata={"player_id": "7"}, save_payment_method=True), idempotency_key="monthly"
    )
    assert stripe_stand_in.link_params(link.id) == {
        "line_items": {"0": {"price": price_id, "quantity": "1"}},
        "metadata": {"player_id": "7"},
        "after_completion": {"type": "redirect", "redirect": {"url": "https://league.example/thanks"}},
        "payment_intent_data": {"setup_future_usage": "off_session"},
        "customer_creation": "always",
    }
    session = stripe_stand_in.complete_checkout_session(link.id)
    assert session["customer"].startswith("cus_")


def test_the_same_idempotency_key_returns_the_same_link_without_a_second_one(stripe_gateway, stripe_stand_in):
    price_id = _price(stripe_gateway)
    first = stripe_gateway.create_payment_link(_link(price_id), idempotency_key="same")
    again = stripe_gateway.create_payment_link(_link(price_id), idempotency_key="same")
    assert first == again
    assert len(stripe_stand_in.payment_links) == 1


def test_reusing_a_key_for_other_parameters_is_refused_with_the_stripe_request_id(stripe_gateway):
    price_id = _price(stripe_gateway)
    stripe_gateway.create_payment_link(_link(price_id), idempotency_key="k")
    with pytest.raises(PaymentProviderError) as refused:
        stripe_gateway.create_payment_link(_link(price_id, single_payment=True), idempotency_key="k")
    assert refused.value.request_id and refused.value.request_id.startswith("req_")
    assert refused.value.request_id in str(refused.value)
    assert "same parameters" in str(refused.value)
    assert not refused.value.retryable


def test_two_requests_racing_with_one_key_create_one_link(stripe_stand_in):
    gateway = _fast_gateway(stripe_stand_in)
    price_id = _price(gateway)
    stripe_stand_in.latency = 0.2  # the first request is still running when the second arrives
    results = []

    def mint() -> None:
        results.append(gateway.create_payment_link(_link(price_id), idempotency_key="race"))

    threads = [threading.Thread(target=mint) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2 and results[0] == results[1]
    assert len(stripe_stand_in.payment_links) == 1
    assert stripe_stand_in.count("POST", "/v1/payment_links", status=409) >= 1


def test_deactivating_a_link_stops_it_taking_payments(stripe_gateway, stripe_stand_in):
    link = stripe_gateway.create_payment_link(_link(_price(stripe_gateway)), idempotency_key="d")
    assert stripe_gateway.deactivate_payment_link(link.id).active is False
    assert stripe_stand_in.payment_links[link.id]["active"] is False
    with pytest.raises(ApiError):
        stripe_stand_in.complete_checkout_session(link.id)


def test_deactivating_an_unknown_link_is_a_provider_error(stripe_gateway):
    with pytest.raises(PaymentProviderError, match="No such payment_link"):
        stripe_gateway.deactivate_payment_link("plink_missing")


def test_payment_links_are_listed_newest_first_across_pages_with_their_metadata(stripe_gateway, stripe_stand_in):
    price_id = _price(stripe_gateway)
    made = [stripe_gateway.create_payment_link(_link(price_id, metadata={"link_id": str(n)}), idempotency_key=f"l{n}")
            for n in range(205)]
    stripe_gateway.deactivate_payment_link(made[0].id)

    listed = list(stripe_gateway.list_payment_links())
    active = list(stripe_gateway.list_payment_links(active=True))

    assert [link.id for link in listed] == [link.id for link in reversed(made)]
    assert listed[0].metadata == {"link_id": "204"} and listed[0].url == made[-1].url
    assert len(active) == 204 and made[0].id not in {link.id for link in active}
    assert stripe_stand_in.count("GET", "/v1/payment_links") == 3 + 3  # 100 + 100 + 5, twice


# -- completed checkout sessions ---------------------------------------------------------------


def test_completed_sessions_of_a_link_are_listed_across_pages(stripe_gateway, stripe_stand_in):
    price_id = _price(stripe_gateway, 6000)
    mine = stripe_gateway.create_payment_link(_link(price_id, metadata={"player_id": "1"}), idempotency_key="a")
    other = stripe_gateway.create_payment_link(_link(price_id), idempotency_key="b")
    for second in range(230):
        stripe_stand_in.complete_checkout_session(mine.id, created=1_700_000_000 + second)
    stripe_stand_in.complete_checkout_session(other.id)
    stripe_stand_in.complete_checkout_session(mine.id, paid=False, created=1_700_001_000)

    sessions = list(stripe_gateway.list_completed_checkout_sessions(payment_link=mine.id))

    assert len(sessions) == 231 and len({s.id for s in sessions}) == 231
    assert {s.payment_link_id for s in sessions} == {mine.id}
    newest = sessions[0]
    assert (newest.paid, newest.payment_status, newest.amount_total) == (False, "unpaid", 6000)
    assert newest.metadata == {"player_id": "1"}
    assert newest.created == datetime.fromtimestamp(1_700_001_000, tz=UTC)
    assert all(s.paid for s in sessions[1:])
    assert stripe_stand_in.count("GET", "/v1/checkout/sessions") == 3  # 100 + 100 + 31


def test_completed_sessions_can_be_limited_to_those_since_a_time(stripe_gateway, stripe_stand_in):
    link = stripe_gateway.create_payment_link(_link(_price(stripe_gateway)), idempotency_key="a")
    for created in (1_700_000_000, 1_700_000_100, 1_700_000_200):
        stripe_stand_in.complete_checkout_session(link.id, created=created)
    since = datetime.fromtimestamp(1_700_000_100, tz=UTC)
    sessions = list(stripe_gateway.list_completed_checkout_sessions(created_since=since))
    assert [int(s.created.timestamp()) for s in sessions] == [1_700_000_200, 1_700_000_100]


# -- failures ----------------------------------------------------------------------------------


def test_rate_limit_answers_are_retried_after_a_back_off(stripe_stand_in):
    gateway = _fast_gateway(stripe_stand_in)
    price_id = _price(gateway)
    stripe_stand_in.inject("rate_limit", times=4, path="/v1/payment_links")
    link = gateway.create_payment_link(_link(price_id), idempotency_key="k")
    assert link.id in stripe_stand_in.payment_links
    assert (gateway.stats.rate_limited, gateway.stats.rate_limit_give_ups) == (4, 0)


def test_a_rate_limit_storm_longer_than_the_retries_is_a_retryable_error(stripe_stand_in):
    gateway = _fast_gateway(stripe_stand_in, max_rate_limit_retries=2)
    stripe_stand_in.inject("rate_limit", times=None)
    with pytest.raises(PaymentProviderError) as failed:
        _price(gateway)
    assert failed.value.retryable and "HTTP 429" in str(failed.value)
    assert stripe_stand_in.count(status=429) == 3
    assert gateway.stats.rate_limit_give_ups == 1


def test_a_lost_answer_is_retried_and_replayed_without_a_second_link(stripe_gateway, stripe_stand_in):
    price_id = _price(stripe_gateway)
    stripe_stand_in.inject("drop_after", path="/v1/payment_links")
    link = stripe_gateway.create_payment_link(_link(price_id), idempotency_key="k")
    assert list(stripe_stand_in.payment_links) == [link.id]
    attempts = [r for r in stripe_stand_in.requests if r.path == "/v1/payment_links"]
    assert [(r.dropped, r.replayed) for r in attempts] == [(True, False), (False, True)]


def test_a_server_error_is_retried_by_the_client(stripe_gateway, stripe_stand_in):
    price_id = _price(stripe_gateway)
    stripe_stand_in.inject("server_error", path="/v1/payment_links")
    stripe_gateway.create_payment_link(_link(price_id), idempotency_key="k")
    assert stripe_stand_in.count("POST", "/v1/payment_links") == 2
    assert len(stripe_stand_in.payment_links) == 1


def test_connections_dropped_past_the_retries_are_a_retryable_error(stripe_stand_in):
    gateway = _fast_gateway(stripe_stand_in, max_network_retries=1)
    stripe_stand_in.inject("drop", times=None)
    with pytest.raises(PaymentProviderError) as failed:
        _price(gateway)
    assert failed.value.retryable
    assert stripe_stand_in.count("POST", "/v1/prices") == 2
    # One line an operator can read, not the SDK's support notice and urllib3's story.
    assert str(failed.value) == "Stripe could not create a price: could not connect to Stripe (check " \
        "STRIPE_API_BASE and the network)"


def test_an_answer_that_does_not_come_in_time_is_not_reported_as_no_connection(stripe_stand_in):
    """Stripe got the request and is slow: it may have done the work, so "could not connect" would mislead."""
    gateway = _fast_gateway(stripe_stand_in, max_network_retries=0, timeout_seconds=0.2)
    stripe_stand_in.latency = 1.0
    with pytest.raises(PaymentProviderError) as failed:
        _price(gateway)
    assert failed.value.retryable and not failed.value.changed_nothing
    assert str(failed.value) == ("Stripe could not create a price: Stripe did not answer in time (it may still have "
                                 "done what was asked; running again finds out)")
    assert stripe_stand_in.count("POST", "/v1/prices") == 1


def test_a_refusal_names_the_reason_and_the_request(stripe_gateway, stripe_stand_in):
    stripe_stand_in.inject("error", status=400, message="Amount must be at least 50 cents")
    with pytest.raises(PaymentProviderError, match=r"Amount must be at least 50 cents \(Stripe request req_"):
        _price(stripe_gateway, 10)


def test_only_a_refusal_of_the_request_itself_says_nothing_was_made(stripe_stand_in):
    gateway = _fast_gateway(stripe_stand_in, max_network_retries=1)
    price_id = _price(gateway)

    def failure(**inject: Any) -> PaymentProviderError:
        stripe_stand_in.clear_faults()
        stripe_stand_in.inject(path="/v1/payment_links", **inject)
        with pytest.raises(PaymentProviderError) as failed:
            gateway.create_payment_link(_link(price_id), idempotency_key=f"k{len(stripe_stand_in.requests)}")
        return failed.value

    refused = failure(kind="refuse", status=400, message="The account cannot take payments")
    assert (refused.changed_nothing, refused.http_status) == (True, 400)
    for unknown in (failure(kind="drop", times=None), failure(kind="server_error", times=None),
                    failure(kind="rate_limit", times=None)):
        assert not unknown.changed_nothing  # from here nobody can tell whether the link exists
    stripe_stand_in.clear_faults()
    gateway.create_payment_link(_link(price_id), idempotency_key="reused")
    with pytest.raises(PaymentProviderError) as mismatch:
        gateway.create_payment_link(_link(price_id, single_payment=True), idempotency_key="reused")
    assert not mismatch.value.changed_nothing  # the key's first request made a link


# -- pacing and configuration -----------------------------------------------------------------


def test_the_documented_limit_follows_the_mode_of_the_key():
    assert documented_rate_limit("sk_test_abc") == 25
    assert documented_rate_limit("rk_test_abc") == 25
    assert documented_rate_limit("sk_live_abc") == 100
    assert documented_rate_limit("rk_live_abc") == 100


def test_a_test_mode_gateway_paces_under_twenty_five_requests_a_second():
    assert 20 < StripeGateway("sk_test_x").pacer.requests_per_second < 25
    assert 90 < StripeGateway("sk_live_x").pacer.requests_per_second < 100
    assert StripeGateway("sk_live_x", requests_per_second=10).pacer.requests_per_second == 10


def test_the_pacer_spaces_request_starts_evenly():
    now = [100.0]
    starts = []

    def sleep(seconds: float) -> None:
        now[0] += seconds

    pacer = RequestPacer(4, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        pacer.wait_for_slot()
        starts.append(now[0])
    assert starts == [100.0, 100.25, 100.5, 100.75, 101.0]


def test_requests_paced_under_the_servers_limit_are_never_refused(stripe_stand_in):
    stripe_stand_in.rate_limit = 20
    gateway = StripeGateway("sk_test_x", api_base=stripe_stand_in.api_base, requests_per_second=19)
    for n in range(25):
        _price(gateway, key=f"k{n}")
    assert stripe_stand_in.count(status=429) == 0


def test_without_a_key_the_gateway_explains_what_is_missing(tmp_path):
    settings = load_settings(environ={}, secrets_file=tmp_path / "none.toml")
    with pytest.raises(StripeNotConfigured, match="STRIPE_API_KEY is not set"):
        make_payment_gateway(settings, action="mint payment links")


def test_the_configured_gateway_talks_to_stripe_api_base(stripe_stand_in, tmp_path):
    settings = load_settings(
        environ={"STRIPE_API_KEY": "sk_test_x", "STRIPE_API_BASE": stripe_stand_in.api_base},
        secrets_file=tmp_path / "none.toml",
    )
    gateway = make_payment_gateway(settings)
    gateway.create_price(amount_cents=100, currency="usd", product_name="X", metadata={}, idempotency_key="k")
    assert stripe_stand_in.count("POST", "/v1/prices") == 1
    assert stripe_stand_in.requests[0].api_key == "sk_test_x"
