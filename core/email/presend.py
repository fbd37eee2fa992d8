"""Before a send to everyone: bring payments in from Stripe so nobody who paid is reminded.

When Stripe is configured (the driver hands in its payment gateway), the send to everyone goes
ahead only after a complete payment sync: a sync that fails or does not finish refuses the
send (``PaymentsNotSynced``), because sending on old payment data would remind families who
already paid. When Stripe is not configured (no gateway) there is nothing to sync, and the
note says so. When the sync runs is decided in ``core.email.sending``.

``sync_payments`` commits as it goes (durable per link), in units of work it opens from the
session factory it is given: its commits never touch the caller's transaction or the league
lock a campaign start holds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from core.access.permissions import ActingUser, Permission, require
from core.db import Sessions
from core.errors import BillingError, PermissionDenied
from core.payments.gateway import PaymentGateway
from core.payments.sync import SyncResult, sync_payments

log = logging.getLogger(__name__)

# Syncs the league's payments in units of work of its own from the sessions it is given.
PaymentSync = Callable[[Sessions, ActingUser], SyncResult]


class PaymentsNotSynced(BillingError):
    """The send to everyone was refused: payments could not be synced from Stripe first."""


@dataclass(frozen=True)
class PresendSync:
    """Whether payments were synced before sending, and a line saying what happened."""

    ran: bool
    note: str


def sync_payments_first(
    sessions: Sessions,
    user: ActingUser,
    *,
    gateway: PaymentGateway | None,
    sync: PaymentSync | None = None,
) -> PresendSync:
    """Sync payments from Stripe before a send to everyone; refuse the send if that fails.

    ``gateway`` is None when Stripe is not configured: nothing is synced and the note says so.
    Otherwise the sync (``core.payments.sync.sync_payments`` through ``gateway``, or ``sync``)
    runs in units of work of its own from ``sessions``; if it raises or does not complete,
    ``PaymentsNotSynced`` is raised and the caller must not send. What the sync did record is
    kept either way.
    """
    require(user, Permission.SEND_EMAIL)
    if gateway is None:
        return PresendSync(False, "Payments were not synced first: Stripe is not configured.")
    run = sync or _sync_through(gateway)
    try:
        result = run(sessions, user)
        result.raise_for_errors()
    except PermissionDenied:
        raise
    except BillingError as exc:
        log.info("Send to everyone refused: the payment sync failed: %s", exc)  # the caller says so
        raise PaymentsNotSynced(
            f"Payments could not be synced from Stripe ({str(exc).rstrip('.')}); nothing was sent. "
            "Try again, or fix the Stripe problem first."
        ) from None
    return PresendSync(True, f"Payments synced from Stripe first: {result.summary()}")


def _sync_through(gateway: PaymentGateway) -> PaymentSync:
    def run(sessions: Sessions, user: ActingUser) -> SyncResult:
        return sync_payments(sessions, user, gateway)

    return run
