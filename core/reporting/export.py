"""The treasurer's CSV export, built from the one balances function.

The files are made when asked for and streamed: ``balances_csv_chunks`` reads the balances
from the database family by family (``iter_outstanding_balances``) and hands the file over in
chunks of bytes, so memory does not grow with the league. ``render_csv`` makes the same bytes
from a list of balances already in hand.

Cells that a spreadsheet would read as a formula (starting with ``= + - @``, a tab or a
carriage return) are prefixed with an apostrophe. Files are UTF-8 with a byte-order mark
so that spreadsheet programs read accented names correctly.
"""

from __future__ import annotations

import csv
import enum
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby
from operator import itemgetter
from typing import Any

from sqlalchemy import Boolean, ColumnElement, case, func, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from core.access.permissions import ActingUser, Permission, require
from core.audit import record_action
from core.reporting.balances import (
    STREAM_ROWS,
    BalanceFilter,
    BalanceSummary,
    OutstandingBalance,
    iter_outstanding_balances,
    outstanding_rows,
    read_balances,
    streamed_rows,
    summarise,
)
from core.timezones import local_date

_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
ALL_BALANCES = BalanceFilter()  # the default filter: frozen, so one shared instance is safe


class ExportKind(str, enum.Enum):
    LINE_ITEMS = "line_items"
    PARENTS = "parents"


_FILE_NAMES = {ExportKind.LINE_ITEMS: "line-items", ExportKind.PARENTS: "per-family"}


