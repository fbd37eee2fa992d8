"""Stripe is a source of payments: what payment sync learns about a link becomes ledger payments.

Payment sync decides what a link's Checkout Sessions mean (``core.payments.reconciliation``)
and records it on the link; then ``follow_stripe_link`` makes the ledger agree, in the same
transaction:

* a link marked paid: a settled ``stripe`` payment, its Checkout Session as the reference
  (recorded once, however often sync sees the session), settling the link's own charge first,
  then the family's other open charges; more than was owed is credit, flagged;
* a link whose payment is processing: a ``processing`` payment on its charge (shown as
  processing, not owed); when it settles its state becomes ``settled``, and when the
  processing session is gone without a payment, ``failed`` (the charge is owed again; a
  one-time product's link, used up at Stripe by that checkout, is retired by payment sync so
  the next backfill mints one).

A family's "Pay the balance" link (``core.payments.family_links``) has no charge of its own:
``follow_family_checkout`` is the one entry point turning a completed checkout of one into
ledger entries, whoever read it from Stripe (payment sync's listing; Stripe's events):

* a ``stripe`` payment of the whole amount paid (its Checkout Session as the reference, once),
  settling the family's open charges oldest due first; paid through a link minted for an older
  balance, what it overpays is the family's credit, and the payment is flagged;
* a payment still processing is recorded ``processing`` and becomes ``settled`` when a paid
  checkout of the same session is seen, or ``failed`` when its delayed payment failed (an
  applied ``async_payment_failed``): the charges it was paying are owed again, as for an item
  link, and the link, used up at Stripe by that one checkout, is retired if it is still the
  family's active one (the next send mints one at the balance).

A payment's ``state`` is the one column of a money row that changes, here and only here
(``_set_state``), and each change is in the audit log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, Permission, require
from core.errors import NotFound
from core.ledger.accounts import stripe_payment_by_reference
from core.ledger.allocation import allocate
from core.ledger.entries import LedgerChange, LedgerWriter, league_today
from core.models import (
    EntryOrigin,
    FlagKind,
    LedgerEntryKind,
    LinkStatus,
    Parent,
    Payment,
    PaymentLink,
    PaymentMethod,
    PaymentState,
    Player,
    Tenant,
)
from core.money import format_cents
from core.payments import family_links
from core.payments.flags import SyncFlag, record_flag
from core.payments.gateway import CompletedCheckout
from core.timezones import league_zone, local_date


def follow_stripe_link(
    session: Session, user: ActingUser, link: PaymentLink, checkouts: Sequence[CompletedCheckout]
) -> LedgerChange | None:
    """Make the ledger agree with what payment sync just recorded on ``link`` (see above).

    ``checkouts`` are the link's sessions the sync saw. In the sync's transaction; the caller
    commits. None when the ledger already agreed.
    """
    require(user, Permission.SYNC_PAYMENTS)
    if link.tenant_id != user.tenant_id:
        raise NotFound(f"There is no payment link {link.id} in this league.")
    processing = _processing_payment(session, user, link)
    if link.status is LinkStatus.PAID and link.checkout_session_id:
        recorded = stripe_payment_by_reference(session, user, link.checkout_session_id)
        if recorded is not None:
            if recorded.state is PaymentState.PROCESSING:
                return _change_state(_writer(session, user, link), recorded, PaymentState.SETTLED)
            return None
        amount = link.paid_amount_cents if link.paid_amount_cents and link.paid_amount_cents > 0 else link.amount_cents
        if processing is not None:
            if processing.reference is None and processing.amount_cents == amount:
                return _change_state(_writer(session, user, link), processing, PaymentState.SETTLED)
            _change_state(_writer(session, user, link), processing, PaymentState.FAILED)
        return _record(session, user, link, reference=link.checkout_session_id, amount_cents=amount,
                       state=PaymentState.SETTLED, received=_paid_on(session, user, link))
    if link.processing:
        if processing is not None:
            return None
        pending = sorted((c for c in checkouts if not c.paid), key=lambda c: (c.created, c.id))
        reference = pending[0].id if pending else None
        if reference is not None and stripe_payment_by_reference(session, user, reference) is not None:
            return None
        amount = pending[0].amount_total if pending and pending[0].amount_total else link.amount_cents
        return _record(session, user, link, reference=reference, amount_cents=amount,
                       state=PaymentState.PROCESSING, received=league_today(session, user))
    if processing is not None:  # the processing session is gone unpaid: the charge is owed again
        return _change_state(_writer(session, user, link), processing, PaymentState.FAILED)
    return None


@dataclass(frozen=True)
class FamilyCheckout:
    """What ``follow_family_checkout`` recorded: the ledger change (None: already recorded), the
    flag it raised (an overpayment through a link minted for an older balance), and whether the
    checkout's delayed payment failed (what it was paying is owed)."""

    link_id: int
    parent_id: int
    parent_name: str
    change: LedgerChange | None
    flag: SyncFlag | None = None
    failed: bool = False


