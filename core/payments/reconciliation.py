"""What the completed Checkout Sessions of one payment link mean for that link.

Pure rules, no database and no Stripe: ``reconcile_link`` takes the link's current state
and the sessions seen for it, and says what to record and what to flag. Payment sync
applies the decision; keeping the rules here makes each of them testable on its own.

The rules:

* The earliest paid session wins: it marks the link paid (time, amount, session id).
  Every other paid session on the link is a duplicate payment and is flagged, whatever
  the product: one-time links accept one payment, and monthly links are charged off
  session after the first, so a second checkout is always money to look at.
* A paid amount (or currency) that differs from the link's is recorded *and* flagged.
* A completed session still ``unpaid`` is a delayed method still processing: the link
  stays owed and is marked processing.
* A payment on a link we had deactivated is recorded (the money did arrive) and flagged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from core.models import FlagKind, LinkStatus
from core.money import format_cents
from core.payments.gateway import CompletedCheckout


@dataclass(frozen=True)
class LinkState:
    """What the database holds for a link, as far as reconciliation cares."""

    status: LinkStatus
    amount_cents: int
    currency: str
    checkout_session_id: str | None
    processing: bool
    single_payment: bool


@dataclass(frozen=True)
class FlagNote:
    kind: FlagKind
    checkout: CompletedCheckout
    message: str


@dataclass(frozen=True)
class LinkDecision:
    """What to change on the link (``None``: leave as is) and what to report."""

    pay_with: CompletedCheckout | None = None
    amount_mismatch: bool = False
    processing: bool | None = None
    flags: tuple[FlagNote, ...] = field(default_factory=tuple)

    @property
    def changes_link(self) -> bool:
        return self.pay_with is not None or self.processing is not None


def reconcile_link(
    link: LinkState, checkouts: Iterable[CompletedCheckout], *, complete_history: bool
) -> LinkDecision:
    """Decide what ``checkouts`` (the link's completed sessions seen now) mean for ``link``.

    ``complete_history`` is True when ``checkouts`` are *all* the link's sessions (a
    per-link check), so the absence of a processing session can clear ``processing``; a
    time-window listing only ever adds to what is known.
    """
    ordered = sorted(checkouts, key=lambda checkout: (checkout.created, checkout.id))
    paid = [checkout for checkout in ordered if checkout.paid]
    pending = [checkout for checkout in ordered if not checkout.paid]

    if link.status is LinkStatus.PAID:
        extras = [c for c in paid + pending if c.id != link.checkout_session_id]
        return LinkDecision(flags=tuple(_duplicate(link, c) for c in extras))

    if paid:
        winner = paid[0]
        mismatch = _amount_differs(link, winner)
        flags: list[FlagNote] = []
        if link.status is LinkStatus.DEACTIVATED:
            flags.append(FlagNote(
                FlagKind.PAID_AFTER_DEACTIVATION, winner,
                f"paid {_paid(link, winner)} on a link that had been deactivated; recorded as paid, "
                f"check whether another link for the same item is still open or a refund is due",
            ))
        if mismatch:
            flags.append(FlagNote(
                FlagKind.AMOUNT_MISMATCH, winner,
                f"paid {_paid(link, winner)} but the link is for {format_cents(link.amount_cents, link.currency)}; "
                f"recorded as paid",
            ))
        flags.extend(_duplicate(link, c) for c in paid[1:] + pending)
        return LinkDecision(pay_with=winner, amount_mismatch=mismatch, processing=False, flags=tuple(flags))

    if pending and not link.processing:
        return LinkDecision(processing=True)
    if not pending and link.processing and complete_history:
        return LinkDecision(processing=False)
    return LinkDecision()


def _amount_differs(link: LinkState, checkout: CompletedCheckout) -> bool:
    if checkout.amount_total is None:
        return True
    currency = (checkout.currency or link.currency).lower()
    return checkout.amount_total != link.amount_cents or currency != link.currency.lower()


def _paid(link: LinkState, checkout: CompletedCheckout) -> str:
    if checkout.amount_total is None:
        return "an amount Stripe did not report"
    return format_cents(checkout.amount_total, checkout.currency or link.currency)


def _duplicate(link: LinkState, checkout: CompletedCheckout) -> FlagNote:
    state = "paid" if checkout.paid else "still processing"
    limit = " although the link accepts one payment only" if link.single_payment else ""
    return FlagNote(
        FlagKind.DUPLICATE_PAYMENT, checkout,
        f"another checkout ({state}, {_paid(link, checkout)}) on a link that is already paid{limit}; "
        f"not recorded, check whether a refund is due",
    )
