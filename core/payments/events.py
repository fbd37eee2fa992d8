"""Stripe's events, applied once each: the incremental payment sync's source.

Payment sync (``core.payments.sync``) lists ``GET /v1/events`` of ``EVENT_TYPES`` created since
the league's cursor minus ``EVENT_OVERLAP`` and hands each event here or to its own link
recording. Stripe delivers an event at least once, in no fixed order, and keeps it 30 days, so:

* an event is applied once: ``stripe_events_seen`` holds each applied event id, written in the
  transaction of the event's effect (``mark_seen``), and ``unseen`` drops those already there;
  a crash between Stripe answering and the commit leaves the event unseen, and the next sync
  applies it;
* order does not matter: each effect is decided on the current, locked state (a payment that
  settled stays settled when an older snapshot of its session arrives late; a session whose
  delayed payment failed is known as failed, ``failed_sessions``, whatever arrives after);
* the cursor (``stripe_event_cursor``) moves to the start of the last *complete* pass, so an
  interrupted pass is read again; what is older than Stripe keeps is the full sweep's
  (``sync-payments --full``).

What an event means here:

* ``charge.refunded``: every refund of the payment that the ledger does not have yet (one made
  in Stripe's dashboard) is recorded (``core.ledger.refunds.record_stripe_refund``), which
  re-opens what it refunds; one the ledger cannot take is flagged;
* ``charge.dispute.created`` / ``.closed``: the payment is flagged (``payment_flags``), open until
  closed; ``open_disputes`` lists a family's. A dispute lost is also recorded in the ledger
  (``core.ledger.refunds.record_lost_dispute``): the bank took the money back, so what the
  payment settled is owed again.

The Checkout Session events (completed, delayed payment succeeded or failed) are recorded on
their links by payment sync itself, through ``core.ledger.stripe_payments.follow_stripe_link``
like any payment it finds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, Permission, require
from core.errors import InvalidInput
from core.ledger.accounts import stripe_payment_by_reference
from core.ledger.refunds import record_lost_dispute, record_stripe_refund
from core.models import (
    Adjustment,
    FlagKind,
    PaymentFlag,
    PaymentLink,
    Player,
    Product,
    StripeEventCursor,
    StripeEventSeen,
    utcnow,
)
from core.money import format_cents
from core.payments.flags import SyncFlag, record_flag
from core.payments.gateway import REFUND_MADE_STATUSES, CompletedCheckout, DisputeNotice, ProviderEvent, RefundReceipt

__all__ = [
    "CHECKOUT_COMPLETED",
    "CHECKOUT_FAILED",
    "CHECKOUT_SUCCEEDED",
    "EVENT_OVERLAP",
    "EVENT_TYPES",
    "RecordedRefund",
    "open_disputes",
]

CHECKOUT_COMPLETED = "checkout.session.completed"
CHECKOUT_SUCCEEDED = "checkout.session.async_payment_succeeded"
CHECKOUT_FAILED = "checkout.session.async_payment_failed"
CHARGE_REFUNDED = "charge.refunded"
DISPUTE_CREATED = "charge.dispute.created"
DISPUTE_CLOSED = "charge.dispute.closed"
EVENT_TYPES = (CHECKOUT_COMPLETED, CHECKOUT_SUCCEEDED, CHECKOUT_FAILED, CHARGE_REFUNDED, DISPUTE_CREATED,
               DISPUTE_CLOSED)
CHECKOUT_TYPES = frozenset({CHECKOUT_COMPLETED, CHECKOUT_SUCCEEDED, CHECKOUT_FAILED})
# Stripe stamps an event when it happens; it can show in the list a little later. Events read
# twice cost nothing (they are seen), events missed would be lost: read ten minutes back.
EVENT_OVERLAP = timedelta(minutes=10)
_LOOKUP_BATCH = 500
# Stripe keeps events 30 days: those seen longer ago than this are never listed again.
KEEP_SEEN = timedelta(days=35)


@dataclass(frozen=True)
class RecordedRefund:
    """A refund made in Stripe that this sync recorded in the ledger."""

    stripe_refund_id: str
    payment_id: int
    parent_name: str
    amount_cents: int
    currency: str


# -- the cursor and the events seen ---------------------------------------------------------------


def read_cursor(session: Session, user: ActingUser) -> datetime | None:
    """Where the league's last complete pass over the events started; None before the first."""
    cursor = session.get(StripeEventCursor, user.tenant_id)
    return cursor.read_until if cursor is not None else None


