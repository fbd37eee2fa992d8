"""A local Stripe stand-in: a real HTTP server the real ``stripe.StripeClient`` talks to.

It serves the part of the Stripe API the product uses (Prices, Payment Links, Checkout
Sessions, Refunds, Events), keeps state, and behaves the way Stripe documents where it matters here:

* Form-encoded parameters are decoded (nested brackets, indexed lists) and checked against
  the Stripe SDK's own parameter types (``stripe.params.PaymentLinkCreateParams`` and so
  on): a name the SDK does not declare is refused with ``parameter_unknown``, as Stripe does.
  The allowed names are read from the SDK's type annotations, never copied by hand.
* ``Idempotency-Key``: the same key with the same parameters replays the first response
  (``Idempotent-Replayed: true``); the same key with other parameters is a 400
  ``idempotency_error``; a key whose first request is still running gets a 409. As with
  Stripe, a request refused before it runs (validation, injected 429/500, rate limit) is not
  remembered under its key.
* Every response carries a ``Request-Id`` header.
* Lists (prices, payment links, checkout sessions) come newest first, a page at a time
  (``limit``, ``starting_after``). ``forget_idempotency_keys()`` does what Stripe does to a
  key after 24 hours.

Faults for tests and benchmarks: ``inject("rate_limit" | "server_error" | "drop" |
"drop_after" | "error" | "refuse", times=N, when=...)``, a per-request ``latency``, and a
``rate_limit`` (requests per second, sliding one-second window) above which it answers 429.

Test-only: ``complete_checkout_session(link_id, paid=..., amount_total=...)`` (or
``POST /_stand_in/payment_links/{id}/complete``) records a finished checkout on a link;
``settle_checkout_session(id)`` lets a processing payment succeed and
``fail_checkout_session(id)`` lets it fail; ``refund_in_dashboard(session_id, amount)`` is a
refund made in Stripe's own dashboard; ``open_dispute(session_id)`` and
``close_dispute(dispute_id, won=...)`` a card holder's dispute; ``add_payment_link`` seeds a
link without an HTTP request.

Events (``GET /v1/events``, ``GET /v1/events/{id}``): what the stand-in does emits the event
Stripe would, with a snapshot of the object as it was then (``checkout.session.completed``,
``checkout.session.async_payment_succeeded`` / ``_failed``, ``charge.refunded``,
``charge.dispute.created`` / ``.closed``). Listed newest first with ``limit``,
``starting_after``, ``ending_before``, ``created`` (an integer or ``gt``/``gte``/``lt``/``lte``),
``type`` (``charge.*`` wildcards) or ``types``. ``events_created_at`` sets the clock events are
stamped with (an older or a shuffled order, as Stripe promises no order).

Run it on its own for a demo: ``python -m tests.stripe_stand_in --port 12111``. Pay through a
link by its address, as the CSV and the email show it, with
``python -m tests.stripe_stand_in pay https://buy.stripe.com/test_…`` (``POST /_stand_in/pay``).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import re
import secrets
import socket
import sys
import threading
import time
import types
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ForwardRef, NotRequired, Required, Union, get_args, get_origin
from urllib.parse import parse_qsl, urlsplit

import stripe.params as stripe_params
import stripe.params.checkout as stripe_checkout_params
from stripe._request_options import RequestOptions
from typing_extensions import is_typeddict

# -- parameter schemas, from the SDK's TypedDicts ---------------------------------------------

# RequestOptions (api_key, idempotency_key, ...) travel as headers, never as parameters.
_REQUEST_OPTION_NAMES = frozenset(RequestOptions.__annotations__)


def _resolve(annotation: Any, namespace: Mapping[str, Any]) -> Any:
    """Evaluate a string or ``ForwardRef`` annotation in the SDK module that declared it."""
    if isinstance(annotation, ForwardRef):
        annotation = annotation.__forward_arg__
    if isinstance(annotation, str):
        annotation = eval(annotation, dict(namespace))  # the SDK's own annotation text
    return annotation


def _namespace_of(typed_dict: type) -> Mapping[str, Any]:
    return vars(sys.modules[typed_dict.__module__])


def unknown_parameter(value: Any, annotation: Any, path: str, namespace: Mapping[str, Any]) -> str | None:
    """The first parameter name under ``path`` that ``annotation`` does not declare, or None."""
    annotation = _resolve(annotation, namespace)
    origin = get_origin(annotation)
    if origin in (NotRequired, Required):
        return unknown_parameter(value, get_args(annotation)[0], path, namespace)
    if origin is Union or origin is types.UnionType:
        options = [_resolve(option, namespace) for option in get_args(annotation)]
        if isinstance(value, dict):
            # A mapping matches a TypedDict, a free-form Dict, or a list sent with indices.
            for option in options:
                if is_typeddict(option):
                    return unknown_parameter(value, option, path, namespace)
            for option in options:
                if get_origin(option) in (dict, list) or _is_free_form(option):
                    return unknown_parameter(value, option, path, namespace)
            return _first_nested(value, path)
        return None
    if is_typeddict(annotation):
        if not isinstance(value, dict):
            return None
        declared = {
            name: hint
            for name, hint in annotation.__annotations__.items()
            if name not in _REQUEST_OPTION_NAMES
        }
        for name, item in value.items():
            item_path = f"{path}[{name}]" if path else name
            if name not in declared:
                return item_path
            found = unknown_parameter(item, declared[name], item_path, _namespace_of(annotation))
            if found:
                return found
        return None
    if origin is list:
        if not isinstance(value, dict):
            return None
        element = get_args(annotation)[0]
        for index, item in value.items():
            if not index.isdigit():
                return f"{path}[{index}]"
            found = unknown_parameter(item, element, f"{path}[{index}]", namespace)
            if found:
                return found
        return None
    if origin is dict or _is_free_form(annotation):
        return None  # metadata and the like: any key
    return _first_nested(value, path)  # a scalar was expected


def _is_free_form(annotation: Any) -> bool:
    target = get_origin(annotation) or annotation
    return isinstance(target, type) and target.__name__ == "UntypedStripeObject"


def _first_nested(value: Any, path: str) -> str | None:
    if isinstance(value, dict) and value:
        return f"{path}[{next(iter(value))}]"
    return None


def check_parameters(params: Mapping[str, Any], typed_dict: type) -> str | None:
    """The first undeclared parameter name in ``params`` for the SDK type ``typed_dict``."""
    return unknown_parameter(dict(params), typed_dict, "", _namespace_of(typed_dict))


def decode_form(text: str) -> dict[str, Any]:
    """``a[b][0][c]=1&x=2`` -> ``{"a": {"b": {"0": {"c": "1"}}}, "x": "2"}`` (values stay text)."""
    result: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        head, rest = key.split("[", 1) if "[" in key else (key, "")
        names = [head] + (re.findall(r"\[([^\]]*)\]", "[" + rest) if rest else [])
        node = result
        for name in names[:-1]:
            child = node.get(name)
            if not isinstance(child, dict):
                child = node[name] = {}
            node = child
        node[names[-1]] = value
    return result


def as_list(value: Any) -> list[Any]:
    """An indexed form list (``{"0": ..., "1": ...}``) as a list in index order."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return [value[key] for key in sorted(value, key=lambda k: int(k) if k.isdigit() else -1)]
    return [] if value in (None, "") else [value]


