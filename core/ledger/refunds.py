"""Refunds: money given back to a family, through Stripe or outside it.

A refund is an adjustment of kind ``refund`` naming the payment it gives back (never more than
is left of it). It takes back the payment's unallocated money first (the overpayment the
treasurer was asked to refund or keep), then re-opens what the payment settled, most recently
settled first: the family owes that again, unless ``waive_reopened`` waives it in the same
transaction (a player who leaves, refunded and no longer billed).

A Stripe payment is refunded through the payment gateway (``POST /v1/refunds`` for the
Checkout Session's PaymentIntent) by ``run_refund``, which commits in steps of its own, as the
rule for sessions says (``core.db``): the request is committed first (``RefundRequest``), Stripe
is asked outside any transaction under the request's idempotency key, with the request's id in
the refund's metadata, and its answer is recorded in a last unit of work.

Should the process stop after Stripe refunded and before the ledger recorded it, the request
stays unfinished. The next refund of that payment (after ``ANSWER_WAIT``, in case the answer is
still on its way elsewhere) looks the request up among the payment's refunds at Stripe (this
league's, by its metadata). One Stripe made is recorded (or found recorded by payment sync) and
reported, and nothing more is refunded: the treasurer may be asking for the same refund again.
A request Stripe made nothing for is closed, and the new refund goes ahead. So a refund is
never made twice, however the crash, the sync and the retry interleave, and no payment is left
that cannot be refunded again: a request whose refund the ledger cannot take is closed all the
same, and the treasurer told.

``refund_payment`` records a refund of money received outside Stripe, or, with
``outside_stripe=True``, one already made another way (by check, in cash). A refund made in
Stripe's own dashboard is recorded by payment sync from Stripe's events
(``record_stripe_refund``), under Stripe's refund id; so is a dispute the league lost
(``record_lost_dispute``), under the dispute's id: the card holder's bank took the money back.

Stripe's ``charge.refunded`` event for a refund made here can reach payment sync before the
refund is recorded. A Stripe refund is in the ledger once, under its id: when the refund Stripe
answers with is already recorded, nothing is written and that entry and the family's balance
are reported; a refund recorded by another transaction while this one writes it (the unique
refund id refuses the second row) ends the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, Permission, find_in_league, require
from core.db import Sessions, unit_of_work
from core.errors import InvalidInput, PaymentProviderError
from core.ledger.accounts import PaymentPosition, settled_by_payment
from core.ledger.allocation import reopen_for_refund
from core.ledger.entries import LedgerChange, LedgerWriter, positive_amount, required_text
from core.ledger.workflows import LedgerOutcome, apply_ledger_change
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
from core.money import format_cents
from core.payments.gateway import REFUND_MADE_STATUSES, PaymentGateway, RefundReceipt, names_league

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
    outside_stripe: bool = False,
    waive_reopened: bool = False,
) -> LedgerChange:
    """Refund ``amount_cents`` of a settled payment made outside Stripe (cash, check...), or,
    with ``outside_stripe``, record a refund of a Stripe payment made another way (see the module
    docstring). A Stripe payment refunded through Stripe is ``run_refund``'s. The caller commits.
    """
    require(user, Permission.REFUND_PAYMENTS)
    why = required_text(reason, "reason")
    payment, writer, position = _refundable(session, user, payment_id, amount_cents, origin=EntryOrigin.MANUAL)
    if payment.method is PaymentMethod.STRIPE and not outside_stripe:
        raise InvalidInput(f"Payment {payment_id} was made through Stripe: refund it through Stripe, or record a "
                           "refund made outside Stripe.")
    return _write_refund(writer, position, amount_cents=amount_cents, reason=why, stripe_refund_id=None,
                         via="made outside Stripe", waive_reopened=waive_reopened)


def run_refund(
    sessions: Sessions,
    user: ActingUser,
    *,
    payment_id: int,
    amount_cents: int,
    reason: str,
    gateway: PaymentGateway | None,
    outside_stripe: bool = False,
    waive_reopened: bool = False,
) -> LedgerOutcome:
    """A refund, start to finish (the family page's): **commits**, in units of work of its own.

    A Stripe payment (unless ``outside_stripe``) is refunded through ``gateway``: its request is
    committed first, Stripe is asked outside any transaction, and its answer recorded in a unit
    of its own (see the module docstring). Anything else is ``refund_payment``, through
    ``apply_ledger_change``. Then re-open links follow as for any change."""
    require(user, Permission.REFUND_PAYMENTS)
    with unit_of_work(sessions) as session:
        payment = find_in_league(session, user, Payment, payment_id, label="payment")
        through_stripe = payment.method is PaymentMethod.STRIPE and not outside_stripe
    if not through_stripe:
        return apply_ledger_change(sessions, user, lambda session: refund_payment(
            session, user, payment_id=payment_id, amount_cents=amount_cents, reason=reason,
            outside_stripe=outside_stripe, waive_reopened=waive_reopened), gateway=gateway)
    if gateway is None:
        raise InvalidInput(f"Payment {payment_id} was made through Stripe: refund it through Stripe (configure "
                           "STRIPE_API_KEY), or record a refund made outside Stripe.")
    return _refund_through_stripe(sessions, user, gateway, payment_id=payment_id, amount_cents=amount_cents,
                                  reason=required_text(reason, "reason"), waive_reopened=waive_reopened)


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
) -> tuple[LedgerChange, int]:
    """Record a dispute the league lost: the card holder's bank took ``amount_cents`` of the
    payment back. It is a refund in the ledger (under the dispute's id, so once), which re-opens
    what the payment settled: the family owes it again, and the treasurer decides whether to ask
    for it or write it off. A bank may take back more than is left of a payment already partly
    refunded: what is left is recorded, and the change and the cents recorded are returned.
    ``InvalidInput`` when nothing can be (the payment is not settled, or nothing is left);
    nothing is written then. The caller commits."""
    require(user, Permission.SYNC_PAYMENTS)
    positive_amount(amount_cents)
    writer, position, left = _payment_left(session, user, payment_id, origin=EntryOrigin.PAYMENT_SYNC)
    taken = min(amount_cents, left)
    if taken <= 0:
        raise InvalidInput(f"nothing is left of payment {payment_id} to take back")
    change = _write_refund(writer, position, amount_cents=taken,
                           reason=f"dispute {dispute_id} lost: the card holder's bank took the payment back",
                           stripe_refund_id=dispute_id, via="by the card holder's bank (a lost dispute)",
                           waive_reopened=False)
    return change, taken


def _refundable(session: Session, user: ActingUser, payment_id: int, amount_cents: int, *,
                origin: EntryOrigin) -> tuple[Payment, LedgerWriter, PaymentPosition]:
    """The payment, a writer on its family's (locked) account and its position, once checked
    that ``amount_cents`` can be refunded of it."""
    positive_amount(amount_cents)
    writer, position, left = _payment_left(session, user, payment_id, origin=origin)
    if amount_cents > left:
        raise InvalidInput(
            f"{writer.money(amount_cents)} is more than the {writer.money(left)} left of payment {payment_id} to refund."
        )
    return writer.session.get_one(Payment, payment_id), writer, position


def _payment_left(session: Session, user: ActingUser, payment_id: int, *,
                  origin: EntryOrigin) -> tuple[LedgerWriter, PaymentPosition, int]:
    """A writer on the (locked) account of the family that made a settled payment, the
    payment's position, and what is left of it to refund."""
    writer = _writer_for(session, user, payment_id, origin=origin)
    position = writer.account().payment(payment_id)
    if position is None:
        raise InvalidInput(f"Payment {payment_id} was reversed: there is nothing to refund.")
    if position.state is not PaymentState.SETTLED:
        raise InvalidInput(f"Payment {payment_id} is {position.state.value}: only a settled payment can be refunded.")
    return writer, position, position.amount_cents - position.refunded_cents


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
    """What ``run_refund`` reports when the Stripe refund it made is already in the ledger:
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


# -- through Stripe ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Asked:
    """A refund request, as read in the unit of work that found it."""

    id: int
    payment_id: int
    amount_cents: int
    reason: str
    requested_by: str
    requested_at: datetime
    waive_reopened: bool
    reference: str
    league_key: str
    currency: str

    def words(self) -> str:
        money = format_cents(self.amount_cents, self.currency)
        return f"{money} asked of Stripe by {self.requested_by} on {self.requested_at:%Y-%m-%d at %H:%M} UTC"


def _refund_through_stripe(sessions: Sessions, user: ActingUser, gateway: PaymentGateway, *, payment_id: int,
                           amount_cents: int, reason: str, waive_reopened: bool) -> LedgerOutcome:
    intent: str | None = None
    for _ in range(2):  # an earlier request Stripe made nothing for is closed, then this one is made
        request, earlier = _put_on_record(sessions, user, payment_id=payment_id, amount_cents=amount_cents,
                                          reason=reason, waive_reopened=waive_reopened)
        if earlier is None:
            break
        intent = intent or gateway.payment_intent_of(earlier.reference)
        made = _made_for(gateway, intent, earlier, tenant_id=user.tenant_id)
        if made is not None:  # the earlier request was made: recorded now (or found recorded), nothing more
            outcome = _record_answer(sessions, user, gateway, earlier, made)
            summary = (f"{outcome.change.summary}. It is the refund of {earlier.words()}, whose answer had not "
                       "been recorded: nothing more was refunded; refund again if more is owed back")
            return replace(outcome, change=replace(outcome.change, summary=summary))
        _close(sessions, user, earlier.id)
    if request is None:  # yet another request got there between the two
        raise InvalidInput(f"Another refund of payment {payment_id} is being made right now: look at the family's "
                           "statement in a few minutes, then refund again if more is owed back.")
    try:
        receipt = gateway.refund(
            checkout_session=None if intent else request.reference, payment_intent=intent,
            amount_cents=request.amount_cents, idempotency_key=refund_idempotency_key(request.league_key, request.id),
            metadata={"tenant_id": str(user.tenant_id), "league_key": request.league_key,
                      "payment_id": str(payment_id), REQUEST_METADATA: str(request.id), "reason": reason[:450]},
        )
    except PaymentProviderError as refused:
        if refused.changed_nothing:  # Stripe refused it: certainly no refund, the request is over
            _close(sessions, user, request.id)
        raise  # else nobody can tell yet: the request waits, to be finished from Stripe's record
    return _record_answer(sessions, user, gateway, request, receipt)


def _put_on_record(sessions: Sessions, user: ActingUser, *, payment_id: int, amount_cents: int, reason: str,
                   waive_reopened: bool) -> tuple[_Asked | None, _Asked | None]:
    """In a unit of its own: the refund checked, and either its request committed (the first),
    or the payment's unfinished earlier request, to finish first (the second). An earlier
    request younger than ``ANSWER_WAIT`` may still be waiting for its answer: refused."""
    with unit_of_work(sessions) as session:
        payment, writer, _ = _refundable(session, user, payment_id, amount_cents, origin=EntryOrigin.MANUAL)
        if not payment.reference:
            raise InvalidInput(f"Payment {payment_id} has no Checkout Session to refund in Stripe; record a refund "
                               "made outside Stripe instead.")
        league_key = session.get_one(Tenant, user.tenant_id).league_key
        earlier = session.scalars(
            select(RefundRequest).where(RefundRequest.tenant_id == user.tenant_id,
                                        RefundRequest.payment_id == payment_id, RefundRequest.finished_at.is_(None))
        ).one_or_none()
        if earlier is not None:
            asked = _asked(earlier, payment.reference, league_key, writer.currency)
            if utcnow() - earlier.requested_at < ANSWER_WAIT:
                raise InvalidInput(
                    f"A refund of payment {payment_id} ({asked.words()}) is waiting for Stripe's answer: look at "
                    "the family's statement in a few minutes, then refund again if more is owed back.")
            return None, asked
        request = RefundRequest(tenant_id=user.tenant_id, payment_id=payment_id, amount_cents=amount_cents,
                                reason=reason, requested_by=user.identity, waive_reopened=waive_reopened)
        session.add(request)
        try:
            session.flush()
        except IntegrityError:  # another one, unfinished, got there first (the partial unique index)
            raise InvalidInput(f"Another refund of payment {payment_id} is being made right now: look at the family's "
                               "statement in a few minutes, then refund again if more is owed back.") from None
        return _asked(request, payment.reference, league_key, writer.currency), None


def _asked(request: RefundRequest, reference: str, league_key: str, currency: str) -> _Asked:
    return _Asked(request.id, request.payment_id, request.amount_cents, request.reason, request.requested_by,
                  request.requested_at, request.waive_reopened, reference, league_key, currency)


def _made_for(gateway: PaymentGateway, intent: str, request: _Asked, *, tenant_id: int) -> RefundReceipt | None:
    """The refund Stripe made for ``request``, if any: among the payment's own refunds, the one
    this league's request named in its metadata (and not one that failed or was canceled)."""
    for refund in gateway.list_refunds(payment_intent_id=intent):
        if (refund.metadata.get(REQUEST_METADATA) == str(request.id)
                and refund.metadata.get("payment_id") == str(request.payment_id)
                and names_league(refund.metadata, tenant_id=tenant_id, league_key=request.league_key)
                and refund.status in REFUND_MADE_STATUSES):
            return refund
    return None


def _record_answer(sessions: Sessions, user: ActingUser, gateway: PaymentGateway, request: _Asked,
                   receipt: RefundReceipt) -> LedgerOutcome:
    """Stripe's answer to ``request`` in the ledger, once, and the request finished: the refund
    written (what Stripe refunded), or, when payment sync recorded it first, that entry reported.
    Should the ledger be unable to take it, the request is finished all the same and the
    treasurer told, so no payment is left that cannot be refunded again."""

    def write(session: Session) -> LedgerChange:
        _finish(session, user, request.id, receipt.id)
        recorded = _recorded_refund(session, user, receipt.id)
        if recorded is not None:
            return _already_recorded(_writer_for(session, user, request.payment_id), recorded)
        _, writer, position = _refundable(session, user, request.payment_id, receipt.amount_cents,
                                          origin=EntryOrigin.MANUAL)
        try:
            with session.begin_nested():
                return _write_refund(writer, position, amount_cents=receipt.amount_cents, reason=request.reason,
                                     stripe_refund_id=receipt.id, via="through Stripe",
                                     waive_reopened=request.waive_reopened)
        except IntegrityError:  # payment sync recorded it while this waited for the family's lock
            recorded = _recorded_refund(session, user, receipt.id)
            if recorded is None:
                raise
            return _already_recorded(writer, recorded)

    try:
        return apply_ledger_change(sessions, user, write, gateway=gateway)
    except InvalidInput as cannot:
        _close(sessions, user, request.id, stripe_refund_id=receipt.id)
        raise InvalidInput(f"Stripe refunded {receipt.amount_cents} cents (refund {receipt.id}), which the ledger "
                           f"cannot take: {cannot} Check it in the Stripe dashboard.") from cannot


def _finish(session: Session, user: ActingUser, request_id: int, stripe_refund_id: str | None) -> None:
    request = session.scalars(select(RefundRequest).where(RefundRequest.id == request_id,
                                                          RefundRequest.tenant_id == user.tenant_id)).one()
    request.stripe_refund_id, request.finished_at = stripe_refund_id, utcnow()


def _close(sessions: Sessions, user: ActingUser, request_id: int, *, stripe_refund_id: str | None = None) -> None:
    """Finish a request in a unit of its own: Stripe made nothing for it (or the ledger could not
    take what it made)."""
    with unit_of_work(sessions) as session:
        _finish(session, user, request_id, stripe_refund_id)


def _writer_for(session: Session, user: ActingUser, payment_id: int, *,
                origin: EntryOrigin = EntryOrigin.MANUAL) -> LedgerWriter:
    """A writer on the (locked) account of the family that made ``payment_id``."""
    payment = find_in_league(session, user, Payment, payment_id, label="payment")
    return LedgerWriter(session, user, find_in_league(session, user, Parent, payment.parent_id, label="parent"),
                        origin=origin)

