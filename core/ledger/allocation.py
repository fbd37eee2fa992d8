"""How money meets charges: pure rules, no database.

* A payment settles the charges its payer chose first (a Pay Now link pays its own charge),
  in the order given, then the family's other open charges **oldest due first** (due date,
  then the order they were billed in). What is left is the family's credit.
* Credit settles the next charge: the family's unallocated money, oldest payment first, goes
  to its open charges oldest due first (``apply_credit``).
* A reduction (discount, waiver, aid, write-off) settles the one charge it names, or is spread
  oldest due first; it may never exceed what is open (``spread_reduction``).
* A refund takes back the payment's unallocated money first (the overpayment a treasurer
  refunds), then re-opens what the payment settled, most recently settled first
  (``reopen_for_refund``).

Every function returns what to write; the caller (``core.ledger.entries``) writes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from core.errors import InvalidInput
from core.money import format_cents


@dataclass(frozen=True)
class OpenCharge:
    """A charge that can still take money: ``open_cents`` of it is unpaid and not processing."""

    charge_id: int
    due_on: date
    open_cents: int


@dataclass(frozen=True)
class Split:
    """Where an amount goes: ``parts`` as (charge id, cents), and what no charge took."""

    parts: tuple[tuple[int, int], ...]
    remainder_cents: int

    @property
    def allocated_cents(self) -> int:
        return sum(cents for _, cents in self.parts)


@dataclass(frozen=True)
class CreditPart:
    """``cents`` of payment ``payment_id``'s unallocated money settling ``charge_id``."""

    payment_id: int
    charge_id: int
    cents: int


class AboveWhatIsOpen(InvalidInput):
    """A reduction larger than what is open: it would turn into credit, which a discount is not."""


def oldest_due_first(charges: Iterable[OpenCharge]) -> list[OpenCharge]:
    """Charges in the order money settles them: due date, then the order they were billed in."""
    return sorted(charges, key=lambda charge: (charge.due_on, charge.charge_id))


def allocate(amount_cents: int, charges: Sequence[OpenCharge], *, chosen: Sequence[int] = ()) -> Split:
    """Split a payment of ``amount_cents``: ``chosen`` charges first (in that order), then the
    rest oldest due first; what no charge takes is the remainder (the family's credit)."""
    if amount_cents <= 0:
        raise ValueError("an allocation is of a positive amount")
    by_id = {charge.charge_id: charge for charge in charges}
    ordered = [by_id[charge_id] for charge_id in dict.fromkeys(chosen) if charge_id in by_id]
    ordered += [charge for charge in oldest_due_first(charges) if charge.charge_id not in set(chosen)]
    left = amount_cents
    parts: list[tuple[int, int]] = []
    for charge in ordered:
        if left == 0:
            break
        take = min(left, charge.open_cents)
        if take > 0:
            parts.append((charge.charge_id, take))
            left -= take
    return Split(tuple(parts), left)


def apply_credit(credits: Sequence[tuple[int, int]], charges: Sequence[OpenCharge]) -> list[CreditPart]:
    """The family's credit onto its open charges.

    ``credits`` are (payment id, unallocated cents) and are used oldest payment first (by id);
    the charges are settled oldest due first.
    """
    parts: list[CreditPart] = []
    wanting = [[charge.charge_id, charge.open_cents] for charge in oldest_due_first(charges) if charge.open_cents > 0]
    index = 0
    for payment_id, available in sorted(credits):
        while available > 0 and index < len(wanting):
            charge_id, still_open = wanting[index]
            take = min(available, still_open)
            parts.append(CreditPart(payment_id, charge_id, take))
            available -= take
            wanting[index][1] -= take
            if wanting[index][1] == 0:
                index += 1
    return parts


def spread_reduction(amount_cents: int, charges: Sequence[OpenCharge], *, charge_id: int | None = None,
                     currency: str = "usd") -> Split:
    """A discount, waiver, aid or write-off: on ``charge_id`` alone, or spread oldest due first.

    ``AboveWhatIsOpen`` when the amount is more than what is open (on that charge, or in all).
    """
    if charge_id is not None:
        target = [charge for charge in charges if charge.charge_id == charge_id]
        open_cents = target[0].open_cents if target else 0
        if amount_cents > open_cents:
            raise AboveWhatIsOpen(
                f"{format_cents(amount_cents, currency)} is more than the {format_cents(open_cents, currency)} "
                f"open on charge {charge_id}."
            )
        return Split(((charge_id, amount_cents),), 0)
    total = sum(charge.open_cents for charge in charges)
    if amount_cents > total:
        raise AboveWhatIsOpen(
            f"{format_cents(amount_cents, currency)} is more than the {format_cents(total, currency)} "
            f"the family has open."
        )
    return allocate(amount_cents, charges)


def reopen_for_refund(amount_cents: int, *, unallocated_cents: int,
                      settled: Sequence[tuple[int, int, int]]) -> list[tuple[int, int]]:
    """What a refund of ``amount_cents`` re-opens, as (charge id, cents).

    The payment's ``unallocated_cents`` go first (refunding an overpayment re-opens nothing);
    then ``settled``, given as (allocation order, charge id, cents the payment still settles on
    it), is re-opened latest first.
    """
    left = amount_cents - min(amount_cents, unallocated_cents)
    reopened: list[tuple[int, int]] = []
    for _, charge_id, cents in sorted(settled, reverse=True):
        if left == 0:
            break
        take = min(left, cents)
        if take > 0:
            reopened.append((charge_id, take))
            left -= take
    if left:
        raise ValueError("a refund cannot re-open more than the payment settled")
    return reopened