def _as_bool(value: Any) -> bool:
    return str(value).lower() == "true"


def _as_int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError(400, f"Invalid integer: {value}", param=name, code="parameter_invalid_integer") from None


# -- records, faults, errors --------------------------------------------------------------------


@dataclass
class RecordedRequest:
    """One request the stand-in received, with the answer it gave."""

    method: str
    path: str
    params: dict[str, Any]
    idempotency_key: str | None
    api_key: str | None
    status: int | None = None
    replayed: bool = False
    dropped: bool = False


@dataclass
class Fault:
    kind: str  # rate_limit | server_error | drop | drop_after | error | refuse
    remaining: int | None  # None: forever
    when: Callable[[RecordedRequest], bool]
    status: int = 400
    message: str = "Injected failure"
    code: str | None = None


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"type": type, "message": message, "param": param, "code": code}}
        self.body["error"] = {k: v for k, v in self.body["error"].items() if v is not None}


@dataclass
class _IdempotentResult:
    fingerprint: tuple[str, str, str]
    status: int | None = None  # None: still running
    body: Any = None


FAULT_KINDS = {"rate_limit", "server_error", "drop", "drop_after", "error", "refuse"}
_FAULT_STAGE = {"drop_after": "after", "refuse": "run"}  # every other kind: "before" the request runs


# -- the stand-in -----------------------------------------------------------------------------


