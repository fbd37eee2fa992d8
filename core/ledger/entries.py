"""Recording the ledger: charges, payments and adjustments, and reversing any entry.

Each function here takes a ``Session`` and never commits: the caller commits, and only then
should it ask Stripe to switch off the links the change retired
(``core.ledger.links.switch_off_retired_links`` with ``LedgerChange.links_to_switch_off``).

Every write:

* locks the family's account (two treasurers recording at once do not both settle a charge);
* adds rows only: a money row is never updated or deleted (the database refuses it too); a
  correction is a reversal naming the entry it reverses, with a reason and the person;
* carries the family's credit to its open charges, oldest due first, so credit and an open
  charge are never left side by side;
* retires the links of charges whose open amount changed (``core.ledger.links``);
* writes one audit row naming every entry it made (the audit log is written, never read).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, Permission, find_in_league, require
from core.audit import record_action
from core.errors import InvalidInput, NotFound
from core.ledger.accounts import Account, family_account, lock_family
from core.ledger.allocation import allocate, apply_credit, spread_reduction
from core.ledger.amounts import check_currency
from core.ledger.links import retire_unmatched_links
from core.ledger.words import ADJUSTMENT, KIND, METHOD
from core.models import (
    Adjustment,
    AdjustmentKind,
    Allocation,
    Charge,
    ChargePurpose,
    EntryOrigin,
    LedgerEntry,
    LedgerEntryKind,
    Parent,
    Payment,
    PaymentMethod,
    PaymentState,
    Reversal,
    Tenant,
)
from core.money import format_cents
from core.timezones import league_zone, today_in

MAX_TEXT = 2000
MAX_REFERENCE = 255
REDUCTIONS = frozenset({AdjustmentKind.DISCOUNT, AdjustmentKind.WAIVER, AdjustmentKind.AID, AdjustmentKind.WRITE_OFF})


@dataclass(frozen=True)
class LedgerChange:
    """What one write did to a family's account, for the person who made it.

    ``balance_cents`` is what the family owes after it (negative: its credit);
    ``links_to_switch_off`` are the links it retired, to switch off in Stripe once committed;
    ``overpaid_cents`` is the credit a payment left: flagged for the treasurer (refund or keep).
    """

    entry_id: int
    kind: LedgerEntryKind
    parent_id: int
    parent_name: str
    summary: str
    entry_ids: tuple[int, ...]
    balance_cents: int
    credit_cents: int
    processing_cents: int
    currency: str
    links_to_switch_off: tuple[int, ...] = ()
    overpaid_cents: int = 0
    reopened: tuple[tuple[int, int], ...] = field(default_factory=tuple)  # (charge id, cents) a refund re-opened


def today(zone_name: str | None = None) -> date:
    """Today on the clock of ``zone_name`` (UTC when not given)."""
    return today_in(zone_name)


def league_today(session: Session, user: ActingUser) -> date:
    """Today in the acting user's league: the day a payment recorded now is received, a charge due."""
    return today(league_zone(session.get(Tenant, user.tenant_id)))