def advance_cursor(session: Session, user: ActingUser, started_at: datetime) -> None:
    """Move the cursor to ``started_at``, forward only (a slower pass that started earlier
    must not move it back)."""
    cursor = session.get(StripeEventCursor, user.tenant_id, with_for_update=True)
    if cursor is None:
        session.add(StripeEventCursor(tenant_id=user.tenant_id, read_until=started_at, updated_at=utcnow()))
    elif cursor.read_until < started_at:
        cursor.read_until, cursor.updated_at = started_at, utcnow()


def unseen(session: Session, user: ActingUser, events: Iterable[ProviderEvent]) -> list[ProviderEvent]:
    """``events`` the league has not applied yet, each once, oldest first."""
    distinct = {event.id: event for event in events}
    ids = sorted(distinct)
    seen: set[str] = set()
    for start in range(0, len(ids), _LOOKUP_BATCH):
        seen.update(session.scalars(
            select(StripeEventSeen.event_id).where(StripeEventSeen.tenant_id == user.tenant_id,
                                                   StripeEventSeen.event_id.in_(ids[start:start + _LOOKUP_BATCH]))
        ))
    return sorted((e for e in distinct.values() if e.id not in seen), key=lambda e: (e.created, e.id))


def mark_seen(session: Session, user: ActingUser, events: Iterable[ProviderEvent]) -> None:
    """Record ``events`` as applied, in the caller's transaction (that of their effect). One a
    concurrent sync recorded first is left as it is."""
    for event in events:
        try:
            with session.begin_nested():
                session.add(StripeEventSeen(tenant_id=user.tenant_id, event_id=event.id, event_type=event.type,
                                            object_id=event.object_id, payment_intent_id=event.payment_intent_id,
                                            event_created=event.created))
        except IntegrityError:
            pass


def forget_old_events(session: Session, user: ActingUser, *, now: datetime) -> None:
    """Forget the events older than Stripe keeps (``KEEP_SEEN``): it lists them no more. A
    failed delayed payment stays known (its session stays ``unpaid`` at Stripe for good)."""
    session.execute(
        delete(StripeEventSeen).where(StripeEventSeen.tenant_id == user.tenant_id,
                                      StripeEventSeen.event_created < now - KEEP_SEEN,
                                      StripeEventSeen.event_type != CHECKOUT_FAILED)
        .execution_options(synchronize_session=False)
    )


def sessions_of_payment_intents(session: Session, user: ActingUser, intents: Sequence[str]) -> dict[str, str]:
    """PaymentIntent -> the Checkout Session it belongs to, as the league's applied session
    events tell (no Stripe call); intents no such event named are absent."""
    found: dict[str, str] = {}
    wanted = sorted(set(intents))
    for start in range(0, len(wanted), _LOOKUP_BATCH):
        for intent, session_id in session.execute(
            select(StripeEventSeen.payment_intent_id, StripeEventSeen.object_id).where(
                StripeEventSeen.tenant_id == user.tenant_id,
                StripeEventSeen.event_type.in_(sorted(CHECKOUT_TYPES)),
                StripeEventSeen.payment_intent_id.in_(wanted[start:start + _LOOKUP_BATCH]))
        ):
            if session_id:
                found[str(intent)] = str(session_id)
    return found


def failed_sessions(session: Session, user: ActingUser, session_ids: Sequence[str]) -> set[str]:
    """Of ``session_ids``, the Checkout Sessions whose delayed payment failed (an applied
    ``async_payment_failed``): such a session stays ``complete`` and ``unpaid`` at Stripe."""
    if not session_ids:
        return set()
    return set(session.scalars(
        select(StripeEventSeen.object_id).where(StripeEventSeen.tenant_id == user.tenant_id,
                                                StripeEventSeen.event_type == CHECKOUT_FAILED,
                                                StripeEventSeen.object_id.in_(sorted(set(session_ids))))
    ))