class StripeStandIn:
    """A threaded HTTP server on 127.0.0.1 (random port) imitating the Stripe API."""

    def __init__(self, *, latency: float = 0.0, rate_limit: float | None = None, port: int = 0) -> None:
        self.latency = latency
        self.rate_limit = rate_limit
        self._port = port
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    # lifecycle

    def start(self) -> StripeStandIn:
        stand_in = self

        class Handler(_Handler):
            pass

        Handler.stand_in = stand_in
        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="stripe-stand-in", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> StripeStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def api_base(self) -> str:
        assert self._server is not None, "start() the stand-in first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def reset(self) -> None:
        """Forget all state, faults and recorded requests (latency and rate limit stay)."""
        with self._lock:
            self.requests: list[RecordedRequest] = []
            self.prices: dict[str, dict[str, Any]] = {}
            self.products: dict[str, dict[str, Any]] = {}
            self.payment_links: dict[str, dict[str, Any]] = {}
            self.link_line_items: dict[str, list[dict[str, Any]]] = {}
            self.checkout_sessions: list[dict[str, Any]] = []
            self.payment_intents: dict[str, dict[str, Any]] = {}
            self.refunds: dict[str, dict[str, Any]] = {}
            self.charges: dict[str, dict[str, Any]] = {}
            self.disputes: dict[str, dict[str, Any]] = {}
            self.events: list[dict[str, Any]] = []
            self.events_created_at: Callable[[], int] = lambda: int(time.time())
            self._idempotency: dict[tuple[str, str], _IdempotentResult] = {}
            self._faults: list[Fault] = []
            self._accepted_at: deque[float] = deque()
            self.rate_limited = 0

    # fault injection

    def inject(
        self,
        kind: str,
        *,
        times: int | None = 1,
        method: str | None = None,
        path: str | None = None,
        when: Callable[[RecordedRequest], bool] | None = None,
        status: int = 400,
        message: str = "Injected failure",
        code: str | None = None,
    ) -> Fault:
        """Make the next ``times`` matching requests fail (``times=None``: all of them).

        ``rate_limit`` answers 429, ``server_error`` 500, ``error`` answers ``status`` with
        ``message``; ``drop`` closes the connection before the request runs and
        ``drop_after`` after it ran (the change is made, the answer is lost). ``refuse``
        answers ``status`` with ``message`` from inside the endpoint, so, as at Stripe, the
        refusal is kept under the request's idempotency key and replayed to a retry; ``error``
        refuses before the request runs and is not kept.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {sorted(FAULT_KINDS)}")

        def matches(request: RecordedRequest) -> bool:
            if method and request.method != method.upper():
                return False
            if path and not request.path.startswith(path):
                return False
            return when(request) if when else True

        fault = Fault(kind, times, matches, status=status, message=message, code=code)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def forget_idempotency_keys(self) -> None:
        """Forget every idempotency key, as Stripe does once a key is 24 hours old."""
        with self._lock:
            self._idempotency.clear()

    # inspection

    def count(self, method: str | None = None, path: str | None = None, *, status: int | None = None) -> int:
        with self._lock:
            return sum(
                1
                for r in self.requests
                if (method is None or r.method == method.upper())
                and (path is None or r.path.startswith(path))
                and (status is None or r.status == status)
            )

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def link_params(self, link_id: str) -> dict[str, Any]:
        """The decoded parameters the link was created with (for asserting on them)."""
        with self._lock:
            return self.payment_links[link_id]["_created_with"]

    # test-only: a parent pays

    def complete_checkout_session(
        self,
        link_id: str,
        *,
        paid: bool = True,
        amount_total: int | None = None,
        created: int | None = None,
        even_if_inactive: bool = False,
    ) -> dict[str, Any]:
        """Record a completed Checkout Session on a link, as if a parent had paid through it.

        ``paid=False`` is a completed session whose payment is still processing.
        ``even_if_inactive`` imitates a checkout that was already open when the link stopped
        taking payments (two parents paying a one-payment link at the same moment).
        """
        with self._lock:
            link = self.payment_links.get(link_id)
            if link is None:
                raise ApiError(404, f"No such payment_link: '{link_id}'", code="resource_missing")
            if not link["active"] and not even_if_inactive:
                raise ApiError(400, "This payment link is not active.", code="payment_link_inactive")
            items = self.link_line_items[link_id]
            total = sum(self.prices[item["price"]]["unit_amount"] * item["quantity"] for item in items)
            # Payment mode: the session's money moves through a PaymentIntent (refunds name it).
            intent = {"id": f"pi_{self._token()}", "object": "payment_intent",
                      "amount": total if amount_total is None else amount_total, "currency": link["currency"],
                      "status": "succeeded" if paid else "processing", "amount_refunded": 0}
            self.payment_intents[intent["id"]] = intent
            session = {
                "id": f"cs_test_{self._token()}",
                "object": "checkout.session",
                "payment_link": link_id,
                "status": "complete",
                "payment_status": "paid" if paid else "unpaid",
                "mode": "payment",
                "amount_total": total if amount_total is None else amount_total,
                "currency": link["currency"],
                "created": int(time.time()) if created is None else created,
                "metadata": dict(link["metadata"]),
                "customer": f"cus_{self._token()}" if link["customer_creation"] == "always" else None,
                "payment_intent": intent["id"],
                "livemode": False,
                "_seq": next(self._ids),
            }
            self.checkout_sessions.append(session)
            if paid:
                self._charge(intent)
            restriction = link.get("restrictions")
            if restriction:
                completed = restriction["completed_sessions"]
                completed["count"] += 1
                if completed["count"] >= completed["limit"]:
                    link["active"] = False  # Stripe deactivates a link whose limit is reached
            self.emit("checkout.session.completed", session)
            return _public(session)

    def link_for_url(self, url: str) -> str:
        """The id of the payment link whose address is ``url`` (as the CSV and the email show it)."""
        with self._lock:
            found = next((link_id for link_id, link in self.payment_links.items() if link["url"] == url.strip()), None)
        if found is None:
            raise ApiError(404, f"No payment link has the address {url!r}.", code="resource_missing")
        return found

    def settle_checkout_session(self, session_id: str) -> dict[str, Any]:
        """A processing (delayed-method) payment succeeds: the session becomes ``paid``.

        As at Stripe, the session keeps its original ``created`` time.
        """
        with self._lock:
            session = self._processing_session(session_id)
            session["payment_status"] = "paid"
            intent = self.payment_intents[session["payment_intent"]]
            intent["status"] = "succeeded"
            self._charge(intent)
            self.emit("checkout.session.async_payment_succeeded", session)
            return _public(session)

    def fail_checkout_session(self, session_id: str) -> dict[str, Any]:
        """A processing (delayed-method) payment fails: as at Stripe, the session stays
        ``complete`` and ``unpaid``, its PaymentIntent wants another payment method, and
        ``checkout.session.async_payment_failed`` is the only sign of it."""
        with self._lock:
            session = self._processing_session(session_id)
            self.payment_intents[session["payment_intent"]]["status"] = "requires_payment_method"
            self.emit("checkout.session.async_payment_failed", session)
            return _public(session)

    def _processing_session(self, session_id: str) -> dict[str, Any]:
        for session in self.checkout_sessions:
            if session["id"] == session_id:
                if session["payment_status"] != "unpaid":
                    raise ApiError(400, f"Checkout Session {session_id} is not processing a payment.")
                return session
        raise ApiError(404, f"No such checkout.session: '{session_id}'", code="resource_missing")

    def session(self, session_id: str) -> dict[str, Any]:
        """A Checkout Session as stored (for tests)."""
        with self._lock:
            return next(s for s in self.checkout_sessions if s["id"] == session_id)

    # test-only: what happens in Stripe's own dashboard and at the card holder's bank

    def refund_in_dashboard(self, session_id: str, amount: int | None = None) -> dict[str, Any]:
        """A refund made in Stripe's dashboard of the payment of ``session_id`` (all that is left
        when ``amount`` is None): the refund exists and ``charge.refunded`` is emitted."""
        with self._lock:
            return self.make_refund(self.session(session_id)["payment_intent"], amount, metadata={})

    def open_dispute(self, session_id: str, *, reason: str = "fraudulent") -> dict[str, Any]:
        """The card holder disputes the payment of ``session_id`` with their bank."""
        with self._lock:
            intent = self.payment_intents[self.session(session_id)["payment_intent"]]
            charge = self.charges[intent["latest_charge"]]
            charge["disputed"] = True
            dispute = {"id": f"dp_{self._token()}", "object": "dispute", "amount": charge["amount"],
                       "currency": charge["currency"], "charge": charge["id"], "payment_intent": intent["id"],
                       "reason": reason, "status": "needs_response", "created": self.events_created_at(),
                       "is_charge_refundable": False, "livemode": False, "metadata": {}}
            self.disputes[dispute["id"]] = dispute
            self.emit("charge.dispute.created", dispute)
            return dict(dispute)

    def close_dispute(self, dispute_id: str, *, won: bool) -> dict[str, Any]:
        """The bank decides a dispute: ``won`` (the money stays) or lost (it went back)."""
        with self._lock:
            dispute = self.disputes[dispute_id]
            dispute["status"] = "won" if won else "lost"
            self.emit("charge.dispute.closed", dispute)
            return dict(dispute)

    def _charge(self, intent: dict[str, Any]) -> dict[str, Any]:
        """The charge of a PaymentIntent whose payment succeeded (its ``latest_charge``)."""
        charge = {"id": f"ch_{self._token()}", "object": "charge", "amount": intent["amount"],
                  "amount_captured": intent["amount"], "amount_refunded": 0, "currency": intent["currency"],
                  "payment_intent": intent["id"], "paid": True, "refunded": False, "disputed": False,
                  "status": "succeeded", "created": self.events_created_at(), "livemode": False, "metadata": {}}
        self.charges[charge["id"]] = charge
        intent["latest_charge"] = charge["id"]
        return charge

    def make_refund(self, intent_id: str, amount: int | None, *, metadata: Mapping[str, Any],
                    reason: str | None = None) -> dict[str, Any]:
        """Refund (part of) a succeeded PaymentIntent, never above what is left; emits ``charge.refunded``."""
        intent = self.payment_intents.get(intent_id)
        if intent is None:
            raise ApiError(404, f"No such payment_intent: '{intent_id}'", param="payment_intent",
                           code="resource_missing")
        if intent["status"] != "succeeded":
            raise ApiError(400, f"This PaymentIntent ({intent_id}) does not have a successful charge to refund.",
                           code="charge_not_refundable")
        left = intent["amount"] - intent["amount_refunded"]
        amount = left if amount is None else amount
        if amount <= 0:
            raise ApiError(400, "Invalid positive integer", param="amount", code="parameter_invalid_integer")
        if amount > left:
            raise ApiError(400, f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})",
                           param="amount", code="amount_too_large")
        intent["amount_refunded"] += amount
        charge = self.charges[intent["latest_charge"]]
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
        refund = {"id": f"re_{self._token()}", "object": "refund", "amount": amount, "currency": intent["currency"],
                  "payment_intent": intent_id, "charge": charge["id"], "status": "succeeded", "reason": reason,
                  "metadata": dict(metadata), "created": self.events_created_at(), "_seq": next(self._ids)}
        self.refunds[refund["id"]] = refund
        self.emit("charge.refunded", charge)
        return _public(refund)

    def emit(self, event_type: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Record an event about ``obj`` with a snapshot of it as it is now, as Stripe does."""
        event = {"id": f"evt_{self._token()}", "object": "event", "api_version": "2025-01-27.acacia",
                 "type": event_type, "created": self.events_created_at(),
                 "data": {"object": json.loads(json.dumps(_public(obj)))}, "livemode": False,
                 "pending_webhooks": 0, "request": {"id": None, "idempotency_key": None}, "_seq": next(self._ids)}
        self.events.append(event)
        return event

    def add_payment_link(
        self,
        link_id: str,
        *,
        amount_cents: int,
        currency: str = "usd",
        metadata: Mapping[str, str] | None = None,
        single_payment: bool = False,
    ) -> None:
        """Put a link (and a Price for it) straight into the state, without an HTTP request.

        For seeding large states in tests and benchmarks; links created through the API
        are what the adapter tests use.
        """
        with self._lock:
            price_id = f"price_{self._token()}"
            self.prices[price_id] = {"id": price_id, "object": "price", "active": True, "currency": currency,
                                     "unit_amount": amount_cents, "product": None, "type": "one_time",
                                     "recurring": None, "metadata": {}, "created": int(time.time()),
                                     "livemode": False}
            self.payment_links[link_id] = {
                "id": link_id, "object": "payment_link", "active": True,
                "url": f"https://buy.stripe.com/test_{link_id}", "currency": currency,
                "metadata": dict(metadata or {}), "customer_creation": "if_required",
                "restrictions": {"completed_sessions": {"count": 0, "limit": 1}} if single_payment else None,
                "livemode": False, "_created_with": {},
            }
            self.link_line_items[link_id] = [{"price": price_id, "quantity": 1}]

    # request handling (called from server threads)

    def _token(self) -> str:
        return f"{next(self._ids):05d}{secrets.token_hex(5)}"

    def handle(self, record: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
        """Answer one request: (status, JSON body or a drop marker, extra headers).

        Checks happen on arrival; ``latency`` then passes while an idempotency key is held
        "in progress", so a second request with the key meanwhile gets Stripe's 409.
        """
        with self._lock:
            early, runnable = self._refuse_early(record)
            if early is None:
                handler, path_id = runnable
                slot = self._reserve_idempotency(record)
        if self.latency:
            time.sleep(self.latency)
        if early is not None:
            return early
        if isinstance(slot, tuple):
            return slot
        with self._lock:
            try:
                refusal = self._take_fault(record, stage="run")
                if refusal is not None:
                    raise _fault_error(refusal)
                status, body = 200, handler(self, record, path_id)
            except ApiError as exc:
                status, body = exc.status, exc.body
            except Exception:
                if slot is not None:  # nothing ran to remember: free the key
                    self._idempotency.pop((record.api_key or "", record.idempotency_key or ""), None)
                raise
            if slot is not None:
                slot.status, slot.body = status, body
            record.status = status
            if self._take_fault(record, stage="after") is not None:
                record.dropped = True
                return 0, _DROP, {}
            return status, body, {}

    def _refuse_early(self, record: RecordedRequest) -> tuple[tuple[int, Any, dict[str, str]] | None, Any]:
        """(answer, None) when refused before running (never remembered under its key),
        else (None, (handler, path id))."""
        self.requests.append(record)
        if not record.api_key:
            return self._error(record, ApiError(401, "You did not provide an API key.")), None
        if self._over_rate_limit():
            self.rate_limited += 1
            return self._error(
                record, ApiError(429, "Too many requests hit the API too quickly.", code="rate_limit")
            ), None
        fault = self._take_fault(record, stage="before")
        if fault is not None:
            if fault.kind == "drop":
                record.dropped = True
                return (0, _DROP, {}), None
            return self._error(record, _fault_error(fault)), None
        route = _route(record.method, record.path)
        if route is None:
            return self._error(record, ApiError(404, f"Unrecognized request URL ({record.method} {record.path}).")), None
        handler, typed_dict, path_id = route
        unknown = check_parameters(record.params, typed_dict)
        if unknown:
            return self._error(
                record,
                ApiError(400, f"Received unknown parameter: {unknown}", param=unknown, code="parameter_unknown"),
            ), None
        return None, (handler, path_id)

    def _error(self, record: RecordedRequest, error: ApiError) -> tuple[int, Any, dict[str, str]]:
        record.status = error.status
        return error.status, error.body, {}

    def _over_rate_limit(self) -> bool:
        if not self.rate_limit:
            return False
        now = time.monotonic()
        window = self._accepted_at
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) >= self.rate_limit:
            return True
        window.append(now)
        return False

    def _take_fault(self, record: RecordedRequest, *, stage: str) -> Fault | None:
        for fault in self._faults:
            if _FAULT_STAGE.get(fault.kind, "before") != stage:
                continue
            if fault.remaining == 0 or not fault.when(record):
                continue
            if fault.remaining is not None:
                fault.remaining -= 1
            return fault
        return None

    def _reserve_idempotency(self, record: RecordedRequest) -> Any:
        """None (no key), a fresh slot to fill, or a finished answer (replay, conflict)."""
        if record.method != "POST" or not record.idempotency_key:
            return None
        key = (record.api_key or "", record.idempotency_key)
        fingerprint = (record.method, record.path, json.dumps(record.params, sort_keys=True))
        existing = self._idempotency.get(key)
        if existing is None:
            slot = _IdempotentResult(fingerprint)
            self._idempotency[key] = slot
            return slot
        if existing.fingerprint != fingerprint:
            return self._error(
                record,
                ApiError(
                    400,
                    "Keys for idempotent requests can only be used with the same parameters they were "
                    f"first used with. Try using a key other than '{record.idempotency_key}' if you "
                    "meant to execute a different request.",
                    type="idempotency_error",
                ),
            )
        if existing.status is None:
            return self._error(
                record,
                ApiError(
                    409,
                    "There is currently another in-progress request using this Stripe token.",
                    type="idempotency_error",
                    code="idempotency_key_in_use",
                ),
            )
        record.status, record.replayed = existing.status, True
        return existing.status, existing.body, {"Idempotent-Replayed": "true"}


