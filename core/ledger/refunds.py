"""Refunds: money given back to a family, through Stripe or outside it.

A refund is an adjustment of kind ``refund`` naming the payment it gives back (never more than
is left of it). It takes back the payment's unallocated money first (the overpayment the
treasurer was asked to refund or keep), then re-opens what the payment settled, most recently
settled first: the family owes that again, unless ``waive_reopened`` waives it in the same
transaction (a player who leaves, refunded and no longer billed).

A Stripe payment is refunded through the payment gateway (``POST /v1/refunds`` for the
Checkout Session's PaymentIntent). The request is committed first (``RefundRequest``), and Stripe
is asked under the request's idempotency key, with the request's id in the refund's metadata.
Should the process stop after Stripe refunded and before the ledger recorded it, the request
stays unfinished; the next refund of that payment (after ``ANSWER_WAIT``, in case the answer is
still on its way elsewhere) looks the request up in Stripe's refunds and records the refund
Stripe made (or finds it recorded by payment sync), reports it and refunds nothing more: the
treasurer may be asking for the same refund again. A request Stripe made nothing for is
finished as such and the new refund goes ahead. So a refund is never made twice, however the
crash, the sync and the retry interleave. ``outside_stripe=True`` records a refund already
made another way (by check, in cash). A refund made in Stripe's own dashboard is recorded by
payment sync from Stripe's events (``record_stripe_refund``), under Stripe's refund id; so is a
dispute the league lost (``record_lost_dispute``), under the dispute's id: the card holder's bank
took the money back.

Stripe's ``charge.refunded`` event for a refund made here can reach payment sync before the
refund is committed (or before a rerun after a crash). A Stripe refund is in the ledger once,
under its id: when the refund Stripe answers with is already recorded, ``refund_payment``
writes nothing and reports that entry and the family's balance; a refund recorded by another
transaction while this one writes it (the unique refund id refuses the second row) ends the
same way.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, Permission, find_in_league, require
from core.errors import InvalidInput, PaymentProviderError
from core.ledger.accounts import PaymentPosition, settled_by_payment
from core.ledger.allocation import reopen_for_refund
from core.ledger.entries import LedgerChange, LedgerWriter, positive_amount, required_text
from core.models import (
    Adjustment,
    AdjustmentKind,
    EntryOrigin,
    LedgerEntryKind,
    Parent,
    Payment,
    PaymentMethod,
    PaymentState,
    RefundRequest,
    Tenant,
    utcnow,
)
from core.payments.gateway import PaymentGateway

# A request unfinished for less than this may still be waiting for Stripe's answer in another
# process: it is not taken for lost until then.
ANSWER_WAIT = timedelta(minutes=5)
# The refund request a Stripe refund was made for, in its metadata.
REQUEST_METADATA = "refund_request"


def refund_idempotency_key(league_key: str, request_id: int) -> str:
    """The key of refund request ``request_id`` (``league_key``: ``Tenant.league_key``)."""
    return f"ledger-refund:{league_key}:q{request_id}"


def refund_payment(
    session: Session,
    user: ActingUser,
    *,
    payment_id: int,
    amount_cents: int,
    reason: str,
    gateway: PaymentGateway | None = None,
    outside_stripe: bool = False,
    waive_reopened: bool = False,
) -> LedgerChange:
    """Refund ``amount_cents`` of a settled payment (see the module docstring).

    A Stripe payment needs ``gateway`` unless ``outside_stripe``. **Commits** the refund's
    request (``RefundRequest``) before Stripe is asked; the caller commits the refund right after
    (should that never happen, the next refund of the payment finishes the request from Stripe's
    own record of it). Then re-open links follow as for any change.
    """
    require(user, Permission.REFUND_PAYMENTS)
    why = required_text(reason, "reason")
    payment, writer, position = _refundable(session, user, payment_id, amount_cents, origin=EntryOrigin.MANUAL)
    if payment.method is PaymentMethod.STRIPE and not outside_stripe:
        if gateway is None:
            raise InvalidInput(
                f"Payment {payment_id} was made through Stripe: refund it through Stripe (configure "
                "STRIPE_API_KEY), or record a refund made outside Stripe."
            )
        if not payment.reference:
            raise InvalidInput(f"Payment {payment_id} has no Checkout Session to refund in Stripe; record a refund "
                               "made outside Stripe instead.")
        earlier = _finish_earlier_request(session, user, gateway, payment, writer)
        if earlier is not None:
            return earlier
        request = _on_record(session, user, payment, amount_cents, why)
        # Committed, so the family's account is locked and checked again before Stripe is asked.
        payment, writer, position = _refundable(session, user, payment_id, amount_cents, origin=EntryOrigin.MANUAL)
        try:
            stripe_refund_id = _refund_at_stripe(session, user, gateway, payment, request)
        except PaymentProviderError as refused:
            if refused.changed_nothing:  # Stripe refused it: certainly no refund, the request is over
                request.finished_at = utcnow()
                session.commit()
            raise  # else nobody can tell yet: the request waits, to be finished from Stripe's record
        request.stripe_refund_id, request.finished_at = stripe_refund_id, utcnow()
        return _record_stripe_refund(session, user, writer, position, request, waive_reopened=waive_reopened)
    return _write_refund(writer, position, amount_cents=amount_cents, reason=why, stripe_refund_id=None,
                         via="made outside Stripe", waive_reopened=waive_reopened)


def record_stripe_refund(
    session: Session,
    user: ActingUser,
    *,
    payment_id: int,
    stripe_refund_id: str,
    amount_cents: int,
    reason: str,
) -> LedgerChange:
    """Record a refund Stripe already made (in Stripe's own dashboard), read by payment sync from
    Stripe's events: as ``refund_payment`` records it, under Stripe's refund id (unique: the
    caller looks it up first, and a refund is recorded once). ``InvalidInput`` when the ledger
    cannot take it (the payment is not settled, or has less left than Stripe refunded); nothing
    is written then. The caller commits.
    """
    require(user, Permission.SYNC_PAYMENTS)
    why = required_text(reason, "reason")
    _, writer, position = _refundable(session, user, payment_id, amount_cents, origin=EntryOrigin.PAYMENT_SYNC)
    return _write_refund(writer, position, amount_cents=amount_cents, reason=why, stripe_refund_id=stripe_refund_id,
                         via="in Stripe's dashboard", waive_reopened=False)


def record_lost_dispute(
    session: Session,
    user: ActingUser,
    *,
    payment_id: int,
    dispute_id: str,
    amount_cents: int,
) -> LedgerChange:
    """Record a dispute the league lost: the card holder's bank took ``amount_cents`` of the
    payment back. It is a refund in the ledger (under the dispute's id, so once), which re-opens
    what the payment settled: the family owes it again, and the treasurer decides whether to ask
    for it or write it off. ``InvalidInput`` when the ledger cannot take it (the payment is not
    settled, or has less left); nothing is written then. The caller commits."""
    require(user, Permission.SYNC_PAYMENTS)
    _, writer, position = _refundable(session, user, payment_id, amount_cents, origin=EntryOrigin.PAYMENT_SYNC)
    return _write_refund(writer, position, amount_cents=amount_cents,
                         reason=f"dispute {dispute_id} lost: the card holder's bank took the payment back",
                         stripe_refund_id=dispute_id, via="by the card holder's bank (a lost dispute)",
                         waive_reopened=False)


def _refundable(session: Session, user: ActingUser, payment_id: int, amount_cents: int, *,
                origin: EntryOrigin) -> tuple[Payment, LedgerWriter, PaymentPosition]:
    """The payment, a writer on its family's (locked) account and its position, once checked
    that ``amount_cents`` can be refunded of it."""
    positive_amount(amount_cents)
    payment = find_in_league(session, user, Payment, payment_id, label="payment")
    parent = find_in_league(session, user, Parent, payment.parent_id, label="parent")
    writer = LedgerWriter(session, user, parent, origin=origin)
    position = writer.account().payment(payment_id)
    if position is None:
        raise InvalidInput(f"Payment {payment_id} was reversed: there is nothing to refund.")
    if position.state is not PaymentState.SETTLED:
        raise InvalidInput(f"Payment {payment_id} is {position.state.value}: only a settled payment can be refunded.")
    left = position.amount_cents - position.refunded_cents
    if amount_cents > left:
        raise InvalidInput(
            f"{writer.money(amount_cents)} is more than the {writer.money(left)} left of payment {payment_id} to refund."
        )
    return payment, writer, position


def _write_refund(writer: LedgerWriter, position: PaymentPosition, *, amount_cents: int, reason: str,
                  stripe_refund_id: str | None, via: str, waive_reopened: bool) -> LedgerChange:
    payment_id, parent = position.payment_id, writer.parent
    reopened = reopen_for_refund(amount_cents, unallocated_cents=position.unallocated_cents,
                                 settled=settled_by_payment(writer.session, writer.user, payment_id))
    refund = writer.adjustment(kind=AdjustmentKind.REFUND, amount_cents=amount_cents, reason=reason,
                               payment_id=payment_id, stripe_refund_id=stripe_refund_id)
    for charge_id, cents in reopened:
        writer.allocation(charge_id, -cents, payment_id=payment_id, adjustment_id=refund.id,
                          origin=EntryOrigin.REFUND)
    if waive_reopened:
        for charge_id, cents in reopened:
            waiver = writer.adjustment(kind=AdjustmentKind.WAIVER, amount_cents=cents, charge_id=charge_id,
                                       reason=f"waived with refund {refund.id}: {reason}")
            writer.allocation(charge_id, cents, adjustment_id=waiver.id)
    summary = f"Refunded {writer.money(amount_cents)} of payment {payment_id} to {parent.name} {via} (entry {refund.id})"
    if reopened:
        reopened_total = writer.money(sum(cents for _, cents in reopened))
        summary += f"; {reopened_total} {'re-opened and waived' if waive_reopened else 'is owed again'}"
    return writer.finish(
        action="ledger.refund", summary=summary, main_entry_id=refund.id, kind=LedgerEntryKind.ADJUSTMENT,
        reopened=[] if waive_reopened else reopened,
        details={"payment_id": payment_id, "amount_cents": amount_cents, "stripe_refund_id": stripe_refund_id,
                 "waived": waive_reopened},
    )


def _recorded_refund(session: Session, user: ActingUser, stripe_refund_id: str) -> Adjustment | None:
    """The refund entry recorded under Stripe's refund id, if any (the league's, or nobody's)."""
    return session.scalars(
        select(Adjustment).where(Adjustment.stripe_refund_id == stripe_refund_id)
        .execution_options(populate_existing=True)
    ).one_or_none()


def _already_recorded(writer: LedgerWriter, refund: Adjustment) -> LedgerChange:
    """What ``refund_payment`` reports when the Stripe refund it made is already in the ledger:
    that entry and the family's balance; nothing is written."""
    if refund.tenant_id != writer.user.tenant_id or refund.parent_id != writer.parent.id:
        raise InvalidInput(f"Stripe refund {refund.stripe_refund_id} is recorded for another account (entry "
                           f"{refund.id}): check the Stripe dashboard.")
    account = writer.account()
    summary = (f"Refunded {writer.money(refund.amount_cents)} of payment {refund.payment_id} to "
               f"{writer.parent.name} through Stripe (entry {refund.id}, already recorded from Stripe's events)")
    return LedgerChange(
        entry_id=refund.id, kind=LedgerEntryKind.ADJUSTMENT, parent_id=writer.parent.id,
        parent_name=writer.parent.name, summary=summary, entry_ids=(), balance_cents=account.balance_cents,
        credit_cents=account.credit_cents, processing_cents=account.processing_cents, currency=writer.currency,
    )


def _refund_at_stripe(session: Session, user: ActingUser, gateway: PaymentGateway, payment: Payment,
                      request: RefundRequest) -> str:
    tenant = session.get_one(Tenant, user.tenant_id)
    receipt = gateway.refund(
        checkout_session=payment.reference,
        amount_cents=request.amount_cents,
        idempotency_key=refund_idempotency_key(tenant.league_key, request.id),
        metadata={"tenant_id": str(tenant.id), "league_key": tenant.league_key, "payment_id": str(payment.id),
                  REQUEST_METADATA: str(request.id), "reason": request.reason[:450]},
    )
    if receipt.amount_cents != request.amount_cents:
        raise InvalidInput(
            f"Stripe refunded {receipt.amount_cents} cents for a refund of {request.amount_cents} (refund "
            f"{receipt.id}): check the Stripe dashboard before recording it."
        )
    return receipt.id


def _record_stripe_refund(session: Session, user: ActingUser, writer: LedgerWriter, position: PaymentPosition,
                          request: RefundRequest, *, waive_reopened: bool) -> LedgerChange:
    """The refund Stripe made for ``request`` (``request.stripe_refund_id``), in the ledger once:
    written, or, when payment sync recorded it first, that entry reported."""
    stripe_refund_id = request.stripe_refund_id
    assert stripe_refund_id is not None
    recorded = _recorded_refund(session, user, stripe_refund_id)
    if recorded is not None:
        return _already_recorded(writer, recorded)
    try:
        with session.begin_nested():
            return _write_refund(writer, position, amount_cents=request.amount_cents, reason=request.reason,
                                 stripe_refund_id=stripe_refund_id, via="through Stripe",
                                 waive_reopened=waive_reopened)
    except IntegrityError:
        recorded = _recorded_refund(session, user, stripe_refund_id)
        if recorded is None:
            raise
        return _already_recorded(writer, recorded)


def _on_record(session: Session, user: ActingUser, payment: Payment, amount_cents: int, reason: str) -> RefundRequest:
    """The request for this refund, committed before Stripe is asked (another one for the same
    payment, unfinished, is refused by the database)."""
    request = RefundRequest(tenant_id=user.tenant_id, payment_id=payment.id, amount_cents=amount_cents,
                            reason=reason, requested_by=user.identity)
    session.add(request)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise InvalidInput(f"Another refund of payment {payment.id} is being made right now: look at the family's "
                           "statement in a few minutes, then refund again if more is owed back.") from None
    return request


def _finish_earlier_request(session: Session, user: ActingUser, gateway: PaymentGateway, payment: Payment,
                            writer: LedgerWriter) -> LedgerChange | None:
    """Finish the payment's unfinished refund request, if any, from Stripe's own record of it.

    Stripe made none for it (the process stopped before asking): it is finished as such, and the
    new refund goes ahead (None). Stripe made it (the process stopped before the ledger recorded
    it): it is recorded now (or was, by payment sync), and that is what is reported; nothing more
    is refunded, since the treasurer may be asking for the same refund again. A request younger
    than ``ANSWER_WAIT`` may still be waiting for Stripe's answer elsewhere: refused."""
    request = session.scalars(
        select(RefundRequest).where(RefundRequest.tenant_id == user.tenant_id, RefundRequest.payment_id == payment.id,
                                    RefundRequest.finished_at.is_(None))
    ).one_or_none()
    if request is None:
        return None
    asked = f"{writer.money(request.amount_cents)} asked of Stripe by {request.requested_by}"
    if utcnow() - request.requested_at < ANSWER_WAIT:
        raise InvalidInput(f"A refund of payment {payment.id} ({asked}) is waiting for Stripe's answer: look at the "
                           "family's statement in a few minutes, then refund again if more is owed back.")
    since = request.requested_at - timedelta(minutes=1)
    made = next((refund for refund in gateway.list_refunds(created_since=since)
                 if refund.metadata.get(REQUEST_METADATA) == str(request.id)
                 and refund.metadata.get("payment_id") == str(payment.id)), None)
    request.finished_at = utcnow()
    if made is None:
        session.flush()
        return None
    request.stripe_refund_id = made.id
    if made.amount_cents != request.amount_cents:
        raise InvalidInput(f"Stripe refunded {made.amount_cents} cents for the refund of {request.amount_cents} "
                           f"asked earlier (refund {made.id}): check the Stripe dashboard before recording it.")
    _, writer, position = _refundable(session, user, payment.id, made.amount_cents, origin=EntryOrigin.MANUAL)
    change = _record_stripe_refund(session, user, writer, position, request, waive_reopened=False)
    return replace(change, summary=(
        f"{change.summary}. It is the refund of {asked} on {request.requested_at:%Y-%m-%d at %H:%M} UTC, whose answer "
        "had not been recorded: nothing more was refunded; refund again if more is owed back"))