# -- refunds and disputes ----------------------------------------------------------------------------


def apply_refunds(session: Session, user: ActingUser, event: ProviderEvent, checkout: CompletedCheckout | None,
                  refunds: Sequence[RefundReceipt]) -> tuple[list[RecordedRefund], list[SyncFlag]]:
    """Record the refunds of ``event``'s payment the ledger does not have (``refunds``: all the
    payment's refunds, as Stripe listed them; ``checkout``: the session the payment was made in).
    In the caller's transaction, with the event marked seen; the caller commits."""
    require(user, Permission.SYNC_PAYMENTS)
    recorded: list[RecordedRefund] = []
    flags: list[SyncFlag] = []
    payment = stripe_payment_by_reference(session, user, checkout.id) if checkout is not None else None
    known = _recorded_refund_ids(session, user, [refund.id for refund in refunds])
    for refund in sorted(refunds, key=lambda r: r.id):
        if refund.id in known or refund.status not in REFUND_MADE_STATUSES:
            continue
        money = format_cents(refund.amount_cents, refund.currency)
        if payment is None:
            flags.append(_flag(session, user, FlagKind.REFUND_NOT_RECORDED, event, checkout,
                               f"{money} refunded in Stripe (refund {refund.id}) of a payment the ledger does not "
                               "hold; check it in the Stripe dashboard"))
            continue
        try:
            with session.begin_nested():
                change = record_stripe_refund(session, user, payment_id=payment.id, stripe_refund_id=refund.id,
                                              amount_cents=refund.amount_cents,
                                              reason=f"refunded in Stripe (refund {refund.id})")
        except (InvalidInput, IntegrityError) as exc:
            if _recorded_refund_ids(session, user, [refund.id]):
                continue  # the refund made from the ledger, committed while this waited for the family's lock
            if isinstance(exc, IntegrityError):
                raise
            flags.append(_flag(session, user, FlagKind.REFUND_NOT_RECORDED, event, checkout,
                               f"{money} refunded in Stripe (refund {refund.id}) not recorded: {exc}"))
            continue
        recorded.append(RecordedRefund(refund.id, payment.id, change.parent_name, refund.amount_cents,
                                       refund.currency.lower()))
    mark_seen(session, user, [event])
    return recorded, flags


def apply_dispute(session: Session, user: ActingUser, event: ProviderEvent,
                  checkout: CompletedCheckout | None) -> list[SyncFlag]:
    """Flag the payment a dispute event is about; in the caller's transaction, the event marked seen."""
    require(user, Permission.SYNC_PAYMENTS)
    dispute = event.dispute
    assert dispute is not None
    money = format_cents(dispute.amount_cents, dispute.currency)
    reason = dispute.reason.replace("_", " ")
    if event.type == DISPUTE_CREATED:
        kind = FlagKind.DISPUTE
        message = (f"{money} disputed with the card holder's bank ({reason}, dispute {dispute.id}); "
                   "answer it in the Stripe dashboard before its deadline")
    elif dispute.status == "lost":
        kind = FlagKind.DISPUTE_CLOSED
        message = f"dispute {dispute.id} of {money} lost: the money went back to the card holder; " + _lost(
            session, user, dispute, checkout)
    else:
        kind = FlagKind.DISPUTE_CLOSED
        outcome = "won: the money stays with the league" if dispute.status == "won" else f"closed: {dispute.status}"
        message = f"dispute {dispute.id} of {money} {outcome}"
    flags = [_flag(session, user, kind, event, checkout, message)]
    mark_seen(session, user, [event])
    return flags


