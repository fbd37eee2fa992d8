"""What the ledger says now: when an entry counts, what each charge has open, each family's credit.

An entry counts unless it was reversed; an allocation counts when it, its charge and what it
comes from (a payment, an adjustment) all count, and a payment that failed counts for nothing.
A charge's *open* amount is its amount less what counting allocations settled; the part
settled by payments still processing is *processing* (not owed, not settled). A family's
*credit* is what its settled payments brought in and no charge took (less refunds).

The SQL here is the one definition of those figures. ``core.ledger.positions`` stores it per
family at every write, for the league's balances (``core.reporting.balances``) to read;
``family_account`` reads one family for the writes in ``core.ledger.entries`` (a few statements).

A charge of a withdrawn player is not *billed*: it is not owed and credit does not settle it
(as before the ledger, when their links were simply not owed).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import ColumnElement, Select, SQLColumnExpression, and_, func, or_, select, union_all, update
from sqlalchemy.orm import Session

from core.access.permissions import ActingUser
from core.ledger.allocation import OpenCharge
from core.models import (
    Adjustment,
    AdjustmentKind,
    Allocation,
    Charge,
    Parent,
    Payment,
    PaymentMethod,
    PaymentState,
    Player,
    PlayerStatus,
    Reversal,
)


def reversed_ids(tenant_id: int) -> Select[int]:
    """The league's entries that were reversed: they count for nothing."""
    return select(Reversal.reversed_entry_id).where(Reversal.tenant_id == tenant_id)


def _counts(column: SQLColumnExpression[int | None], void: Select[int]) -> ColumnElement[bool]:
    return or_(column.is_(None), column.not_in(void.scalar_subquery()))


def _scoped(statement: Select, model: type, tenant_id: int, parent_ids: Iterable[int] | None) -> Select:
    statement = statement.where(model.tenant_id == tenant_id)  # type: ignore[attr-defined]
    if parent_ids is not None:
        statement = statement.where(model.parent_id.in_(sorted(parent_ids)))  # type: ignore[attr-defined]
    return statement


def payments_in(tenant_id: int, *states: PaymentState) -> Select[int]:
    """The league's payments in one of ``states`` (few: most payments are settled)."""
    return select(Payment.id).where(Payment.tenant_id == tenant_id, Payment.state.in_(states))


def charge_settlements(tenant_id: int, parent_ids: Iterable[int] | None = None) -> Select:
    """Per charge id: ``settled_cents`` (by settled payments and reductions, net of refunds) and
    ``processing_cents`` (by payments still processing); either may be NULL for none. Charges
    nothing settled are absent.

    One pass over the allocations, without joining the payments: the payments that are not
    settled are few, and each allocation is looked up among them.
    """
    void = reversed_ids(tenant_id)
    processing = payments_in(tenant_id, PaymentState.PROCESSING).scalar_subquery()
    failed = payments_in(tenant_id, PaymentState.FAILED).scalar_subquery()
    paid = and_(Allocation.payment_id.is_not(None), Allocation.payment_id.not_in(processing))
    statement = (
        select(
            Allocation.charge_id.label("charge_id"),
            func.min(Allocation.parent_id).label("parent_id"),
            func.sum(Allocation.amount_cents)
            .filter(or_(Allocation.payment_id.is_(None), Allocation.payment_id.not_in(processing)))
            .label("settled_cents"),
            func.sum(Allocation.amount_cents).filter(Allocation.payment_id.in_(processing)).label("processing_cents"),
            # What settled payments paid on it (the rest is reductions): the family's credit is
            # what its payments brought in less this, summed over its charges.
            func.sum(Allocation.amount_cents).filter(paid).label("paid_cents"),
        )
        .where(
            Allocation.id.not_in(void.scalar_subquery()),
            Allocation.charge_id.not_in(void.scalar_subquery()),
            _counts(Allocation.payment_id, void),
            _counts(Allocation.adjustment_id, void),
            or_(Allocation.payment_id.is_(None), Allocation.payment_id.not_in(failed)),
        )
        .group_by(Allocation.charge_id)
    )
    return _scoped(statement, Allocation, tenant_id, parent_ids)