def follow_family_checkout(session: Session, user: ActingUser, checkout: CompletedCheckout, *,
                           failed: bool = False) -> FamilyCheckout | None:
    """Record ``checkout`` if it was made through one of the league's family links (see above).

    None when it was not (an item link's checkout goes through ``follow_stripe_link``). The
    family link's row is locked and marked paid (``family_links.mark_paid``). ``failed``: the
    session's delayed payment failed (``core.payments.events.failed_sessions``); its processing
    payment, if recorded, becomes ``failed`` and nothing is recorded for it otherwise. In the
    caller's transaction; the caller commits. Recording the same checkout again changes nothing.
    """
    require(user, Permission.SYNC_PAYMENTS)
    if not checkout.payment_link_id:
        return None
    link = family_links.family_link_by_stripe_id(session, user, checkout.payment_link_id)
    if link is None:
        return None
    parent = _parent(session, user, link.parent_id)
    recorded = stripe_payment_by_reference(session, user, checkout.id)
    if failed and not checkout.paid:
        settled = recorded is not None and recorded.state is PaymentState.SETTLED
        change = None
        if recorded is not None and recorded.state is PaymentState.PROCESSING:
            change = _change_state(_family_writer(session, user, parent), recorded, PaymentState.FAILED,
                                   family_link_id=link.id)
        if link.status is LinkStatus.ACTIVE:
            family_links.retire_row(link)  # Stripe counted its one session; switched off by the next refresh
        return FamilyCheckout(link.id, link.parent_id, parent.name, change, failed=not settled)
    if recorded is not None:
        change = None
        if recorded.state is PaymentState.PROCESSING and checkout.paid:
            change = _change_state(_family_writer(session, user, parent), recorded, PaymentState.SETTLED,
                                   family_link_id=link.id)
            family_links.mark_paid(link, checkout)
        return FamilyCheckout(link.id, link.parent_id, parent.name, change)
    amount = checkout.amount_total if checkout.amount_total and checkout.amount_total > 0 else link.amount_cents
    state = PaymentState.SETTLED if checkout.paid else PaymentState.PROCESSING
    writer = _family_writer(session, user, parent)
    account = writer.account()
    payment = writer.payment(amount_cents=amount, method=PaymentMethod.STRIPE, received_on=checkout.created.date(),
                             state=state, reference=checkout.id,
                             note="paid through the family's Pay the balance link")
    split = allocate(amount, account.open_charges)  # the whole balance: oldest due first
    for charge_id, cents in split.parts:
        writer.allocation(charge_id, cents, payment_id=payment.id)
    if checkout.paid:
        family_links.mark_paid(link, checkout)
    overpaid = split.remainder_cents if state is PaymentState.SETTLED else 0
    what = "processing" if state is PaymentState.PROCESSING else "paid"
    summary = (f"Stripe payment of {writer.money(amount)} {what} through the balance link of "
               f"{writer.parent.name} (entry {payment.id})")
    if overpaid:
        summary += f"; {writer.money(overpaid)} more than was owed is credit (refund or keep it)"
    change = writer.finish(action="ledger.payment", summary=summary, main_entry_id=payment.id,
                           kind=LedgerEntryKind.PAYMENT, overpaid_cents=overpaid,
                           details={"method": "stripe", "checkout_session": checkout.id, "state": state.value,
                                    "family_link_id": link.id})
    flag = None
    if overpaid:  # paid through a link minted for an older, larger balance
        flag = record_flag(
            session, user, FlagKind.AMOUNT_MISMATCH, checkout,
            f"{writer.parent.name} paid {writer.money(amount)} through a balance link minted for "
            f"{format_cents(link.amount_cents, link.currency)} when less was owed; {writer.money(overpaid)} "
            "more than was owed is credit (refund or keep it)",
            link_id=None, product_name=f"{writer.parent.name}'s balance",
        )
    return FamilyCheckout(link.id, link.parent_id, parent.name, change, flag)


