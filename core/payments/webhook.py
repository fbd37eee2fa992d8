"""Stripe's webhooks, for a league that can expose an address: each verified event starts a sync.

Polling (``sync-payments`` from cron) stays the default and the one way events are applied.
A webhook only says *when* to read them: ``WebhookReceiver.receive`` verifies the request's
signature (in the Stripe adapter, ``stripe.Webhook.construct_event``) and, for an event of the
types payment sync reads, asks for an incremental ``sync_payments`` of the league, which reads
the event back through ``GET /v1/events`` from the cursor and applies it once, as any other.
So a webhook adds no second way of recording a payment, and one that is lost (the server down,
a delivery refused) is applied by the next sync anyway.

Syncs run one at a time on a worker thread; events arriving while one runs ask for one more
after it (Stripe sends a burst of events for one payment: a few syncs, not one per event).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from core.access.permissions import ActingUser, Permission, require
from core.errors import BillingError
from core.payments.events import EVENT_TYPES
from core.payments.gateway import ProviderEvent, WebhookRejected

log = logging.getLogger(__name__)

Verify = Callable[[bytes, "str | None"], ProviderEvent]
RunSync = Callable[[], object]


@dataclass(frozen=True)
class WebhookAnswer:
    """What to answer Stripe: 2xx takes the delivery, 4xx has Stripe try it again later."""

    status: int
    message: str


class WebhookReceiver:
    """Verifies webhook requests and runs payment syncs for them, one at a time."""

    def __init__(self, user: ActingUser, verify: Verify, run_sync: RunSync) -> None:
        require(user, Permission.SYNC_PAYMENTS)
        self._verify = verify
        self._run_sync = run_sync
        self._changed = threading.Condition()
        self._wanted = False  # a sync is asked for and has not started yet
        self._running = False
        self._stopping = False
        self._worker = threading.Thread(target=self._work, name="webhook-sync", daemon=True)
        self._worker.start()

    def receive(self, payload: bytes, signature: str | None) -> WebhookAnswer:
        """Answer one webhook request (the body as received, its ``Stripe-Signature`` header)."""
        try:
            event = self._verify(payload, signature)
        except WebhookRejected as exc:
            log.info("Webhook refused: %s", exc)
            return WebhookAnswer(400, f"refused: {exc}")
        if event.type not in EVENT_TYPES:
            return WebhookAnswer(200, f"{event.type}: not an event payment sync reads")
        with self._changed:
            self._wanted = True
            self._changed.notify_all()
        return WebhookAnswer(200, f"{event.type}: payment sync asked for")

    def wait_until_idle(self, timeout: float | None = None) -> bool:
        """Wait until no sync is asked for or running (for tests and a clean stop)."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._wanted and not self._running, timeout)

    def close(self) -> None:
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        self._worker.join(timeout=30)

    def _work(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._wanted or self._stopping)
                if self._stopping:
                    return
                self._wanted, self._running = False, True
            try:
                self._run_sync()
            except BillingError as exc:  # Stripe or the database refused: the next event or cron retries
                log.warning("Payment sync after a webhook failed: %s", exc)
            finally:
                with self._changed:
                    self._running = False
                    self._changed.notify_all()