def payment_positions(tenant_id: int, parent_ids: Iterable[int] | None = None) -> Select:
    """Per counting payment: its amount, what counting refunds took back, what counting
    allocations settle with it, and ``unallocated_cents`` (amount - refunded - allocated)."""
    void = reversed_ids(tenant_id)
    refunded = _scoped(
        select(Adjustment.payment_id.label("payment_id"), func.sum(Adjustment.amount_cents).label("cents"))
        .where(Adjustment.kind == AdjustmentKind.REFUND, Adjustment.id.not_in(void.scalar_subquery()))
        .group_by(Adjustment.payment_id),
        Adjustment, tenant_id, parent_ids,
    ).subquery("refunded")
    allocated = _scoped(
        select(Allocation.payment_id.label("payment_id"), func.sum(Allocation.amount_cents).label("cents"))
        .where(
            Allocation.payment_id.is_not(None),
            Allocation.id.not_in(void.scalar_subquery()),
            Allocation.charge_id.not_in(void.scalar_subquery()),
            _counts(Allocation.adjustment_id, void),
        )
        .group_by(Allocation.payment_id),
        Allocation, tenant_id, parent_ids,
    ).subquery("allocated")
    refunded_cents = func.coalesce(refunded.c.cents, 0)
    allocated_cents = func.coalesce(allocated.c.cents, 0)
    statement = (
        select(
            Payment.id.label("payment_id"),
            Payment.parent_id.label("parent_id"),
            Payment.state.label("state"),
            Payment.amount_cents.label("amount_cents"),
            refunded_cents.label("refunded_cents"),
            allocated_cents.label("allocated_cents"),
            (Payment.amount_cents - refunded_cents - allocated_cents).label("unallocated_cents"),
        )
        .outerjoin(refunded, refunded.c.payment_id == Payment.id)
        .outerjoin(allocated, allocated.c.payment_id == Payment.id)
        .where(Payment.id.not_in(void.scalar_subquery()))
    )
    return _scoped(statement, Payment, tenant_id, parent_ids)


def family_credit(tenant_id: int, parent_ids: Iterable[int] | None = None) -> Select:
    """Per parent id: ``credit_cents``, the settled money no charge took (only where positive).

    What settled payments brought in, less refunds, less what they paid on charges (from
    ``charge_settlements``).
    """
    void = reversed_ids(tenant_id)
    settlements = charge_settlements(tenant_id, parent_ids).subquery("settled_for_credit")
    paid = _scoped(
        select(Payment.parent_id.label("parent_id"), Payment.amount_cents.label("cents"))
        .where(Payment.state == PaymentState.SETTLED, Payment.id.not_in(void.scalar_subquery())),
        Payment, tenant_id, parent_ids,
    )
    refunds = _scoped(
        select(Adjustment.parent_id, (-Adjustment.amount_cents).label("cents"))
        .where(Adjustment.kind == AdjustmentKind.REFUND, Adjustment.id.not_in(void.scalar_subquery())),
        Adjustment, tenant_id, parent_ids,
    )
    allocated = select(settlements.c.parent_id, (-settlements.c.paid_cents).label("cents")).where(
        settlements.c.paid_cents.is_not(None)
    )
    movements = union_all(paid, refunds, allocated).subquery("movements")
    return (
        select(movements.c.parent_id.label("parent_id"), func.sum(movements.c.cents).label("credit_cents"))
        .group_by(movements.c.parent_id)
        .having(func.sum(movements.c.cents) > 0)
    )


def is_billed() -> ColumnElement[bool]:
    """A charge is billed unless it is a withdrawn player's (needs ``Player`` outer-joined)."""
    return or_(Player.id.is_(None), Player.status != PlayerStatus.WITHDRAWN)


# -- one family, for the writes ----------------------------------------------------------------


@dataclass(frozen=True)
class ChargePosition:
    """One counting charge of a family and what is left of it."""

    charge_id: int
    description: str
    player_id: int | None
    product_id: int | None
    order_id: int | None
    charge_key: str
    amount_cents: int
    settled_cents: int
    processing_cents: int
    due_on: date
    billed: bool
    player_name: str | None = None

    @property
    def open_cents(self) -> int:
        return self.amount_cents - self.settled_cents - self.processing_cents

    @property
    def untouched(self) -> bool:
        """Nothing has been paid, processed or taken off it yet."""
        return self.settled_cents == 0 and self.processing_cents == 0


@dataclass(frozen=True)
class PaymentPosition:
    payment_id: int
    state: PaymentState
    amount_cents: int
    refunded_cents: int
    unallocated_cents: int


@dataclass(frozen=True)
class Account:
    """A family's account as the ledger holds it now (in the reading session's transaction)."""

    tenant_id: int
    parent_id: int
    currency: str
    charges: tuple[ChargePosition, ...]
    payments: tuple[PaymentPosition, ...]
    voided: frozenset[int] = field(default_factory=frozenset)

    def charge(self, charge_id: int) -> ChargePosition | None:
        return next((charge for charge in self.charges if charge.charge_id == charge_id), None)

    def payment(self, payment_id: int) -> PaymentPosition | None:
        return next((payment for payment in self.payments if payment.payment_id == payment_id), None)

    @property
    def open_charges(self) -> list[OpenCharge]:
        """What money can still settle: billed charges with something open."""
        return [OpenCharge(c.charge_id, c.due_on, c.open_cents) for c in self.charges if c.billed and c.open_cents > 0]

    @property
    def credits(self) -> list[tuple[int, int]]:
        """(payment id, unallocated cents) of settled payments with money no charge took."""
        return [(p.payment_id, p.unallocated_cents) for p in self.payments
                if p.state is PaymentState.SETTLED and p.unallocated_cents > 0]

    @property
    def credit_cents(self) -> int:
        return sum(cents for _, cents in self.credits)

    @property
    def open_cents(self) -> int:
        return sum(charge.open_cents for charge in self.charges if charge.billed)

    @property
    def processing_cents(self) -> int:
        return sum(charge.processing_cents for charge in self.charges if charge.billed)

    @property
    def balance_cents(self) -> int:
        """What the family owes now (negative: its credit). Processing payments are not owed."""
        return self.open_cents - self.credit_cents