_DROP = object()


def _fault_error(fault: Fault) -> ApiError:
    if fault.kind == "rate_limit":
        return ApiError(429, "Too many requests hit the API too quickly.", code="rate_limit")
    if fault.kind == "server_error":
        return ApiError(500, "An unknown error occurred.", type="api_error")
    return ApiError(fault.status, fault.message, code=fault.code)


def _public(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in obj.items() if not key.startswith("_")}


def _list_object(url: str, items: list[dict[str, Any]], params: Mapping[str, Any]) -> dict[str, Any]:
    limit = _as_int(params.get("limit", 10), "limit")
    if not 1 <= limit <= 100:
        raise ApiError(400, "Invalid limit: must be between 1 and 100", param="limit")
    if params.get("starting_after") and params.get("ending_before"):
        raise ApiError(400, "You may only specify one of these parameters: ending_before, starting_after.")
    ids = [item["id"] for item in items]
    for cursor in ("starting_after", "ending_before"):
        if params.get(cursor) and params[cursor] not in ids:
            raise ApiError(404, f"No such object: '{params[cursor]}'", param=cursor)
    if params.get("ending_before"):  # the page just before (newer than) the object, still newest first
        end = ids.index(params["ending_before"])
        start = max(0, end - limit)
        page, has_more = items[start:end], start > 0
    else:
        start = ids.index(params["starting_after"]) + 1 if params.get("starting_after") else 0
        page, has_more = items[start : start + limit], start + limit < len(items)
    return {"object": "list", "url": url, "has_more": has_more, "data": [_public(item) for item in page]}