def export_file_name(kind: ExportKind, zone_name: str | None, now: datetime | None = None) -> str:
    """The file name of a balances CSV, dated by the league's calendar, not the server's (a
    download on a Los Angeles evening is that day's, though the server's clock is past midnight)."""
    return f"balances-{_FILE_NAMES[kind]}-{local_date(now or datetime.now(UTC), zone_name).isoformat()}.csv"


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
    nothing = decimal_amount(0)
    for balance in balances:
        parent_name, parent_email, family_pay_url = balance.parent_name, balance.parent_email or "", balance.family_pay_url
        for item in balance.items:
            amount = decimal_amount(item.amount_cents)
            yield (
                parent_name,
                parent_email,
                item.player_name,
                item.team_name or "",
                item.product_name,
                nothing if item.processing else amount,
                amount if item.processing else nothing,
                item.currency.upper(),
                "processing" if item.processing else "owed",
                item.pay_url,
                family_pay_url,
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


# Rows written before a chunk of bytes is handed over (about 100 KB of a line-item file).
CHUNK_ROWS = 1000


def csv_chunks(header: Sequence[str], rows: Iterable[Sequence[object]]) -> Iterator[bytes]:
    """A spreadsheet-safe CSV file in chunks of bytes: UTF-8 with BOM, CRLF lines, every cell
    through ``neutralise_formula``. Joined, the chunks are ``csv_bytes(header, rows)``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    buffer.write("\ufeff")
    writer.writerow(header)
    safe = _FORMULA_PREFIXES
    for count, row in enumerate(rows, start=1):
        # Text that needs nothing (nearly every cell) is written as it is, without a call per cell.
        writer.writerow([cell if cell.__class__ is str and not cell.startswith(safe) else neutralise_formula(cell)
                         for cell in row])
        if count % CHUNK_ROWS == 0:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    """A spreadsheet-safe CSV file: UTF-8 with BOM, CRLF lines, every cell through ``neutralise_formula``."""
    return b"".join(csv_chunks(header, rows))


def _csv_of(balances: Iterable[OutstandingBalance], kind: ExportKind) -> Iterator[bytes]:
    if kind is ExportKind.LINE_ITEMS:
        return csv_chunks(LINE_ITEM_HEADER, line_item_rows(balances))
    return csv_chunks(PARENT_HEADER, parent_rows(balances))


def render_csv(balances: Sequence[OutstandingBalance], kind: ExportKind) -> bytes:
    """The CSV bytes (UTF-8 with BOM) of ``balances``, one row per line item or per parent."""
    return b"".join(_csv_of(balances, kind))


def balances_csv_chunks(
    session: Session,
    user: ActingUser,
    filters: BalanceFilter = ALL_BALANCES,
    *,
    kind: ExportKind = ExportKind.LINE_ITEMS,
) -> Iterator[bytes]:
    """The treasurer's export of the current balances, streamed from the database in chunks of
    bytes (the same bytes as ``render_csv`` of ``outstanding_balances``); once the last chunk is
    handed over, the export is recorded in the audit log with what it held. Consume it inside
    the session's transaction; the caller commits.

    The line-item file, a row per item: its text cells are made safe and quoted by the database
    (``_line_item_columns``, as ``csv_chunks`` would), and the lines put together here. The
    per-family file is written from the families as they stream."""
    require(user, Permission.EXPORT_BALANCES)
    if kind is ExportKind.LINE_ITEMS:
        return _line_items_by_the_database(session, user, filters)
    return _streamed_export(session, user, iter_outstanding_balances(session, user, filters), kind)


def _line_items_by_the_database(session: Session, user: ActingUser, filters: BalanceFilter) -> Iterator[bytes]:
    """The line-item file from ``outstanding_rows``: the database makes each row's text cells
    safe and quoted (``_line_item_columns``), and here they are put in lines with the amounts and
    the family's balance link, family by family, counting what the audit entry records."""
    show_email = user.can(Permission.VIEW_CONTACT_DETAILS)
    statement = outstanding_rows(user, filters, lambda c: _line_item_columns(c, show_email=show_email))
    tally = _Tally()
    nothing = decimal_amount(0)
    buffer = ["\ufeff" + _csv_text(LINE_ITEM_HEADER) + "\r\n"]
    rows = read_balances(session, statement.execution_options(yield_per=STREAM_ROWS), filters)
    try:
        for _, family in groupby(streamed_rows(rows), key=itemgetter(1)):
            items = [row for row in family if row[3] > 0 or row[4] > 0]  # credit may cover a charge
            if not items:
                continue
            owed_total = sum(row[3] for row in items)
            link_cents, link_url = items[0][9], items[0][10]
            balance_url = _csv_text([link_url]) if link_url and link_cents == owed_total else ""
            players = {row[2] for row in items if row[2] is not None}
            tally.families += 1
            tally.players += len(players)
            tally.currency = tally.currency or items[0][5]
            for head, _, _, owed, processing, _, currency, owed_url, processing_url, _, _ in items:
                if owed > 0:
                    tally.total_cents += owed
                    tally.line_items += 1
                    buffer.append(f"{head},{decimal_amount(owed)},{nothing},{currency},owed,{owed_url},"
                                  f"{balance_url}\r\n")
                if processing > 0:
                    tally.processing_cents += processing
                    tally.processing_items += 1
                    buffer.append(f"{head},{nothing},{decimal_amount(processing)},{currency},processing,"
                                  f"{processing_url},{balance_url}\r\n")
            if len(buffer) >= CHUNK_ROWS:
                yield "".join(buffer).encode("utf-8")
                buffer.clear()
    finally:
        rows.close()
    yield "".join(buffer).encode("utf-8")
    record_balances_export(session, user, tally.summary(), kind=ExportKind.LINE_ITEMS)


def _csv_text(cells: Sequence[object]) -> str:
    """Cells as ``csv_chunks`` writes them, without the line's end."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow([neutralise_formula(cell) for cell in cells])
    return buffer.getvalue()


def _line_item_columns(c: Any, *, show_email: bool) -> list[ColumnElement[Any]]:
    """Per row of the balances: its first five cells as CSV text (parent, email, player, team,
    item), the family, the player, what is owed and processing, the currency (as it is, and as a
    cell), the two links as cells, and the family's balance link with what it is for."""
    head = [c.parent_name, c.parent_email if show_email else literal(""), c.player_name, c.team_name,
            c.product_name]
    joined: ColumnElement[str] = _csv_cell(head[0])
    for cell in head[1:]:
        joined = joined.concat(",").concat(_csv_cell(cell))
    return [joined.label("head"), c.parent_id, c.player_id, c.owed_cents, c.processing_cents, c.currency,
            _csv_cell(func.upper(c.currency)), _csv_cell(c.owed_url), _csv_cell(c.processing_url),
            c.family_link_cents, c.family_link_url]


def _csv_cell(value: ColumnElement[Any]) -> ColumnElement[str]:
    """A cell as ``csv_chunks`` writes it, in SQL: made safe (``neutralise_formula``), then quoted
    if it holds a comma, a double quote or a line break. Nearly every cell needs neither, and
    costs one test."""
    text = func.coalesce(value, "")
    safe = case((func.substr(text, 1, 1).in_(_FORMULA_PREFIXES), literal("'").concat(text)), else_=text)
    quoted = case((_needs_quotes(safe), literal('"').concat(func.replace(safe, '"', '""')).concat('"')), else_=safe)
    return case((_special(text), quoted), else_=text)


class _needs_quotes(FunctionElement[bool]):
    """Whether a CSV cell holds a comma, a double quote or a line break (Python's ``csv``
    quotes it then): a regular expression on PostgreSQL, ``instr`` elsewhere."""

    type = Boolean()
    inherit_cache = True
    name = "needs_quotes"


class _special(FunctionElement[bool]):
    """Whether a cell needs anything done: ``_needs_quotes``, or a formula's first character."""

    type = Boolean()
    inherit_cache = True
    name = "special_cell"


_MARKS = ("','", "'\"'", "char(13)", "char(10)")


def _holds_a_mark(text: str) -> str:
    return " OR ".join(f"instr({text}, {mark}) > 0" for mark in _MARKS)


@compiles(_needs_quotes)
def _needs_quotes_default(element: _needs_quotes, compiler: SQLCompiler, **kw: Any) -> str:
    return f"({_holds_a_mark(compiler.process(element.clauses, **kw))})"


@compiles(_needs_quotes, "postgresql")
def _needs_quotes_postgresql(element: _needs_quotes, compiler: SQLCompiler, **kw: Any) -> str:
    return f"({compiler.process(element.clauses, **kw)} ~ E'[,\"\\r\\n]')"


@compiles(_special)
def _special_default(element: _special, compiler: SQLCompiler, **kw: Any) -> str:
    text = compiler.process(element.clauses, **kw)
    firsts = ", ".join(("'='", "'+'", "'-'", "'@'", "char(9)", "char(13)"))
    return f"(substr({text}, 1, 1) IN ({firsts}) OR {_holds_a_mark(text)})"


@compiles(_special, "postgresql")
def _special_postgresql(element: _special, compiler: SQLCompiler, **kw: Any) -> str:
    return f"({compiler.process(element.clauses, **kw)} ~ E'^[-=+@\\t\\r]|[,\"\\r\\n]')"


def _streamed_export(session: Session, user: ActingUser, balances: Iterator[OutstandingBalance],
                     kind: ExportKind) -> Iterator[bytes]:
    tally = _Tally()
    yield from _csv_of(tally.counting(balances), kind)
    record_balances_export(session, user, tally.summary(), kind=kind)


def export_balances_csv(
    session: Session,
    user: ActingUser,
    filters: BalanceFilter = ALL_BALANCES,
    *,
    kind: ExportKind = ExportKind.LINE_ITEMS,
) -> bytes:
    """``balances_csv_chunks`` as one piece of bytes (for a small league or a test)."""
    return b"".join(balances_csv_chunks(session, user, filters, kind=kind))


@dataclass
class _Tally:
    """The headline figures of the balances that went through, counted on the way (so the audit
    entry needs no second query, and agrees with the file)."""

    total_cents: int = 0
    families: int = 0
    players: int = 0
    line_items: int = 0
    processing_cents: int = 0
    processing_items: int = 0
    currency: str = ""

    def counting(self, balances: Iterable[OutstandingBalance]) -> Iterator[OutstandingBalance]:
        # ``summarise`` of each balance, added up (a family's players are its own).
        for balance in balances:
            items = balance.items
            processing = [item.amount_cents for item in items if item.processing]
            self.total_cents += balance.total_cents
            self.families += 1 if items else 0
            self.players += len({item.player_id for item in items if item.player_id is not None})
            self.line_items += len(items) - len(processing)
            self.processing_cents += sum(processing)
            self.processing_items += len(processing)
            self.currency = self.currency or (items[0].currency if items else "")
            yield balance

    def summary(self) -> BalanceSummary:
        return BalanceSummary(
            total_cents=self.total_cents, families=self.families, players=self.players, line_items=self.line_items,
            currency=self.currency or summarise([]).currency, processing_cents=self.processing_cents,
            processing_items=self.processing_items,
        )


def record_balances_export(session: Session, user: ActingUser, summary: BalanceSummary, *, kind: ExportKind) -> None:
    """Record in the audit log that ``user`` took balances with these headline figures away as a
    CSV. The caller commits."""
    require(user, Permission.EXPORT_BALANCES)
    record_action(
        session,
        user,
        "export",
        f"Exported {summary.line_items + summary.processing_items} line items for {summary.families} families "
        f"({decimal_amount(summary.total_cents)} {summary.currency.upper()}) as {kind.value}",
        details={"kind": kind.value, "families": summary.families, "total_cents": summary.total_cents},
    )
