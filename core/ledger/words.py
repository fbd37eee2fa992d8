"""The ledger's kinds in words: the one place an enum becomes text for people."""

from __future__ import annotations

from core.models import AdjustmentKind, ChargePurpose, EntryOrigin, LedgerEntryKind, PaymentMethod, PaymentState

METHOD = {
    PaymentMethod.STRIPE: "Stripe",
    PaymentMethod.CASH: "cash",
    PaymentMethod.CHECK: "check",
    PaymentMethod.BANK: "bank transfer",
    PaymentMethod.OTHER: "other",
}
PAYMENT_STATE = {
    PaymentState.PROCESSING: "processing",
    PaymentState.SETTLED: "settled",
    PaymentState.FAILED: "failed",
}
ADJUSTMENT = {
    AdjustmentKind.DISCOUNT: "discount",
    AdjustmentKind.WAIVER: "waiver",
    AdjustmentKind.AID: "financial aid",
    AdjustmentKind.WRITE_OFF: "write-off",
    AdjustmentKind.REFUND: "refund",
}
PURPOSE = {
    ChargePurpose.PRODUCT: "product",
    ChargePurpose.ORDER: "order",
    ChargePurpose.PERIOD: "dues period",
    ChargePurpose.INSTALLMENT: "installment",
    ChargePurpose.FEE: "fee",
}
KIND = {
    LedgerEntryKind.CHARGE: "charge",
    LedgerEntryKind.PAYMENT: "payment",
    LedgerEntryKind.ALLOCATION: "allocation",
    LedgerEntryKind.ADJUSTMENT: "adjustment",
    LedgerEntryKind.REVERSAL: "reversal",
}
ORIGIN = {
    EntryOrigin.MANUAL: "recorded by hand",
    EntryOrigin.BACKFILL: "billed by the backfill",
    EntryOrigin.PAYMENT_SYNC: "from payment sync",
    EntryOrigin.CREDIT: "from the family's credit",
    EntryOrigin.PRICE_CHANGE: "price change",
    EntryOrigin.REFUND: "re-opened by a refund",
    EntryOrigin.MIGRATION: "moved from the payment links",
}
# Command-line spellings of the adjustment kinds a treasurer records by hand.
REDUCTION_NAMES = {
    "discount": AdjustmentKind.DISCOUNT,
    "waiver": AdjustmentKind.WAIVER,
    "aid": AdjustmentKind.AID,
    "write-off": AdjustmentKind.WRITE_OFF,
}


def describe_balance(balance_cents: int, currency: str, *, processing_cents: int = 0) -> str:
    """A family's balance in words: ``owes $210.00``, ``has $50.00 credit``, ``owes nothing``."""
    from core.money import format_cents

    if balance_cents > 0:
        words = f"owes {format_cents(balance_cents, currency)}"
    elif balance_cents < 0:
        words = f"has {format_cents(-balance_cents, currency)} credit"
    else:
        words = "owes nothing"
    if processing_cents:
        words += f" ({format_cents(processing_cents, currency)} more is being paid, processing)"
    return words