class LedgerWriter:
    """One write to one family's account, in the caller's transaction (after the caller's
    ``require``). Collects the entries it adds; ``finish`` carries credit, retires links,
    audits and reports."""

    def __init__(self, session: Session, user: ActingUser, parent: Parent, *, origin: EntryOrigin) -> None:
        self.session = session
        self.user = user
        self.parent = parent
        self.origin = origin
        tenant = session.get_one(Tenant, user.tenant_id)
        self.currency = tenant.currency.lower()
        self.zone_name = league_zone(tenant)
        self.entry_ids: list[int] = []
        lock_family(session, user, parent.id)

    def today(self) -> date:
        """Today in the family's league."""
        return today(self.zone_name)

    # -- rows ---------------------------------------------------------------------------------

    def _entry(self, kind: LedgerEntryKind, origin: EntryOrigin | None) -> int:
        entry = LedgerEntry(tenant_id=self.user.tenant_id, parent_id=self.parent.id, kind=kind,
                            origin=origin or self.origin, recorded_by=self.user.identity)
        self.session.add(entry)
        self.session.flush()
        self.entry_ids.append(entry.id)
        return entry.id

    def _owned(self) -> dict[str, int]:
        return {"tenant_id": self.user.tenant_id, "parent_id": self.parent.id}

    def charge(self, *, amount_cents: int, description: str, due_on: date, purpose: ChargePurpose,
               charge_key: str | None = None, player_id: int | None = None, product_id: int | None = None,
               order_id: int | None = None, period: str | None = None, origin: EntryOrigin | None = None) -> Charge:
        entry_id = self._entry(LedgerEntryKind.CHARGE, origin)
        charge = Charge(id=entry_id, **self._owned(), player_id=player_id, purpose=purpose, product_id=product_id,
                        order_id=order_id, period=period, charge_key=charge_key or f"{purpose.value}:e{entry_id}",
                        description=description[:300], amount_cents=amount_cents, currency=self.currency,
                        due_on=due_on)
        self.session.add(charge)
        self.session.flush()
        return charge

    def payment(self, *, amount_cents: int, method: PaymentMethod, received_on: date, state: PaymentState,
                reference: str | None = None, note: str | None = None, payment_link_id: int | None = None,
                origin: EntryOrigin | None = None) -> Payment:
        entry_id = self._entry(LedgerEntryKind.PAYMENT, origin)
        payment = Payment(id=entry_id, **self._owned(), method=method, amount_cents=amount_cents,
                          currency=self.currency, received_on=received_on, reference=reference, state=state,
                          payment_link_id=payment_link_id, note=note)
        self.session.add(payment)
        self.session.flush()
        return payment

    def adjustment(self, *, kind: AdjustmentKind, amount_cents: int, reason: str, charge_id: int | None = None,
                   payment_id: int | None = None, stripe_refund_id: str | None = None,
                   origin: EntryOrigin | None = None) -> Adjustment:
        entry_id = self._entry(LedgerEntryKind.ADJUSTMENT, origin)
        adjustment = Adjustment(id=entry_id, **self._owned(), kind=kind, amount_cents=amount_cents,
                                currency=self.currency, charge_id=charge_id, payment_id=payment_id,
                                stripe_refund_id=stripe_refund_id, reason=reason)
        self.session.add(adjustment)
        self.session.flush()
        return adjustment

    def allocation(self, charge_id: int, cents: int, *, payment_id: int | None = None,
                   adjustment_id: int | None = None, origin: EntryOrigin | None = None) -> int:
        entry_id = self._entry(LedgerEntryKind.ALLOCATION, origin)
        self.session.add(Allocation(id=entry_id, **self._owned(), charge_id=charge_id, payment_id=payment_id,
                                    adjustment_id=adjustment_id, amount_cents=cents))
        self.session.flush()
        return entry_id

    def reversal(self, reversed_entry_id: int, reason: str, *, origin: EntryOrigin | None = None) -> int:
        entry_id = self._entry(LedgerEntryKind.REVERSAL, origin)
        self.session.add(Reversal(id=entry_id, **self._owned(), reversed_entry_id=reversed_entry_id, reason=reason))
        self.session.flush()
        return entry_id

    # -- what the account holds -------------------------------------------------------------

    def account(self) -> Account:
        return family_account(self.session, self.user, self.parent.id, currency=self.currency)

    def settle_with_credit(self) -> tuple[int, Account]:
        """Carry the family's credit to its open charges, oldest due first: the cents applied,
        and the family's account after (read again only if the credit settled something)."""
        account = self.account()
        parts = apply_credit(account.credits, account.open_charges)
        for part in parts:
            self.allocation(part.charge_id, part.cents, payment_id=part.payment_id, origin=EntryOrigin.CREDIT)
        return sum(part.cents for part in parts), (self.account() if parts else account)

    def finish(self, *, action: str, summary: str, main_entry_id: int, kind: LedgerEntryKind,
               overpaid_cents: int = 0, reopened: Sequence[tuple[int, int]] = (),
               details: dict[str, Any] | None = None) -> LedgerChange:
        _, account = self.settle_with_credit()
        retired = retire_unmatched_links(self.session, self.user, account)
        record_action(
            self.session, self.user, action, summary,
            details={"parent_id": self.parent.id, "family": self.parent.name, "currency": self.currency,
                     "entry_id": main_entry_id, "entries": list(self.entry_ids),
                     "links_retired": retired, "balance_cents": account.balance_cents,
                     "overpaid_cents": overpaid_cents, **(details or {})},
        )
        return LedgerChange(
            entry_id=main_entry_id, kind=kind, parent_id=self.parent.id, parent_name=self.parent.name,
            summary=summary, entry_ids=tuple(self.entry_ids), balance_cents=account.balance_cents,
            credit_cents=account.credit_cents, processing_cents=account.processing_cents, currency=self.currency,
            links_to_switch_off=tuple(retired), overpaid_cents=overpaid_cents, reopened=tuple(reopened),
        )

    def money(self, cents: int) -> str:
        return format_cents(cents, self.currency)


