"""What a "payment received" email will say: one payment, what it settled, the balance after.

The receipt email (a later step: an ``EmailType`` rendered through the outbox) takes a
``PaymentReceipt`` rather than reading the ledger itself, so what it says comes from the same
rules as the statement and the balances.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, Permission, find_in_league, require
from core.ledger.accounts import family_account, reversed_ids
from core.ledger.words import METHOD, PAYMENT_STATE
from core.models import Allocation, Charge, Parent, Payment, Player, Tenant


@dataclass(frozen=True)
class SettledLine:
    description: str
    player_name: str | None
    cents: int


@dataclass(frozen=True)
class PaymentReceipt:
    payment_id: int
    parent_id: int
    parent_name: str
    parent_email: str | None
    amount_cents: int
    currency: str
    method: str  # in words: "cash", "check", "bank transfer", ...
    reference: str | None
    received_on: date
    state: str
    settled: tuple[SettledLine, ...]  # what this payment paid, charge by charge
    credit_cents: int  # of this payment, what no charge took (the family's credit)
    balance_cents: int  # what the family owes now (negative: its credit)


def payment_receipt(session: Session, user: ActingUser, payment_id: int) -> PaymentReceipt:
    """The receipt of one payment of the user's league (a few statements)."""
    require(user, Permission.VIEW_LEDGER)
    payment = find_in_league(session, user, Payment, payment_id, label="payment")
    parent = session.get_one(Parent, payment.parent_id)
    currency = session.get_one(Tenant, user.tenant_id).currency.lower()
    void = reversed_ids(user.tenant_id).scalar_subquery()
    rows = session.execute(
        select(Charge.description, Player.first_name, func.sum(Allocation.amount_cents))
        .join(Charge, Charge.id == Allocation.charge_id)
        .outerjoin(Player, Player.id == Charge.player_id)
        .where(Allocation.tenant_id == user.tenant_id, Allocation.payment_id == payment.id,
               Allocation.id.not_in(void), Allocation.charge_id.not_in(void))
        .group_by(Charge.id, Charge.description, Player.first_name)
        .order_by(Charge.id)
    ).all()
    account = family_account(session, user, parent.id, currency=currency)
    position = account.payment(payment.id)
    return PaymentReceipt(
        payment_id=payment.id, parent_id=parent.id, parent_name=parent.name,
        parent_email=parent.email if user.can(Permission.VIEW_CONTACT_DETAILS) else None,
        amount_cents=payment.amount_cents, currency=currency, method=METHOD[payment.method],
        reference=payment.reference, received_on=payment.received_on, state=PAYMENT_STATE[payment.state],
        settled=tuple(SettledLine(description, first, int(cents)) for description, first, cents in rows if cents > 0),
        credit_cents=position.unallocated_cents if position is not None else 0,
        balance_cents=account.balance_cents,
    )