def _parent(session: Session, user: ActingUser, parent_id: int) -> Parent:
    return session.scalars(select(Parent).where(Parent.id == parent_id, Parent.tenant_id == user.tenant_id)).one()


def _family_writer(session: Session, user: ActingUser, parent: Parent) -> LedgerWriter:
    return LedgerWriter(session, user, parent, origin=EntryOrigin.PAYMENT_SYNC)


def _processing_payment(session: Session, user: ActingUser, link: PaymentLink) -> Payment | None:
    return session.scalars(
        select(Payment).where(Payment.tenant_id == user.tenant_id, Payment.payment_link_id == link.id,
                              Payment.state == PaymentState.PROCESSING)
        .order_by(Payment.id.desc())
    ).first()


def _writer(session: Session, user: ActingUser, link: PaymentLink) -> LedgerWriter:
    parent = session.scalars(
        select(Parent).join(Player, Player.parent_id == Parent.id)
        .where(Player.id == link.player_id, Parent.tenant_id == user.tenant_id)
    ).one()
    return LedgerWriter(session, user, parent, origin=EntryOrigin.PAYMENT_SYNC)


def _paid_on(session: Session, user: ActingUser, link: PaymentLink) -> date:
    """The league's day the link was paid (a payment at 8 pm in Los Angeles is that day's, not tomorrow's)."""
    if link.paid_at is None:
        return league_today(session, user)
    return local_date(link.paid_at, league_zone(session.get(Tenant, user.tenant_id)))


def _record(session: Session, user: ActingUser, link: PaymentLink, *, reference: str | None, amount_cents: int,
            state: PaymentState, received: date) -> LedgerChange:
    writer = _writer(session, user, link)
    account = writer.account()
    payment = writer.payment(amount_cents=amount_cents, method=PaymentMethod.STRIPE, received_on=received,
                             state=state, reference=reference, payment_link_id=link.id,
                             note="paid through its Pay Now link")
    chosen = [link.charge_id] if link.charge_id is not None else []
    split = allocate(amount_cents, account.open_charges, chosen=chosen)
    for charge_id, cents in split.parts:
        writer.allocation(charge_id, cents, payment_id=payment.id)
    overpaid = split.remainder_cents if state is PaymentState.SETTLED else 0
    what = "processing" if state is PaymentState.PROCESSING else "paid"
    summary = (f"Stripe payment of {writer.money(amount_cents)} {what} through the Pay Now link of "
               f"{writer.parent.name} (entry {payment.id})")
    if overpaid:
        summary += f"; {writer.money(overpaid)} more than was owed is credit (refund or keep it)"
    return writer.finish(action="ledger.payment", summary=summary, main_entry_id=payment.id,
                         kind=LedgerEntryKind.PAYMENT, overpaid_cents=overpaid,
                         details={"method": "stripe", "checkout_session": reference, "state": state.value,
                                  "amount_cents": amount_cents})


def _change_state(writer: LedgerWriter, payment: Payment, state: PaymentState, **details: object) -> LedgerChange:
    """A processing Stripe payment settles or fails (an item link's or a family link's), in the audit log."""
    before = _set_state(payment, state)
    writer.session.flush()
    return writer.finish(
        action="ledger.payment_state",
        summary=f"Stripe payment {payment.id} of {writer.money(payment.amount_cents)}: {before.value} -> {state.value}",
        main_entry_id=payment.id, kind=LedgerEntryKind.PAYMENT,
        details={"payment_id": payment.id, "from": before.value, "to": state.value, **details},
    )


def _set_state(payment: Payment, state: PaymentState) -> PaymentState:
    """The one change a money row allows: a processing payment settles or fails."""
    if payment.state is not PaymentState.PROCESSING:
        raise ValueError(f"payment {payment.id} is {payment.state.value}; only a processing payment changes state")
    before = payment.state
    payment.state = state
    return before