# -- the services --------------------------------------------------------------------------------


def record_charge(
    session: Session,
    user: ActingUser,
    *,
    parent_id: int,
    amount_cents: int,
    description: str,
    due_on: date | None = None,
    purpose: ChargePurpose = ChargePurpose.FEE,
    player_id: int | None = None,
    period: str | None = None,
    currency: str | None = None,
) -> LedgerChange:
    """Bill a family: a fee, an installment, a dues period. The family's credit settles it
    first. The caller commits."""
    require(user, Permission.RECORD_CHARGES)
    parent = _family(session, user, parent_id)
    positive_amount(amount_cents)
    text = required_text(description, "description")
    writer = LedgerWriter(session, user, parent, origin=EntryOrigin.MANUAL)
    check_currency(currency, league_currency=writer.currency)
    if player_id is not None and player_id not in {player.id for player in parent.players}:
        raise NotFound(f"{parent.name} has no player {player_id}.")
    charge = writer.charge(amount_cents=amount_cents, description=text, due_on=due_on or writer.today(), purpose=purpose,
                           player_id=player_id, period=period)
    return writer.finish(
        action="ledger.charge", main_entry_id=charge.id, kind=LedgerEntryKind.CHARGE,
        summary=f"Billed {parent.name} {writer.money(amount_cents)} for {text} (entry {charge.id})",
    )


def record_payment(
    session: Session,
    user: ActingUser,
    *,
    parent_id: int,
    amount_cents: int,
    method: PaymentMethod,
    received_on: date | None = None,
    reference: str | None = None,
    note: str | None = None,
    charge_ids: Sequence[int] = (),
    currency: str | None = None,
) -> LedgerChange:
    """Record money a family paid outside Stripe (cash, check, bank transfer, other).

    It settles ``charge_ids`` first (each must be one of the family's open charges), then the
    family's other open charges oldest due first; what is left is the family's credit, and
    flagged as an overpayment. The links of the charges it settles are retired. The caller commits.
    """
    require(user, Permission.RECORD_PAYMENTS)
    if method is PaymentMethod.STRIPE:
        raise InvalidInput("Stripe payments are recorded by payment sync; record cash, check, bank or other here.")
    parent = _family(session, user, parent_id)
    positive_amount(amount_cents)
    now = league_today(session, user)
    received = received_on or now
    if received > now + timedelta(days=1):
        raise InvalidInput(f"{received.isoformat()} is in the future: a payment is recorded once it is received.")
    reference = _optional_text(reference, "reference", limit=MAX_REFERENCE)
    note = _optional_text(note, "note")
    writer = LedgerWriter(session, user, parent, origin=EntryOrigin.MANUAL)
    check_currency(currency, league_currency=writer.currency)
    account = writer.account()
    _check_chosen(account, charge_ids, parent)
    payment = writer.payment(amount_cents=amount_cents, method=method, received_on=received,
                             state=PaymentState.SETTLED, reference=reference, note=note)
    split = allocate(amount_cents, account.open_charges, chosen=charge_ids)
    for charge_id, cents in split.parts:
        writer.allocation(charge_id, cents, payment_id=payment.id)
    reference_words = f", reference {reference}" if reference else ""
    summary = (f"Recorded a {METHOD[method]} payment of {writer.money(amount_cents)} from {parent.name} "
               f"(entry {payment.id}{reference_words}): {_settled_words(account, split.parts, writer.money)}")
    if split.remainder_cents:
        summary += f"; {writer.money(split.remainder_cents)} more than was owed is credit (refund or keep it)"
    return writer.finish(action="ledger.payment", main_entry_id=payment.id, kind=LedgerEntryKind.PAYMENT,
                         summary=summary, overpaid_cents=split.remainder_cents,
                         details={"method": method.value, "amount_cents": amount_cents})


