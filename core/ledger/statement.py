"""A family's statement: every charge, payment and adjustment in date order, with a running
balance, and what is open now.

Each line's amount is what the entry does to the balance: a charge adds what is billed, a
payment takes off what was paid (a processing one what it covers, a failed one nothing), a
reduction what it took off its charges, a refund adds what was given back, and a reversal
undoes its entry. A charge of a withdrawn player is not billed: its line counts only what was
paid on it. The last running balance is what the family owes (negative: its credit), the
same figure as the balances page (``outstanding_balances``, which the "open" part comes from).

For treasurers and admins (``Permission.VIEW_LEDGER``): methods, references and notes are
there. A coach sees balances, never a statement.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, Permission, find_in_league, require
from core.ledger.accounts import charge_settlements, family_account, payment_positions, reversed_ids
from core.ledger.words import ADJUSTMENT, METHOD, ORIGIN, PAYMENT_STATE
from core.models import (
    Adjustment,
    AdjustmentKind,
    Allocation,
    Charge,
    LedgerEntry,
    LedgerEntryKind,
    Parent,
    Payment,
    PaymentState,
    Player,
    PlayerStatus,
    Product,
    Reversal,
    Tenant,
)
from core.money import format_cents
from core.reporting.balances import BalanceFilter, OutstandingBalance, outstanding_balances
from core.reporting.export import csv_bytes, decimal_amount
from core.timezones import league_zone, local_date

STATEMENT_HEADER = (
    "date", "entry", "kind", "description", "player", "method", "reference", "state", "amount", "balance",
    "reversed_by", "note", "recorded_by",
)


@dataclass(frozen=True)
class StatementLine:
    """One entry of a family's account and the balance after it."""

    entry_id: int
    on: date
    kind: LedgerEntryKind
    description: str
    player_name: str | None
    amount_cents: int  # what it does to the balance (+ owed more, - owed less)
    balance_cents: int
    method: str | None = None
    reference: str | None = None
    state: str | None = None
    note: str | None = None
    recorded_by: str = ""
    origin: str = ""
    reversed_by: int | None = None


@dataclass(frozen=True)
class Statement:
    parent_id: int
    parent_name: str
    parent_email: str | None
    currency: str
    lines: tuple[StatementLine, ...]
    balance_cents: int  # what the family owes now; negative: its credit
    credit_cents: int
    processing_cents: int
    open: OutstandingBalance | None  # the open charges, as the balances page shows them
    email_opt_out: bool = False  # the family asked for no reminder emails (core.email.opt_out)

    @property
    def owed_cents(self) -> int:
        return max(self.balance_cents, 0)

    def money(self, cents: int) -> str:
        return format_cents(cents, self.currency)


def family_statement(session: Session, user: ActingUser, parent_id: int) -> Statement:
    """The statement of one family of the user's league (a constant number of statements)."""
    require(user, Permission.VIEW_LEDGER)
    parent = find_in_league(session, user, Parent, parent_id, label="parent")
    currency = session.get_one(Tenant, user.tenant_id).currency.lower()
    account = family_account(session, user, parent.id, currency=currency)
    lines = _lines(session, user, parent.id)
    running = 0
    shown = []
    for line in sorted(lines, key=lambda line: (line.on, line.entry_id)):
        running += line.amount_cents
        shown.append(_with_balance(line, running))
    balances = outstanding_balances(session, user, BalanceFilter(parent_ids=frozenset({parent.id})))
    return Statement(
        parent_id=parent.id, parent_name=parent.name,
        parent_email=parent.email if user.can(Permission.VIEW_CONTACT_DETAILS) else None,
        currency=currency, lines=tuple(shown), balance_cents=running, credit_cents=account.credit_cents,
        processing_cents=account.processing_cents, open=balances[0] if balances else None,
        email_opt_out=parent.email_opt_out,
    )


def statement_csv(session: Session, user: ActingUser, parent_id: int) -> bytes:
    """The statement as a spreadsheet-safe CSV (UTF-8 with BOM), one row per line."""
    statement = family_statement(session, user, parent_id)
    return csv_bytes(STATEMENT_HEADER, (
        (line.on.isoformat(), line.entry_id, line.kind.value, line.description, line.player_name or "",
         line.method or "", line.reference or "", line.state or "", decimal_amount(line.amount_cents),
         decimal_amount(line.balance_cents), line.reversed_by or "", line.note or "", line.recorded_by)
        for line in statement.lines
    ))


# -- the lines ------------------------------------------------------------------------------------


def _with_balance(line: StatementLine, balance: int) -> StatementLine:
    return replace(line, balance_cents=balance)


