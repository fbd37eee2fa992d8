"""The Stripe adapter: the only module that imports the Stripe SDK (pinned in requirements.txt).

One ``stripe.StripeClient`` per gateway, pointed at ``STRIPE_API_BASE`` when set (tests and
demos use a local stand-in). What it adds on top of the SDK:

* HTTP 429 is retried with exponential back-off and jitter. The SDK retries connection
  errors, 409s and 5xx itself (``max_network_retries``) but never a rate limit.
* Requests are paced under Stripe's documented limits, 25 requests/s in test mode and 100
  live, told apart by the key (``sk_test_``/``rk_test_`` is test mode). The pace is shared by
  every thread using the gateway, so callers can keep several requests in flight. (The SDK's
  own retries of connection errors and 5xx go out unpaced; they are rare, and a 429 they
  cause is retried here like any other.)
* Every SDK error becomes ``PaymentProviderError`` carrying Stripe's request id.

List calls page by hand rather than with ``auto_paging_iter()`` so every page goes through
the same pacing and 429 handling as any other request.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

import requests
import stripe

from core.errors import PaymentProviderError
from core.payments.gateway import (
    CompletedCheckout,
    DisputeNotice,
    MintedLink,
    PaymentGateway,
    PaymentLinkRequest,
    ProviderEvent,
    RefundReceipt,
    StripeNotConfigured,
    WebhookRejected,
)
from core.settings import Settings, is_live_stripe_key

__all__ = [
    "CompletedCheckout",
    "MintedLink",
    "PaymentGateway",
    "PaymentLinkRequest",
    "RequestPacer",
    "StripeGateway",
    "documented_rate_limit",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

TEST_MODE_REQUESTS_PER_SECOND = 25
LIVE_MODE_REQUESTS_PER_SECOND = 100
# Stay a little under the documented limit: Stripe counts arrivals, and network jitter can
# bunch requests that left here evenly spaced.
PACE_FRACTION_OF_LIMIT = 0.95
LIST_PAGE_SIZE = 100


def documented_rate_limit(api_key: str) -> int:
    """Stripe's documented request rate for the key's mode (unknown keys get the test limit)."""
    if is_live_stripe_key(api_key):
        return LIVE_MODE_REQUESTS_PER_SECOND
    return TEST_MODE_REQUESTS_PER_SECOND


class RequestPacer:
    """Spaces request starts at least ``1 / rate`` seconds apart, across threads.

    A token bucket of depth one: no burst above the rate, and a caller waits only for its
    own slot, so several requests can be in flight while starts stay evenly paced.
    """

    def __init__(
        self,
        requests_per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if requests_per_second <= 0:
            raise ValueError("requests_per_second must be positive")
        self.requests_per_second = requests_per_second
        self._interval = 1.0 / requests_per_second
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_start = 0.0

    def wait_for_slot(self) -> None:
        with self._lock:
            now = self._clock()
            start = max(now, self._next_start)
            self._next_start = start + self._interval
        if start > now:
            self._sleep(start - now)


@dataclass
class GatewayStats:
    """What the gateway did, for benchmarks and logs (not for business logic)."""

    requests: int = 0
    rate_limited: int = 0  # 429 answers received
    rate_limit_retries: int = 0  # of those, retried after back-off
    rate_limit_give_ups: int = 0  # 429s turned into an error: "left unhandled"


class StripeGateway(PaymentGateway):
    """``PaymentGateway`` over one ``stripe.StripeClient``. Safe to share between threads."""

    def __init__(
        self,
        api_key: str,
        *,
        api_base: str | None = None,
        max_network_retries: int = 2,
        requests_per_second: float | None = None,
        max_rate_limit_retries: int = 8,
        rate_limit_backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 16.0,
        timeout_seconds: float = 30.0,
    ) -> None:
        if not api_key:
            raise StripeNotConfigured()
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base.rstrip("/")} if api_base else None,
            max_network_retries=max_network_retries,
            http_client=stripe.RequestsClient(timeout=timeout_seconds),
        )
        rate = requests_per_second or documented_rate_limit(api_key) * PACE_FRACTION_OF_LIMIT
        self.pacer = RequestPacer(rate)
        self.live_mode = is_live_stripe_key(api_key)
        self._max_rate_limit_retries = max_rate_limit_retries
        self._backoff = rate_limit_backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._stats_lock = threading.Lock()
        self.stats = GatewayStats()

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> StripeGateway:
        """A gateway for ``STRIPE_API_KEY`` and ``STRIPE_API_BASE`` as configured now."""
        if not settings.stripe_api_key:
            raise StripeNotConfigured()
        return cls(
            settings.stripe_api_key.reveal(), api_base=settings.stripe_api_base, **overrides
        )

    # -- the port -------------------------------------------------------------------------

    def create_price(
        self,
        *,
        amount_cents: int,
        currency: str,
        product_name: str,
        metadata: Mapping[str, str],
        idempotency_key: str,
        product_id: str | None = None,
    ) -> str:
        params: stripe.params.PriceCreateParams = {
            "unit_amount": amount_cents,
            "currency": currency.lower(),
            "metadata": dict(metadata),
        }
        if product_id:
            params["product"] = product_id
        else:
            params["product_data"] = {"name": product_name, "metadata": dict(metadata)}
        price = self._call(
            "create a price",
            lambda: self._client.v1.prices.create(params, {"idempotency_key": idempotency_key}),
        )
        return str(price.id)

    def create_product(self, *, name: str, metadata: Mapping[str, str], idempotency_key: str) -> str:
        params: stripe.params.ProductCreateParams = {"name": name, "metadata": dict(metadata)}
        product = self._call(
            "create a product",
            lambda: self._client.v1.products.create(params, {"idempotency_key": idempotency_key}),
        )
        return str(product.id)

    def create_payment_link(self, request: PaymentLinkRequest, *, idempotency_key: str) -> MintedLink:
        link = self._call(
            "create a payment link",
            lambda: self._client.v1.payment_links.create(
                payment_link_params(request), {"idempotency_key": idempotency_key}
            ),
        )
        return _minted_link(link)

    def deactivate_payment_link(self, link_id: str) -> MintedLink:
        link = self._call(
            f"deactivate payment link {link_id}",
            lambda: self._client.v1.payment_links.update(link_id, {"active": False}),
        )
        return _minted_link(link)

    def list_payment_links(self, *, active: bool | None = None) -> Iterator[MintedLink]:
        params: stripe.params.PaymentLinkListParams = {"limit": LIST_PAGE_SIZE}
        if active is not None:
            params["active"] = active
        while True:
            page = self._call("list payment links", partial(self._client.v1.payment_links.list, params.copy()))
            for link in page.data:
                yield _minted_link(link)
            if not page.has_more or not page.data:
                return
            params["starting_after"] = page.data[-1].id

    def list_completed_checkout_sessions(
        self, *, payment_link: str | None = None, created_since: datetime | None = None
    ) -> Iterator[CompletedCheckout]:
        params: stripe.params.checkout.SessionListParams = {
            "status": "complete",
            "limit": LIST_PAGE_SIZE,
        }
        if payment_link:
            params["payment_link"] = payment_link
        if created_since is not None:
            params["created"] = {"gte": int(created_since.timestamp())}
        while True:
            page = self._call("list checkout sessions", partial(self._client.v1.checkout.sessions.list, params.copy()))
            for session in page.data:
                yield _completed_checkout(session)
            if not page.has_more or not page.data:
                return
            params["starting_after"] = page.data[-1].id

    def list_events(
        self, *, types: Sequence[str], created_since: datetime | None = None
    ) -> Iterator[ProviderEvent]:
        params: stripe.params.EventListParams = {"types": list(types), "limit": LIST_PAGE_SIZE}
        if created_since is not None:
            params["created"] = {"gte": int(created_since.timestamp())}
        while True:
            page = self._call("list events", partial(self._client.v1.events.list, params.copy()))
            for event in page.data:
                yield _provider_event(event)
            if not page.has_more or not page.data:
                return
            params["starting_after"] = page.data[-1].id

    def checkout_for_payment_intent(self, payment_intent_id: str) -> CompletedCheckout | None:
        params: stripe.params.checkout.SessionListParams = {"payment_intent": payment_intent_id, "limit": 1}
        page = self._call(f"find the Checkout Session of {payment_intent_id}",
                          partial(self._client.v1.checkout.sessions.list, params))
        return _completed_checkout(page.data[0]) if page.data else None

    def list_refunds(
        self, *, payment_intent_id: str | None = None, created_since: datetime | None = None
    ) -> Iterator[RefundReceipt]:
        params: stripe.params.RefundListParams = {"limit": LIST_PAGE_SIZE}
        if payment_intent_id:
            params["payment_intent"] = payment_intent_id
        if created_since is not None:
            params["created"] = {"gte": int(created_since.timestamp())}
        while True:
            page = self._call("list refunds", partial(self._client.v1.refunds.list, params.copy()))
            for refund in page.data:
                yield _refund_receipt(refund)
            if not page.has_more or not page.data:
                return
            params["starting_after"] = page.data[-1].id

    def refund(
        self,
        *,
        amount_cents: int,
        idempotency_key: str,
        checkout_session: str | None = None,
        payment_intent: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> RefundReceipt:
        intent = payment_intent or self.payment_intent_of(checkout_session)
        params: stripe.params.RefundCreateParams = {
            "payment_intent": intent,
            "amount": amount_cents,
            "metadata": dict(metadata or {}),
        }
        refund = self._call(
            "refund a payment",
            lambda: self._client.v1.refunds.create(params, {"idempotency_key": idempotency_key}),
        )
        return _refund_receipt(refund)

    def payment_intent_of(self, checkout_session: str | None) -> str:
        if not checkout_session:
            raise ValueError("a refund names a Checkout Session or a PaymentIntent")
        session = self._call(
            f"look up Checkout Session {checkout_session}",
            lambda: self._client.v1.checkout.sessions.retrieve(checkout_session),
        )
        intent = _id_of(getattr(session, "payment_intent", None))
        if intent is None:
            raise PaymentProviderError(
                f"Stripe has no payment to refund in Checkout Session {checkout_session}", changed_nothing=True
            )
        return intent

    # -- plumbing -------------------------------------------------------------------------

    def _call(self, action: str, request: Callable[[], T]) -> T:
        """Run one SDK call paced, retrying 429s with back-off; SDK errors become domain errors."""
        attempt = 0
        while True:
            self.pacer.wait_for_slot()
            self._count("requests")
            try:
                return request()
            except stripe.RateLimitError as exc:
                self._count("rate_limited")
                attempt += 1
                if attempt > self._max_rate_limit_retries:
                    self._count("rate_limit_give_ups")
                    raise _provider_error(action, exc, retryable=True) from exc
                self._count("rate_limit_retries")
                delay = self._backoff_delay(attempt)
                log.info("Stripe rate limit on %s; retry %d in %.2fs", action, attempt, delay)
                time.sleep(delay)
            except stripe.StripeError as exc:
                raise _provider_error(action, exc, retryable=_retryable(exc)) from exc

    def _backoff_delay(self, attempt: int) -> float:
        ceiling = min(self._backoff * (2 ** (attempt - 1)), self._max_backoff)
        return random.uniform(ceiling / 2, ceiling)

    def _count(self, name: str) -> None:
        with self._stats_lock:
            setattr(self.stats, name, getattr(self.stats, name) + 1)


def payment_link_params(request: PaymentLinkRequest) -> stripe.params.PaymentLinkCreateParams:
    """The exact Stripe parameters for a link (typed by the SDK's own ``PaymentLinkCreateParams``)."""
    params: stripe.params.PaymentLinkCreateParams = {
        "line_items": [{"price": request.price_id, "quantity": 1}],
        "metadata": dict(request.metadata),
        "after_completion": {"type": "redirect", "redirect": {"url": request.success_url}},
    }
    if request.submit_message:
        params["custom_text"] = {"submit": {"message": request.submit_message}}
    if request.single_payment:
        params["restrictions"] = {"completed_sessions": {"limit": 1}}
    if request.save_payment_method:
        # Checkout only attaches the saved card to a Customer it creates; without one the
        # card is not reusable. Both are payment-mode (one-time price) options.
        params["payment_intent_data"] = {"setup_future_usage": "off_session"}
        params["customer_creation"] = "always"
    return params


def _minted_link(link: Any) -> MintedLink:
    return MintedLink(id=str(link.id), url=str(link.url), active=bool(link.active), metadata=_metadata_of(link))


def _completed_checkout(session: Any) -> CompletedCheckout:
    metadata = getattr(session, "metadata", None)
    metadata = metadata.to_dict() if metadata is not None else {}
    return CompletedCheckout(
        id=str(session.id),
        payment_link_id=_id_of(getattr(session, "payment_link", None)),
        payment_status=str(getattr(session, "payment_status", None) or "unpaid"),
        amount_total=getattr(session, "amount_total", None),
        currency=getattr(session, "currency", None),
        created=_when(getattr(session, "created", 0)),
        metadata={str(k): str(v) for k, v in metadata.items()},
        customer_id=_id_of(getattr(session, "customer", None)),
        payment_intent_id=_id_of(getattr(session, "payment_intent", None)),
    )


def verify_webhook(payload: bytes, signature: str | None, secret: str) -> ProviderEvent:
    """The event a webhook request carries, once its ``Stripe-Signature`` is verified with the
    endpoint's signing secret (``stripe.Webhook.construct_event``: the signature and its age);
    ``WebhookRejected`` otherwise."""
    try:
        event = stripe.Webhook.construct_event(payload, signature, secret)
    except stripe.SignatureVerificationError as exc:
        raise WebhookRejected("not signed by Stripe for this endpoint") from exc
    except (ValueError, KeyError, AttributeError) as exc:
        raise WebhookRejected("not a Stripe event") from exc
    try:
        return _provider_event(event)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise WebhookRejected("not a Stripe event") from exc


def _metadata_of(obj: Any) -> dict[str, str]:
    metadata = getattr(obj, "metadata", None)
    return {str(key): str(value) for key, value in (metadata.to_dict() if metadata is not None else {}).items()}


def _refund_receipt(refund: Any) -> RefundReceipt:
    return RefundReceipt(
        id=str(refund.id), amount_cents=int(refund.amount), currency=str(refund.currency),
        status=str(refund.status), payment_intent_id=_id_of(getattr(refund, "payment_intent", None)),
        metadata=_metadata_of(refund),
    )


def _provider_event(event: Any) -> ProviderEvent:
    """An event with what the product reads of its object (the object as it was then)."""
    kind = str(event.type)
    obj = event.data.object
    found = ProviderEvent(id=str(event.id), type=kind, created=_when(event.created), object_id=_id_of(obj))
    if kind.startswith("checkout.session."):
        checkout = _completed_checkout(obj)
        return replace(found, checkout=checkout, payment_intent_id=checkout.payment_intent_id)
    intent = _id_of(getattr(obj, "payment_intent", None))
    if kind.startswith("charge.dispute."):
        dispute = DisputeNotice(id=str(obj.id), amount_cents=int(obj.amount), currency=str(obj.currency),
                                reason=str(getattr(obj, "reason", None) or "general"), status=str(obj.status))
        return replace(found, payment_intent_id=intent, dispute=dispute)
    return replace(found, payment_intent_id=intent)


def _when(timestamp: Any) -> datetime:
    return datetime.fromtimestamp(int(timestamp or 0), tz=UTC)


def _id_of(value: Any) -> str | None:
    if value is None:
        return None
    return str(value if isinstance(value, str) else getattr(value, "id", value))


def _retryable(exc: stripe.StripeError) -> bool:
    if isinstance(exc, stripe.APIConnectionError):
        return True
    return exc.http_status is not None and (exc.http_status >= 500 or exc.http_status == 409)


def _one_line_reason(exc: stripe.StripeError) -> str:
    """The SDK's message as one line. Connection errors carry a multi-line support notice and
    a urllib3 traceback in text; the operator needs only whether Stripe could not be reached
    or did not answer in time (which may mean it did the work: a rerun finds out)."""
    if isinstance(exc, stripe.APIConnectionError):
        if _answer_timed_out(exc):
            return "Stripe did not answer in time (it may still have done what was asked; running again finds out)"
        return "could not connect to Stripe (check STRIPE_API_BASE and the network)"
    return " ".join((exc.user_message or type(exc).__name__).split())


def _answer_timed_out(exc: stripe.APIConnectionError) -> bool:
    """The request reached Stripe but no answer came in time.

    The SDK raises ``APIConnectionError`` for both, from the exception of its HTTP client
    (``stripe.RequestsClient``, built on ``requests``): a read timeout is ``requests``'
    ``Timeout`` but not its ``ConnectTimeout``, which is a connection that was never made.
    """
    cause = exc.__cause__
    return isinstance(cause, requests.exceptions.Timeout) and not isinstance(
        cause, requests.exceptions.ConnectTimeout)


def _provider_error(action: str, exc: stripe.StripeError, *, retryable: bool) -> PaymentProviderError:
    reason = _one_line_reason(exc)
    status = f"HTTP {exc.http_status}: " if exc.http_status else ""
    return PaymentProviderError(
        f"Stripe could not {action}: {status}{reason}",
        request_id=exc.request_id,
        retryable=retryable,
        changed_nothing=_changed_nothing(exc),
        http_status=exc.http_status,
    )


def _changed_nothing(exc: stripe.StripeError) -> bool:
    """Stripe refused the request itself. Not so for an idempotency mismatch: the key's first
    request (with other parameters) may have made something."""
    status = exc.http_status
    if status is None or not 400 <= status < 500 or status in (409, 429):
        return False
    return not isinstance(exc, stripe.IdempotencyError)