def record_adjustment(
    session: Session,
    user: ActingUser,
    *,
    parent_id: int,
    amount_cents: int,
    kind: AdjustmentKind,
    reason: str,
    charge_id: int | None = None,
    currency: str | None = None,
) -> LedgerChange:
    """Take a discount, a waiver, financial aid or a write-off off a family's charges.

    On ``charge_id`` alone (never more than is open on it), or spread over the family's open
    charges oldest due first (never more than the family has open). The caller commits.
    """
    require(user, Permission.ADJUST_BALANCES)
    if kind not in REDUCTIONS:
        raise InvalidInput("A refund is recorded against a payment (refund_payment), not as an adjustment.")
    parent = _family(session, user, parent_id)
    positive_amount(amount_cents)
    why = required_text(reason, "reason")
    writer = LedgerWriter(session, user, parent, origin=EntryOrigin.MANUAL)
    check_currency(currency, league_currency=writer.currency)
    account = writer.account()
    if charge_id is not None:
        charge = account.charge(charge_id)
        if charge is None:
            raise NotFound(f"{parent.name} has no open charge {charge_id}.")
        if not charge.billed:
            raise InvalidInput(f"Charge {charge_id} is not billed (its player withdrew): there is nothing to take off.")
    split = spread_reduction(amount_cents, account.open_charges, charge_id=charge_id, currency=writer.currency)
    adjustment = writer.adjustment(kind=kind, amount_cents=amount_cents, reason=why, charge_id=charge_id)
    for target, cents in split.parts:
        writer.allocation(target, cents, adjustment_id=adjustment.id)
    summary = (f"Recorded a {ADJUSTMENT[kind]} of {writer.money(amount_cents)} for {parent.name} "
               f"(entry {adjustment.id}): {_settled_words(account, split.parts, writer.money, 'takes off')}")
    return writer.finish(action="ledger.adjustment", main_entry_id=adjustment.id, kind=LedgerEntryKind.ADJUSTMENT,
                         summary=summary, details={"kind": kind.value, "amount_cents": amount_cents})


def reverse_entry(session: Session, user: ActingUser, *, entry_id: int, reason: str) -> LedgerChange:
    """Reverse one entry: from now on it counts for nothing, and what depended on it follows.

    A reversed charge's payments become credit (and settle other charges); a reversed payment
    or adjustment re-opens what it settled; a reversed allocation's money is credit again and
    settles by the usual rule. Refused: a reversal (record the entry again instead), an entry
    already reversed, a payment with a refund (reverse the refund first), a Stripe refund
    (Stripe cannot take it back), and a part of an adjustment or a refund on its own. The
    caller commits.
    """
    require(user, Permission.REVERSE_ENTRIES)
    why = required_text(reason, "reason")
    entry = find_in_league(session, user, LedgerEntry, entry_id, label="ledger entry")
    parent = _family(session, user, entry.parent_id)
    writer = LedgerWriter(session, user, parent, origin=EntryOrigin.MANUAL)
    account = writer.account()
    if entry_id in account.voided:
        by = session.scalar(select(Reversal.id).where(Reversal.reversed_entry_id == entry_id))
        raise InvalidInput(f"Entry {entry_id} was already reversed (by entry {by}).")
    what = _reversible(session, entry, account)
    reversal_id = writer.reversal(entry_id, why)
    return writer.finish(
        action="ledger.reversal", main_entry_id=reversal_id, kind=LedgerEntryKind.REVERSAL,
        summary=f"Reversed entry {entry_id} ({what}) of {parent.name} (entry {reversal_id}): {why}",
        details={"reversed_entry_id": entry_id, "reversed_kind": entry.kind.value},
    )