def _lines(session: Session, user: ActingUser, parent_id: int) -> list[StatementLine]:
    tenant_id = user.tenant_id
    zone_name = league_zone(session.get(Tenant, tenant_id))  # an adjustment's day is the league's day
    entries = {
        entry.id: entry for entry in session.scalars(
            select(LedgerEntry).where(LedgerEntry.tenant_id == tenant_id, LedgerEntry.parent_id == parent_id)
        )
    }
    reversed_by = dict(session.execute(
        select(Reversal.reversed_entry_id, Reversal.id).where(Reversal.tenant_id == tenant_id,
                                                              Reversal.parent_id == parent_id)
    ).all())
    effect: dict[int, int] = {}  # entry id -> what it does to the balance (before any reversal)
    lines: list[StatementLine] = []

    def line(entry_id: int, on: date, description: str, amount: int, **fields: object) -> None:
        entry = entries[entry_id]
        effect[entry_id] = amount
        lines.append(StatementLine(
            entry_id=entry_id, on=on, kind=entry.kind, description=description, amount_cents=amount,
            balance_cents=0, recorded_by=entry.recorded_by, origin=ORIGIN[entry.origin],
            reversed_by=reversed_by.get(entry_id), **fields,  # type: ignore[arg-type]
        ))

    settled = charge_settlements(tenant_id, [parent_id]).subquery("settled")
    for charge, product_name, first, last, status, covered in session.execute(
        select(Charge, Product.name, Player.first_name, Player.last_name, Player.status,
               func.coalesce(settled.c.settled_cents, 0) + func.coalesce(settled.c.processing_cents, 0))
        .outerjoin(Product, Product.id == Charge.product_id)
        .outerjoin(Player, Player.id == Charge.player_id)
        .outerjoin(settled, settled.c.charge_id == Charge.id)
        .where(Charge.tenant_id == tenant_id, Charge.parent_id == parent_id)
    ):
        billed = status is not PlayerStatus.WITHDRAWN
        description = charge.description if charge.description else (product_name or "charge")
        if not billed:
            description += " (not billed: the player withdrew)"
        line(charge.id, charge.due_on, description, charge.amount_cents if billed else int(covered),
             player_name=f"{first} {last}".strip() if first is not None else None)

    positions = {row.payment_id: row for row in session.execute(
        select(payment_positions(tenant_id, [parent_id]).subquery("p"))
    )}
    for payment in session.scalars(
        select(Payment).where(Payment.tenant_id == tenant_id, Payment.parent_id == parent_id)
    ):
        position = positions.get(payment.id)
        allocated = int(position.allocated_cents) if position is not None else 0
        amount = {PaymentState.SETTLED: -payment.amount_cents, PaymentState.PROCESSING: -allocated,
                  PaymentState.FAILED: 0}[payment.state]
        line(payment.id, payment.received_on, f"{METHOD[payment.method]} payment of "
             f"{format_cents(payment.amount_cents, payment.currency)}", amount, method=METHOD[payment.method],
             reference=payment.reference, state=PAYMENT_STATE[payment.state], note=payment.note,
             player_name=None)

    taken_off = dict(session.execute(
        select(Allocation.adjustment_id, func.sum(Allocation.amount_cents))
        .where(Allocation.tenant_id == tenant_id, Allocation.parent_id == parent_id,
               Allocation.adjustment_id.is_not(None), Allocation.amount_cents > 0,
               Allocation.charge_id.not_in(reversed_ids(tenant_id).scalar_subquery()))
        .group_by(Allocation.adjustment_id)
    ).all())
    for adjustment in session.scalars(
        select(Adjustment).where(Adjustment.tenant_id == tenant_id, Adjustment.parent_id == parent_id)
    ):
        refund = adjustment.kind is AdjustmentKind.REFUND
        what = ADJUSTMENT[adjustment.kind]
        if refund:
            what += f" of payment {adjustment.payment_id}" + (" through Stripe" if adjustment.stripe_refund_id else "")
        amount = adjustment.amount_cents if refund else -int(taken_off.get(adjustment.id, 0))
        line(adjustment.id, local_date(entries[adjustment.id].recorded_at, zone_name),
             f"{what}: {adjustment.reason}", amount, reference=adjustment.stripe_refund_id, player_name=None)

    for reversal in session.scalars(
        select(Reversal).where(Reversal.tenant_id == tenant_id, Reversal.parent_id == parent_id)
    ):
        undone = effect.get(reversal.reversed_entry_id, 0)
        line(reversal.id, local_date(entries[reversal.id].recorded_at, zone_name),
             f"reverses entry {reversal.reversed_entry_id}: {reversal.reason}", -undone, player_name=None)
    return lines


def statement_lines_text(statement: Statement) -> Iterable[str]:
    """The statement as lines of text (the command line prints these)."""
    for line in statement.lines:
        who = f" [{line.player_name}]" if line.player_name else ""
        ref = f" ({line.reference})" if line.reference else ""
        state = f" {line.state}" if line.state and line.state != "settled" else ""
        undone = f"  reversed by entry {line.reversed_by}" if line.reversed_by else ""
        yield (f"{line.on.isoformat()}  entry {line.entry_id:<6} {line.description}{who}{ref}{state}  "
               f"{statement.money(line.amount_cents):>12}  balance {statement.money(line.balance_cents)}{undone}")
