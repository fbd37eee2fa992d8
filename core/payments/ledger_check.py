"""Do the ledger and Stripe agree? The full sweep's report of every difference.

``compare_ledger_with_stripe`` is pure (no database, no Stripe): it takes the league's Stripe
payments as the ledger records them and the league's completed Checkout Sessions as Stripe
lists them, and names each difference:

* a payment Stripe took that the ledger has not recorded against any charge;
* a payment the ledger counts as settled by Stripe that Stripe has no payment for;
* a payment both have, for different amounts.

A session still processing is compared once it settles; a payment that failed, or was
reversed in the ledger, counts for nothing. Refunds are not compared here: the events bring
each one in (``core.payments.events``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, Permission, require
from core.ledger.accounts import reversed_ids
from core.models import DEFAULT_CURRENCY, Parent, Payment, PaymentMethod, PaymentState
from core.money import format_cents
from core.payments.gateway import CompletedCheckout


class DifferenceKind(str, enum.Enum):
    NOT_IN_LEDGER = "not_in_ledger"
    NOT_IN_STRIPE = "not_in_stripe"
    AMOUNT = "amount"

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    DifferenceKind.NOT_IN_LEDGER: "Stripe payment matched to no charge",
    DifferenceKind.NOT_IN_STRIPE: "paid in the ledger, no payment in Stripe",
    DifferenceKind.AMOUNT: "amounts differ",
}


@dataclass(frozen=True)
class LedgerStripePayment:
    """A Stripe payment as the ledger counts it."""

    payment_id: int
    parent_name: str
    checkout_session_id: str
    amount_cents: int
    currency: str
    state: PaymentState


@dataclass(frozen=True)
class LedgerDifference:
    kind: DifferenceKind
    checkout_session_id: str
    message: str
    payment_id: int | None = None

    def describe(self) -> str:
        return f"{self.kind.label}: {self.message} (Checkout Session {self.checkout_session_id})"


def ledger_stripe_payments(session: Session, user: ActingUser) -> list[LedgerStripePayment]:
    """The league's Stripe payments that count (not reversed, not failed), one statement."""
    require(user, Permission.SYNC_PAYMENTS)
    rows = session.execute(
        select(Payment.id, Parent.name, Payment.reference, Payment.amount_cents, Payment.currency, Payment.state)
        .join(Parent, Parent.id == Payment.parent_id)
        .where(Payment.tenant_id == user.tenant_id, Payment.method == PaymentMethod.STRIPE,
               Payment.reference.is_not(None), Payment.state != PaymentState.FAILED,
               Payment.id.not_in(reversed_ids(user.tenant_id).scalar_subquery()))
        .order_by(Payment.id)
    )
    return [LedgerStripePayment(pid, name, str(reference), cents, currency, state)
            for pid, name, reference, cents, currency, state in rows]


def compare_ledger_with_stripe(
    ledger: Sequence[LedgerStripePayment], checkouts: Iterable[CompletedCheckout]
) -> list[LedgerDifference]:
    """Every difference between the ledger's Stripe payments and the league's sessions (see above)."""
    paid = {checkout.id: checkout for checkout in checkouts if checkout.paid}
    recorded = {payment.checkout_session_id: payment for payment in ledger}
    differences: list[LedgerDifference] = []
    for checkout in sorted(paid.values(), key=lambda c: (c.created, c.id)):
        payment = recorded.get(checkout.id)
        money = _money(checkout.amount_total, checkout.currency)
        if payment is None:
            differences.append(LedgerDifference(
                DifferenceKind.NOT_IN_LEDGER, checkout.id,
                f"{money} paid in Stripe on {checkout.created:%d %b %Y} through "
                f"{checkout.payment_link_id or 'no payment link'}, recorded against no charge"))
        elif payment.state is PaymentState.SETTLED and checkout.amount_total is not None \
                and checkout.amount_total != payment.amount_cents:
            differences.append(LedgerDifference(
                DifferenceKind.AMOUNT, checkout.id,
                f"Stripe took {money}, the ledger records {format_cents(payment.amount_cents, payment.currency)} "
                f"(payment {payment.payment_id}, {payment.parent_name})", payment.payment_id))
    for payment in ledger:
        if payment.state is PaymentState.SETTLED and payment.checkout_session_id not in paid:
            differences.append(LedgerDifference(
                DifferenceKind.NOT_IN_STRIPE, payment.checkout_session_id,
                f"{format_cents(payment.amount_cents, payment.currency)} from {payment.parent_name} "
                f"(payment {payment.payment_id}) is settled in the ledger but Stripe has no paid checkout for it",
                payment.payment_id))
    return differences


def _money(cents: int | None, currency: str | None) -> str:
    return "an unknown amount" if cents is None else format_cents(cents, currency or DEFAULT_CURRENCY)