def _reversible(session: Session, entry: LedgerEntry, account: Account) -> str:
    """What the entry is, in words; ``InvalidInput`` when it may not be reversed."""
    if entry.kind is LedgerEntryKind.REVERSAL:
        raise InvalidInput(f"Entry {entry.id} is a reversal; to restore what it reversed, record that entry again.")
    if entry.kind is LedgerEntryKind.CHARGE:
        charge = session.get_one(Charge, entry.id)
        return f"charge of {format_cents(charge.amount_cents, charge.currency)} for {charge.description}"
    if entry.kind is LedgerEntryKind.PAYMENT:
        payment = session.get_one(Payment, entry.id)
        position = account.payment(entry.id)
        if position is not None and position.refunded_cents:
            raise InvalidInput(f"Payment {entry.id} was refunded: reverse its refund first.")
        return f"{METHOD[payment.method]} payment of {format_cents(payment.amount_cents, payment.currency)}"
    if entry.kind is LedgerEntryKind.ALLOCATION:
        allocation = session.get_one(Allocation, entry.id)
        if allocation.adjustment_id is not None:
            raise InvalidInput(
                f"Entry {entry.id} is part of {KIND[LedgerEntryKind.ADJUSTMENT]} {allocation.adjustment_id}: "
                "reverse that instead."
            )
        return f"allocation of {format_cents(allocation.amount_cents, account.currency)} to charge {allocation.charge_id}"
    adjustment = session.get_one(Adjustment, entry.id)
    if adjustment.kind is AdjustmentKind.REFUND:
        if adjustment.stripe_refund_id is not None:
            raise InvalidInput(f"Refund {entry.id} went through Stripe, which cannot take a refund back.")
        _check_refund_can_be_undone(session, adjustment, account)
    return f"{ADJUSTMENT[adjustment.kind]} of {format_cents(adjustment.amount_cents, adjustment.currency)}"


def _check_refund_can_be_undone(session: Session, refund: Adjustment, account: Account) -> None:
    """Undoing a refund settles again what it re-opened: each of those charges must still be open."""
    reopened = session.execute(
        select(Allocation.charge_id, Allocation.amount_cents).where(Allocation.adjustment_id == refund.id)
    ).all()
    for charge_id, cents in reopened:
        charge = account.charge(charge_id)
        if charge is not None and charge.open_cents < -cents:
            raise InvalidInput(
                f"Refund {refund.id} re-opened charge {charge_id}, which has been paid or adjusted since: "
                "it cannot be undone; record the payment again instead."
            )


# -- checks -------------------------------------------------------------------------------------


def _family(session: Session, user: ActingUser, parent_id: int) -> Parent:
    return find_in_league(session, user, Parent, parent_id, label="parent")


def positive_amount(amount_cents: int) -> None:
    if not isinstance(amount_cents, int) or isinstance(amount_cents, bool) or amount_cents <= 0:
        raise InvalidInput("An amount must be a positive number of cents.")


def required_text(value: str, name: str) -> str:
    text = (value or "").strip()
    if not text:
        raise InvalidInput(f"Give a {name}: it is kept with the entry.")
    if len(text) > MAX_TEXT:
        raise InvalidInput(f"The {name} is too long ({len(text)} characters; at most {MAX_TEXT}).")
    return text


def _optional_text(value: str | None, name: str, *, limit: int = MAX_TEXT) -> str | None:
    text = (value or "").strip()
    if len(text) > limit:
        raise InvalidInput(f"The {name} is too long ({len(text)} characters; at most {limit}).")
    return text or None


def _check_chosen(account: Account, charge_ids: Sequence[int], parent: Parent) -> None:
    open_ids = {charge.charge_id for charge in account.open_charges}
    for charge_id in charge_ids:
        if charge_id not in open_ids:
            raise InvalidInput(f"Charge {charge_id} is not one of {parent.name}'s open charges.")


def _settled_words(account: Account, parts: Sequence[tuple[int, int]], money: Any, verb: str = "settles") -> str:
    if not parts:
        return "nothing was open, so it is all credit"
    words = []
    for charge_id, cents in parts:
        charge = account.charge(charge_id)
        name = f"charge {charge_id}"
        if charge is not None:
            name = f"{charge.description} for {charge.player_name}" if charge.player_name else charge.description
        whole = charge is not None and cents == charge.open_cents
        words.append(f"{name} ({'settled' if whole else 'part'}, {money(cents)})")
    return f"{verb} " + ", ".join(words)