def _lost(session: Session, user: ActingUser, dispute: DisputeNotice, checkout: CompletedCheckout | None) -> str:
    """Record a lost dispute in the ledger (``record_lost_dispute``), once; what became of it."""
    payment = stripe_payment_by_reference(session, user, checkout.id) if checkout is not None else None
    if payment is None:
        return "the ledger does not hold the payment: check it in the Stripe dashboard"
    if _recorded_refund_ids(session, user, [dispute.id]):
        return "it is in the ledger"
    try:
        with session.begin_nested():
            change, taken = record_lost_dispute(session, user, payment_id=payment.id, dispute_id=dispute.id,
                                                amount_cents=dispute.amount_cents)
    except (InvalidInput, IntegrityError) as exc:
        if _recorded_refund_ids(session, user, [dispute.id]):
            return "it is in the ledger"  # another sync recorded it while this one waited for the family's lock
        if isinstance(exc, IntegrityError):
            raise
        return f"not recorded ({exc}): check it in the Stripe dashboard"
    words = (f"recorded in the ledger (entry {change.entry_id}): what the payment settled is owed again; ask "
             f"{change.parent_name} for it or write it off")
    if taken < dispute.amount_cents:
        words += (f"; {format_cents(dispute.amount_cents - taken, dispute.currency)} more than was left of the "
                  "payment was taken back: check it in the Stripe dashboard")
    return words


def _flag(session: Session, user: ActingUser, kind: FlagKind, event: ProviderEvent,
          checkout: CompletedCheckout | None, message: str) -> SyncFlag:
    """A flag on the session of the payment (the charge or dispute when the session is unknown)."""
    if checkout is None:
        checkout = CompletedCheckout(id=event.payment_intent_id or event.object_id or event.id, payment_link_id=None,
                                     payment_status="paid", amount_total=None, currency=None, created=event.created)
    row = session.execute(
        select(PaymentLink.id, Player.first_name, Player.last_name, Product.name)
        .join(Player, Player.id == PaymentLink.player_id).join(Product, Product.id == PaymentLink.product_id)
        .where(PaymentLink.tenant_id == user.tenant_id, PaymentLink.stripe_payment_link_id == checkout.payment_link_id)
    ).first() if checkout.payment_link_id else None
    paid = CompletedCheckout(id=checkout.id, payment_link_id=checkout.payment_link_id, payment_status="paid",
                             amount_total=checkout.amount_total, currency=checkout.currency, created=checkout.created)
    if row is None:
        return record_flag(session, user, kind, paid, message, link_id=None)
    link_id, first, last, product = row
    return record_flag(session, user, kind, paid, message, link_id=link_id, player_name=f"{first} {last}".strip(),
                       product_name=product)


def _recorded_refund_ids(session: Session, user: ActingUser, refund_ids: Sequence[str]) -> set[str]:
    if not refund_ids:
        return set()
    return {str(found) for found in session.scalars(
        select(Adjustment.stripe_refund_id).where(Adjustment.tenant_id == user.tenant_id,
                                                  Adjustment.stripe_refund_id.in_(sorted(refund_ids)))
    )}


# -- what a family page shows ----------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenDispute:
    """A dispute of one of a family's payments that the bank has not decided yet."""

    checkout_session_id: str
    player_name: str | None
    product_name: str | None
    message: str
    flagged_at: datetime


def open_disputes(session: Session, user: ActingUser, *, parent_id: int) -> list[OpenDispute]:
    """The family's payments under an open dispute (flagged, not closed), newest first.
    Treasurer and admin (``Permission.SYNC_PAYMENTS``, as the flags on the Sync page)."""
    require(user, Permission.SYNC_PAYMENTS)
    rows = session.execute(
        select(PaymentFlag, Player.first_name, Player.last_name, Product.name)
        .join(PaymentLink, (PaymentLink.id == PaymentFlag.payment_link_id)
              & (PaymentLink.tenant_id == PaymentFlag.tenant_id))
        .join(Player, Player.id == PaymentLink.player_id)
        .join(Product, Product.id == PaymentLink.product_id)
        .where(PaymentFlag.tenant_id == user.tenant_id, Player.parent_id == parent_id,
               PaymentFlag.kind.in_([FlagKind.DISPUTE, FlagKind.DISPUTE_CLOSED]))
        .order_by(PaymentFlag.created_at.desc(), PaymentFlag.id.desc())
    ).all()
    closed = {flag.checkout_session_id for flag, *_ in rows if flag.kind is FlagKind.DISPUTE_CLOSED}
    return [
        OpenDispute(flag.checkout_session_id, f"{first} {last}".strip(), product, flag.detail, flag.created_at)
        for flag, first, last, product in rows
        if flag.kind is FlagKind.DISPUTE and flag.checkout_session_id not in closed
    ]