# -- endpoints ----------------------------------------------------------------------------------


def _create_price(stand_in: StripeStandIn, request: RecordedRequest, _: str | None) -> dict[str, Any]:
    params = request.params
    if "currency" not in params:
        raise ApiError(400, "Missing required param: currency.", param="currency", code="parameter_missing")
    if "unit_amount" not in params:
        raise ApiError(400, "Missing required param: unit_amount.", param="unit_amount", code="parameter_missing")
    product = params.get("product")
    if not product:
        product_data = params.get("product_data") or {}
        if not product_data.get("name"):
            raise ApiError(400, "Missing required param: product_data[name].", param="product_data[name]", code="parameter_missing")
        product = f"prod_{stand_in._token()}"
        stand_in.products[product] = {"id": product, "object": "product", "name": product_data["name"],
                                      "metadata": dict(product_data.get("metadata") or {})}
    elif product not in stand_in.products:
        raise ApiError(400, f"No such product: '{product}'", param="product", code="resource_missing")
    recurring = params.get("recurring")
    price = {
        "id": f"price_{stand_in._token()}",
        "object": "price",
        "active": _as_bool(params.get("active", "true")),
        "currency": params["currency"].lower(),
        "unit_amount": _as_int(params["unit_amount"], "unit_amount"),
        "product": product,
        "type": "recurring" if recurring else "one_time",
        "recurring": {"interval": recurring.get("interval"),
                      "interval_count": _as_int(recurring.get("interval_count", 1), "recurring[interval_count]")}
        if recurring else None,
        "metadata": dict(params.get("metadata") or {}),
        "nickname": params.get("nickname"),
        "created": int(time.time()),
        "livemode": False,
    }
    stand_in.prices[price["id"]] = price
    return price


