"""Before a send to everyone: bring payments in from Stripe so nobody who paid is reminded.

The sync itself lives in ``core.payment_sync`` (``sync_payments(session, user, gateway)``),
with the gateway from ``core.payment_gateway.configured_payment_gateway``. It is looked up
when a send starts, not imported here, and can be injected, so sending works whether or not
that module is present.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import Any, Callable, Optional

from sqlalchemy.orm import Session

from core.access import ActingUser, Permission, require
from core.settings import Settings

log = logging.getLogger(__name__)

# Syncs the league's payments in the caller's session; returns something that describes it.
PaymentSync = Callable[[Session, ActingUser], Any]


@dataclass(frozen=True)
class PresendSync:
    """Whether payments were synced before sending, and a line saying what happened."""

    ran: bool
    note: str


def sync_payments_first(
    session: Session,
    user: ActingUser,
    *,
    settings: Settings,
    sync: Optional[PaymentSync] = None,
) -> PresendSync:
    """Run the payment sync when Stripe is configured; otherwise say why it was skipped.

    ``sync`` replaces the default lookup of ``core.payment_sync``. The caller commits.
    """
    require(user, Permission.SEND_EMAIL)
    if sync is None:
        if not settings.stripe_configured:
            return PresendSync(False, "Payments were not synced first: Stripe is not configured.")
        sync, missing = _default_payment_sync(settings)
        if sync is None:
            return PresendSync(False, f"Payments were not synced first: {missing}")
    outcome = sync(session, user)
    summary = getattr(outcome, "summary", None)
    text = summary() if callable(summary) else (summary or "done")
    return PresendSync(True, f"Payments synced from Stripe first: {text}")


def _default_payment_sync(settings: Settings) -> tuple[Optional[PaymentSync], str]:
    try:
        module = importlib.import_module("core.payment_sync")
    except ModuleNotFoundError as exc:
        if exc.name not in {"core.payment_sync"}:
            raise
        return None, "the payment sync is not part of this installation."
    sync_payments = getattr(module, "sync_payments", None)
    if sync_payments is None:
        return None, "core.payment_sync has no sync_payments."

    def run(session: Session, user: ActingUser) -> Any:
        from core.payment_gateway import configured_payment_gateway

        return sync_payments(session, user, configured_payment_gateway(settings, action="sync payments"))

    return run, ""