def family_account(session: Session, user: ActingUser, parent_id: int, *, currency: str) -> Account:
    """The family's account now: its counting charges with what is open, its payments with
    what is unallocated (three statements). Flushes first, so it sees the caller's writes.
    For the ledger's services, after their own ``require``."""
    session.flush()
    tenant_id = user.tenant_id
    settlements = charge_settlements(tenant_id, [parent_id]).subquery("settled")
    rows = session.execute(
        select(
            Charge.id, Charge.description, Charge.player_id, Charge.product_id, Charge.order_id, Charge.charge_key,
            Charge.amount_cents, func.coalesce(settlements.c.settled_cents, 0),
            func.coalesce(settlements.c.processing_cents, 0), Charge.due_on, is_billed(), Player.first_name,
        )
        .outerjoin(settlements, settlements.c.charge_id == Charge.id)
        .outerjoin(Player, Player.id == Charge.player_id)
        .where(Charge.tenant_id == tenant_id, Charge.parent_id == parent_id,
               Charge.id.not_in(reversed_ids(tenant_id).scalar_subquery()))
        .order_by(Charge.due_on, Charge.id)
    ).all()
    charges = tuple(
        ChargePosition(charge_id=row[0], description=row[1], player_id=row[2], product_id=row[3], order_id=row[4],
                       charge_key=row[5], amount_cents=row[6], settled_cents=row[7], processing_cents=row[8],
                       due_on=row[9], billed=bool(row[10]), player_name=row[11])
        for row in rows
    )
    positions = payment_positions(tenant_id, [parent_id]).subquery("positions")
    payments = tuple(
        PaymentPosition(payment_id, state, amount, refunded, unallocated)
        for payment_id, state, amount, refunded, unallocated in session.execute(
            select(positions.c.payment_id, positions.c.state, positions.c.amount_cents, positions.c.refunded_cents,
                   positions.c.unallocated_cents).order_by(positions.c.payment_id)
        )
    )
    voided = frozenset(session.scalars(
        select(Reversal.reversed_entry_id).where(Reversal.tenant_id == tenant_id, Reversal.parent_id == parent_id)
    ))
    return Account(tenant_id, parent_id, currency, charges, payments, voided)


def settled_by_payment(session: Session, user: ActingUser, payment_id: int) -> list[tuple[int, int, int]]:
    """(latest allocation id, charge id, cents) the payment still settles on each counting charge."""
    tenant_id = user.tenant_id
    void = reversed_ids(tenant_id)
    rows = session.execute(
        select(func.max(Allocation.id), Allocation.charge_id, func.sum(Allocation.amount_cents))
        .where(
            Allocation.tenant_id == tenant_id,
            Allocation.payment_id == payment_id,
            Allocation.id.not_in(void.scalar_subquery()),
            Allocation.charge_id.not_in(void.scalar_subquery()),
            _counts(Allocation.adjustment_id, void),
        )
        .group_by(Allocation.charge_id)
    ).all()
    return [(int(order), int(charge_id), int(cents)) for order, charge_id, cents in rows if cents > 0]


def lock_family(session: Session, user: ActingUser, parent_id: int) -> None:
    """Serialise writes to one family's account until the caller commits.

    PostgreSQL: ``SELECT ... FOR UPDATE`` on the parent row. SQLite: a no-op ``UPDATE`` that
    takes the database's write lock before the account is read.
    """
    tenant_id = user.tenant_id
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(Parent.id).where(Parent.id == parent_id, Parent.tenant_id == tenant_id).with_for_update())
    else:
        session.execute(update(Parent).where(Parent.id == parent_id, Parent.tenant_id == tenant_id)
                        .values(name=Parent.name).execution_options(synchronize_session=False))


def stripe_payment_by_reference(session: Session, user: ActingUser, reference: str) -> Payment | None:
    """The Stripe payment recorded for a Checkout Session, if any (reversed or not)."""
    tenant_id = user.tenant_id
    return session.scalars(
        select(Payment).where(Payment.tenant_id == tenant_id, Payment.method == PaymentMethod.STRIPE,
                              Payment.reference == reference)
    ).one_or_none()


def families_with_credit(session: Session, user: ActingUser) -> dict[int, int]:
    """Parent id -> credit, for every family of the league with credit (one statement)."""
    credit = family_credit(user.tenant_id).subquery("credit")
    return {int(parent_id): int(cents) for parent_id, cents in session.execute(select(credit))}