def _create_product(stand_in: StripeStandIn, request: RecordedRequest, _: str | None) -> dict[str, Any]:
    """``POST /v1/products``: a product prices can then be made on (``price[product]``)."""
    params = request.params
    if not params.get("name"):
        raise ApiError(400, "Missing required param: name.", param="name", code="parameter_missing")
    product = {"id": f"prod_{stand_in._token()}", "object": "product", "name": params["name"],
               "active": True, "metadata": dict(params.get("metadata") or {}), "created": int(time.time()),
               "livemode": False}
    stand_in.products[product["id"]] = product
    return product


def _list_prices(stand_in: StripeStandIn, request: RecordedRequest, _: str | None) -> dict[str, Any]:
    params = request.params
    items = list(reversed(stand_in.prices.values()))
    if "active" in params:
        items = [p for p in items if p["active"] == _as_bool(params["active"])]
    if "currency" in params:
        items = [p for p in items if p["currency"] == params["currency"]]
    if "product" in params:
        items = [p for p in items if p["product"] == params["product"]]
    return _list_object("/v1/prices", items, params)


def _retrieve_price(stand_in: StripeStandIn, request: RecordedRequest, price_id: str | None) -> dict[str, Any]:
    price = stand_in.prices.get(price_id or "")
    if price is None:
        raise ApiError(404, f"No such price: '{price_id}'", param="id", code="resource_missing")
    return price


def _create_payment_link(stand_in: StripeStandIn, request: RecordedRequest, _: str | None) -> dict[str, Any]:
    params = request.params
    raw_items = as_list(params.get("line_items"))
    if not raw_items:
        raise ApiError(400, "Missing required param: line_items.", param="line_items", code="parameter_missing")
    line_items = []
    for index, item in enumerate(raw_items):
        price_id = item.get("price")
        price = stand_in.prices.get(price_id or "")
        if price is None:
            raise ApiError(400, f"No such price: '{price_id}'", param=f"line_items[{index}][price]", code="resource_missing")
        if not price["active"]:
            raise ApiError(400, f"The price '{price_id}' is not active.", param=f"line_items[{index}][price]")
        if "quantity" not in item:
            raise ApiError(400, "Missing required param: line_items[0][quantity].",
                           param=f"line_items[{index}][quantity]", code="parameter_missing")
        line_items.append({"price": price_id, "quantity": _as_int(item["quantity"], "quantity")})
    prices = [stand_in.prices[item["price"]] for item in line_items]
    subscription = any(price["type"] == "recurring" for price in prices)
    if subscription:
        for name in ("payment_intent_data", "customer_creation"):
            if name in params:
                raise ApiError(400, f"You can not pass `{name}` in `subscription` mode.", param=name)
    currencies = {price["currency"] for price in prices}
    if len(currencies) > 1:
        raise ApiError(400, "All prices on a payment link must share a currency.", param="line_items")
    after = params.get("after_completion") or {"type": "hosted_confirmation"}
    if after.get("type") == "redirect" and not (after.get("redirect") or {}).get("url"):
        raise ApiError(400, "Missing required param: after_completion[redirect][url].",
                       param="after_completion[redirect][url]", code="parameter_missing")
    restrictions = None
    if params.get("restrictions"):
        limit = _as_int(params["restrictions"]["completed_sessions"]["limit"], "restrictions[completed_sessions][limit]")
        restrictions = {"completed_sessions": {"count": 0, "limit": limit}}
    intent = params.get("payment_intent_data")
    token = stand_in._token()
    link = {
        "id": f"plink_{token}",
        "object": "payment_link",
        "active": True,
        "url": f"https://buy.stripe.com/test_{token}",
        "currency": currencies.pop(),
        "metadata": dict(params.get("metadata") or {}),
        "after_completion": {
            "type": after.get("type"),
            "redirect": {"url": after["redirect"]["url"]} if after.get("type") == "redirect" else None,
            "hosted_confirmation": None if after.get("type") == "redirect" else {"custom_message": None},
        },
        "customer_creation": params.get("customer_creation", "if_required"),
        "payment_intent_data": {
            "capture_method": intent.get("capture_method", "automatic"),
            "setup_future_usage": intent.get("setup_future_usage"),
            "metadata": dict(intent.get("metadata") or {}),
        } if intent else None,
        "restrictions": restrictions,
        "custom_text": {key: ((params.get("custom_text") or {}).get(key) or None)
                        for key in ("after_submit", "shipping_address", "submit", "terms_of_service_acceptance")},
        "livemode": False,
        "_created_with": params,
    }
    stand_in.payment_links[link["id"]] = link
    stand_in.link_line_items[link["id"]] = line_items
    return _public(link)


def _update_payment_link(stand_in: StripeStandIn, request: RecordedRequest, link_id: str | None) -> dict[str, Any]:
    link = stand_in.payment_links.get(link_id or "")
    if link is None:
        raise ApiError(404, f"No such payment_link: '{link_id}'", param="id", code="resource_missing")
    if "active" in request.params:
        link["active"] = _as_bool(request.params["active"])
    if "metadata" in request.params:
        metadata = request.params["metadata"]
        if metadata == "":
            link["metadata"] = {}
        else:
            for key, value in metadata.items():
                if value == "":
                    link["metadata"].pop(key, None)
                else:
                    link["metadata"][key] = value
    return _public(link)


def _list_payment_links(stand_in: StripeStandIn, request: RecordedRequest, _: str | None) -> dict[str, Any]:
    items = list(reversed(stand_in.payment_links.values()))  # newest first, as Stripe lists
    if "active" in request.params:
        items = [link for link in items if link["active"] == _as_bool(request.params["active"])]
    return _list_object("/v1/payment_links", items, request.params)


