"""The treasurer's CSV export, built from the one balances function.

Cells that a spreadsheet would read as a formula (starting with ``= + - @``, a tab or a
carriage return) are prefixed with an apostrophe. Files are UTF-8 with a byte-order mark
so that spreadsheet programs read accented names correctly.
"""

from __future__ import annotations

import csv
import enum
import io
from collections.abc import Iterable, Sequence

from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, Permission, require
from core.audit import record_action
from core.reporting.balances import BalanceFilter, OutstandingBalance, outstanding_balances, summarise

_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
ALL_BALANCES = BalanceFilter()  # the default filter: frozen, so one shared instance is safe


class ExportKind(str, enum.Enum):
    LINE_ITEMS = "line_items"
    PARENTS = "parents"


LINE_ITEM_HEADER = (
    "parent", "parent_email", "player", "team", "item", "amount", "processing", "currency", "status", "pay_now_url",
    "pay_balance_url",
)
# ``pay_balance_url``: the family's "Pay the balance" link, for exactly its total (empty: none yet).
PARENT_HEADER = ("parent", "parent_email", "players", "items", "total", "processing", "currency", "pay_balance_url")


def neutralise_formula(value: object) -> str:
    """Text of a cell that a spreadsheet will show as text, never evaluate."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text


def decimal_amount(amount_cents: int) -> str:
    """``15050`` → ``'150.50'``: exact, no float on the way."""
    sign = "-" if amount_cents < 0 else ""
    whole, cents = divmod(abs(amount_cents), 100)
    return f"{sign}{whole}.{cents:02d}"


def line_item_rows(balances: Iterable[OutstandingBalance]) -> Iterable[tuple[object, ...]]:
    """One row per item. ``amount`` is what is still to pay and ``processing`` what is being
    paid, so each column adds up to the page's figure (and the per-family file's columns)."""
    for balance in balances:
        for item in balance.items:
            yield (
                balance.parent_name,
                balance.parent_email or "",
                item.player_name,
                item.team_name or "",
                item.product_name,
                decimal_amount(0 if item.processing else item.amount_cents),
                decimal_amount(item.amount_cents if item.processing else 0),
                item.currency.upper(),
                "processing" if item.processing else "owed",
                item.pay_url,
                balance.family_pay_url,
            )


def parent_rows(balances: Iterable[OutstandingBalance]) -> Iterable[tuple[object, ...]]:
    for balance in balances:
        yield (
            balance.parent_name,
            balance.parent_email or "",
            "; ".join(balance.player_names),
            len(balance.items),
            decimal_amount(balance.total_cents),
            decimal_amount(balance.processing_cents),
            balance.currency.upper(),
            balance.family_pay_url,
        )


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    """A spreadsheet-safe CSV file: UTF-8 with BOM, CRLF lines, every cell through ``neutralise_formula``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([neutralise_formula(cell) for cell in row])
    return buffer.getvalue().encode("utf-8-sig")


def render_csv(balances: Sequence[OutstandingBalance], kind: ExportKind) -> bytes:
    """The CSV bytes (UTF-8 with BOM) of ``balances``, one row per line item or per parent."""
    if kind is ExportKind.LINE_ITEMS:
        return csv_bytes(LINE_ITEM_HEADER, line_item_rows(balances))
    return csv_bytes(PARENT_HEADER, parent_rows(balances))


def export_balances_csv(
    session: Session,
    user: ActingUser,
    filters: BalanceFilter = ALL_BALANCES,
    *,
    kind: ExportKind = ExportKind.LINE_ITEMS,
) -> bytes:
    """The treasurer's export of the current balances, recorded in the audit log.

    The caller commits (the audit row lands with the caller's transaction).
    """
    require(user, Permission.EXPORT_BALANCES)
    balances = outstanding_balances(session, user, filters)
    record_balances_export(session, user, balances, kind=kind)
    return render_csv(balances, kind)


def record_balances_export(
    session: Session, user: ActingUser, balances: Sequence[OutstandingBalance], *, kind: ExportKind
) -> None:
    """Record in the audit log that ``user`` took ``balances`` away as a CSV. The caller commits.

    The dashboard renders the CSV from the balances it shows and records the export when the
    download is clicked; the command line records it through ``export_balances_csv``.
    """
    require(user, Permission.EXPORT_BALANCES)
    summary = summarise(balances)
    record_action(
        session,
        user,
        "export",
        f"Exported {summary.line_items + summary.processing_items} line items for {summary.families} families "
        f"({decimal_amount(summary.total_cents)} {summary.currency.upper()}) as {kind.value}",
        details={"kind": kind.value, "families": summary.families, "total_cents": summary.total_cents},
    )