def _retrieve_payment_link(stand_in: StripeStandIn, request: RecordedRequest, link_id: str | None) -> dict[str, Any]:
    link = stand_in.payment_links.get(link_id or "")
    if link is None:
        raise ApiError(404, f"No such payment_link: '{link_id}'", param="id", code="resource_missing")
    return _public(link)


def _list_checkout_sessions(stand_in: StripeStandIn, request: RecordedRequest, _: str | None) -> dict[str, Any]:
    params = request.params
    items = sorted(stand_in.checkout_sessions, key=lambda s: (s["created"], s["_seq"]), reverse=True)
    if "payment_link" in params:
        items = [s for s in items if s["payment_link"] == params["payment_link"]]
    if "status" in params:
        items = [s for s in items if s["status"] == params["status"]]
    if "payment_intent" in params:
        items = [s for s in items if s.get("payment_intent") == params["payment_intent"]]
    return _list_object("/v1/checkout/sessions", _created_between(items, params), params)


_CREATED_CHECKS: dict[str, Callable[[int, int], bool]] = {
    "gt": lambda c, b: c > b, "gte": lambda c, b: c >= b, "lt": lambda c, b: c < b, "lte": lambda c, b: c <= b,
}


def _created_between(items: list[dict[str, Any]], params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ``created`` filter of Stripe's lists: an exact time, or ``gt``/``gte``/``lt``/``lte`` bounds."""
    created = params.get("created")
    if isinstance(created, dict):
        bounds = {op: _as_int(value, f"created[{op}]") for op, value in created.items()}
        return [s for s in items if all(_CREATED_CHECKS[op](s["created"], b) for op, b in bounds.items())]
    if created is not None:
        return [s for s in items if s["created"] == _as_int(created, "created")]
    return items


def _retrieve_checkout_session(stand_in: StripeStandIn, request: RecordedRequest, session_id: str | None) -> dict[str, Any]:
    for session in stand_in.checkout_sessions:
        if session["id"] == session_id:
            return _public(session)
    raise ApiError(404, f"No such checkout.session: '{session_id}'", param="id", code="resource_missing")


def _create_refund(stand_in: StripeStandIn, request: RecordedRequest, _: str | None) -> dict[str, Any]:
    """``POST /v1/refunds``: a refund of (part of) a succeeded PaymentIntent, never above what is left."""
    params = request.params
    intent_id = params.get("payment_intent")
    if not intent_id:
        raise ApiError(400, "One of the following params should be provided for this request: payment_intent or "
                            "charge.", code="parameter_missing")
    amount = _as_int(params["amount"], "amount") if "amount" in params else None
    return stand_in.make_refund(intent_id, amount, metadata=params.get("metadata") or {}, reason=params.get("reason"))


def _list_refunds(stand_in: StripeStandIn, request: RecordedRequest, _: str | None) -> dict[str, Any]:
    params = request.params
    items = sorted(stand_in.refunds.values(), key=lambda r: (r["created"], r["_seq"]), reverse=True)
    if "payment_intent" in params:
        items = [r for r in items if r["payment_intent"] == params["payment_intent"]]
    if "charge" in params:
        items = [r for r in items if r["charge"] == params["charge"]]
    return _list_object("/v1/refunds", _created_between(items, params), params)


def _list_events(stand_in: StripeStandIn, request: RecordedRequest, _: str | None) -> dict[str, Any]:
    """``GET /v1/events``: newest first; ``type`` (a ``*`` wildcard allowed) or ``types``, not both."""
    params = request.params
    if "type" in params and "types" in params:
        raise ApiError(400, "You may pass either `type` or `types`, but not both.", param="types")
    items = sorted(stand_in.events, key=lambda e: (e["created"], e["_seq"]), reverse=True)
    if "type" in params:
        wanted = params["type"]
        if wanted.endswith("*"):
            items = [e for e in items if e["type"].startswith(wanted[:-1])]
        else:
            items = [e for e in items if e["type"] == wanted]
    if "types" in params:
        types_ = set(as_list(params["types"]))
        if len(types_) > 20:
            raise ApiError(400, "You may pass at most 20 types.", param="types")
        items = [e for e in items if e["type"] in types_]
    return _list_object("/v1/events", _created_between(items, params), params)


def _retrieve_event(stand_in: StripeStandIn, request: RecordedRequest, event_id: str | None) -> dict[str, Any]:
    for event in stand_in.events:
        if event["id"] == event_id:
            return _public(event)
    raise ApiError(404, f"No such event: '{event_id}'", param="id", code="resource_missing")


def _complete_session(stand_in: StripeStandIn, request: RecordedRequest, link_id: str | None) -> dict[str, Any]:
    params = request.params
    return stand_in.complete_checkout_session(
        link_id or "",
        paid=_as_bool(params.get("paid", "true")),
        amount_total=_as_int(params["amount_total"], "amount_total") if "amount_total" in params else None,
        created=_as_int(params["created"], "created") if "created" in params else None,
    )


def _pay_by_url(stand_in: StripeStandIn, request: RecordedRequest, _: str | None) -> dict[str, Any]:
    params = request.params
    if not params.get("url"):
        raise ApiError(400, "Missing required param: url.", param="url", code="parameter_missing")
    return stand_in.complete_checkout_session(stand_in.link_for_url(params["url"]),
                                              paid=_as_bool(params.get("paid", "true")))


class _PayParams(stripe_params.PaymentLinkRetrieveParams):  # a test route: pay through a link's address
    url: NotRequired[str]
    paid: NotRequired[str]


class _CompleteSessionParams(stripe_params.PaymentLinkRetrieveParams):  # an open-ended test route
    paid: NotRequired[str]
    amount_total: NotRequired[int]
    created: NotRequired[int]


_ID = r"([A-Za-z0-9_]+)"
_ROUTES: list[tuple[str, re.Pattern[str], Callable[..., Any], type]] = [
    ("POST", re.compile(r"^/v1/prices$"), _create_price, stripe_params.PriceCreateParams),
    ("POST", re.compile(r"^/v1/products$"), _create_product, stripe_params.ProductCreateParams),
    ("GET", re.compile(r"^/v1/prices$"), _list_prices, stripe_params.PriceListParams),
    ("GET", re.compile(rf"^/v1/prices/{_ID}$"), _retrieve_price, stripe_params.PriceRetrieveParams),
    ("POST", re.compile(r"^/v1/payment_links$"), _create_payment_link, stripe_params.PaymentLinkCreateParams),
    ("GET", re.compile(r"^/v1/payment_links$"), _list_payment_links, stripe_params.PaymentLinkListParams),
    ("POST", re.compile(rf"^/v1/payment_links/{_ID}$"), _update_payment_link, stripe_params.PaymentLinkUpdateParams),
    ("GET", re.compile(rf"^/v1/payment_links/{_ID}$"), _retrieve_payment_link, stripe_params.PaymentLinkRetrieveParams),
    ("GET", re.compile(r"^/v1/checkout/sessions$"), _list_checkout_sessions, stripe_checkout_params.SessionListParams),
    ("GET", re.compile(rf"^/v1/checkout/sessions/{_ID}$"), _retrieve_checkout_session,
     stripe_checkout_params.SessionRetrieveParams),
    ("POST", re.compile(r"^/v1/refunds$"), _create_refund, stripe_params.RefundCreateParams),
    ("GET", re.compile(r"^/v1/refunds$"), _list_refunds, stripe_params.RefundListParams),
    ("GET", re.compile(r"^/v1/events$"), _list_events, stripe_params.EventListParams),
    ("GET", re.compile(rf"^/v1/events/{_ID}$"), _retrieve_event, stripe_params.EventRetrieveParams),
    ("POST", re.compile(rf"^/_stand_in/payment_links/{_ID}/complete$"), _complete_session, _CompleteSessionParams),
    ("POST", re.compile(r"^/_stand_in/pay$"), _pay_by_url, _PayParams),
]


def _route(method: str, path: str) -> tuple[Callable[..., Any], type, str | None] | None:
    for route_method, pattern, handler, typed_dict in _ROUTES:
        match = pattern.match(path)
        if route_method == method and match:
            return handler, typed_dict, match.group(1) if match.groups() else None
    return None


# -- HTTP ---------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's requests session expects
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    stand_in: StripeStandIn

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        query = body if method == "POST" else url.query
        authorization = self.headers.get("Authorization") or ""
        record = RecordedRequest(
            method=method,
            path=url.path,
            params=decode_form(query),
            idempotency_key=self.headers.get("Idempotency-Key"),
            api_key=authorization[len("Bearer "):] if authorization.startswith("Bearer ") else None,
        )
        status, payload, headers = self.stand_in.handle(record)
        if payload is _DROP:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Request-Id", f"req_{secrets.token_hex(7)}")
        if record.idempotency_key:
            self.send_header("Idempotency-Key", record.idempotency_key)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


def pay(argv: list[str]) -> int:
    """``pay URL``: pay through the link at ``URL`` on a running stand-in, as a parent would."""
    import urllib.error
    import urllib.request
    from urllib.parse import urlencode

    parser = argparse.ArgumentParser(prog="python -m tests.stripe_stand_in pay",
                                     description="Pay through a payment link by its address, on a running stand-in.")
    parser.add_argument("url", help="the link's address, as the CSV and the email show it")
    parser.add_argument("--stand-in", default="http://127.0.0.1:12111", help="the stand-in's address (STRIPE_API_BASE)")
    parser.add_argument("--processing", action="store_true", help="a bank payment still processing, not paid yet")
    args = parser.parse_args(argv)
    body = urlencode({"url": args.url, "paid": "false" if args.processing else "true"}).encode()
    request = urllib.request.Request(f"{args.stand_in.rstrip('/')}/_stand_in/pay", data=body, method="POST",
                                     headers={"Authorization": "Bearer sk_test_local"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            session = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        print(f"error: {json.loads(exc.read()).get('error', {}).get('message', exc)}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: no stand-in answers at {args.stand_in}: {exc}", file=sys.stderr)
        return 1
    state = "processing" if args.processing else "paid"
    print(f"{state.capitalize()} {session['amount_total'] / 100:.2f} {session['currency'].upper()} through {args.url} "
          f"(checkout session {session['id']}). Sync payments to see it: python -m core sync-payments")
    return 0


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["pay"]:
        raise SystemExit(pay(argv[1:]))
    parser = argparse.ArgumentParser(description="Run the local Stripe stand-in until interrupted.")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    parser.add_argument("--rate-limit", type=float, default=None, help="requests per second before 429s")
    parser.add_argument(
        "--mirror", metavar="DATABASE_URL",
        help="start with the payment links that database records (e.g. the demo league's), as if minted here",
    )
    args = parser.parse_args(argv)
    with StripeStandIn(latency=args.latency, rate_limit=args.rate_limit, port=args.port) as stand_in:
        if args.mirror:
            print(f"Mirrored {_mirror_database(stand_in, args.mirror)} payment links from the database", flush=True)
        print(f"Stripe stand-in at {stand_in.api_base} (STRIPE_API_BASE={stand_in.api_base})", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


def _mirror_database(stand_in: StripeStandIn, database_url: str) -> int:
    """Every payment link the database records, into the stand-in; deactivated ones inactive."""
    from sqlalchemy import select

    from core.db import make_engine, session_factory
    from core.models import LinkStatus, PaymentLink
    from tests.stripe_links import mirror_links

    engine = make_engine(database_url)
    try:
        with session_factory(engine)() as session:
            links = session.scalars(select(PaymentLink).where(PaymentLink.stripe_payment_link_id.is_not(None))).all()
            mirror_links(stand_in, session, links)
            for link in links:
                if link.status is LinkStatus.DEACTIVATED and not link.stripe_deactivation_pending:
                    stand_in.payment_links[link.stripe_payment_link_id]["active"] = False
            return len(links)
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
