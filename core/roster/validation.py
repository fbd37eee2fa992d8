"""Row-by-row validation: CSV rows in, typed records out, every problem named by line and column.

These checks need nothing but the file. Checks against the league's data (an order for
an unknown player) happen in ``planning``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from email_validator import EmailNotValidError
from sqlalchemy.orm import InstrumentedAttribute

from core.email.headers import validated_recipient
from core.errors import InvalidInput
from core.models import Order, OrderStatus, Parent, Player, PlayerStatus, Product, ProductKind, Team
from core.money import DECIMAL_POINT, LARGE_AMOUNT_CENTS, MoneyNotation, parse_money
from core.roster.formats import ORDERS, PLAYERS, PRODUCTS, FileFormat, RosterKind, normalise_column_name
from core.roster.reading import CsvRow
from core.roster.result import ErrorList, LargeAmount

T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)


@dataclass(frozen=True, slots=True)
class PlayerRecord:
    line: int
    ref: str
    first_name: str
    last_name: str
    status: PlayerStatus
    team: str | None
    parent_ref: str
    parent_name: str
    parent_email: str | None
    # The optional parent_first_name column: None when the file has no such column (the
    # parent's first name is left as it is), "" when the cell is empty (it is cleared).
    parent_first_name: str | None = None


@dataclass(frozen=True, slots=True)
class ProductRecord:
    line: int
    name: str
    kind: ProductKind
    required: bool
    amount_cents: int


@dataclass(frozen=True, slots=True)
class OrderRecord:
    line: int
    ref: str
    player_ref: str
    product: str
    amount_cents: int
    status: OrderStatus


RosterRecord = PlayerRecord | ProductRecord | OrderRecord

_YES_NO = {"yes": True, "no": False}


class EmailChecker:
    """The sender's verdict on an address (``core.email.headers.validated_recipient``), with
    the domain half remembered: an address the import accepts is one every send can use.

    Checking the domain (IDNA) is most of email-validator's cost, and a league's parents
    share a few domains. Once a domain has passed, an address at it whose local part is
    plain ASCII (letters, digits, ``._%+-``, no leading, trailing or double dots) is
    accepted as the full check would accept it; anything else gets the full check.
    """

    _PLAIN_LOCAL = re.compile(r"[A-Za-z0-9_%+\-]+(?:\.[A-Za-z0-9_%+\-]+)*\Z")
    _LOCAL_MAX, _ADDRESS_MAX = 64, 254

    def __init__(self) -> None:
        self._domains: dict[str, str] = {}

    def normalise(self, address: str) -> str:
        """The normalised address; raises ``EmailNotValidError`` when it is not valid."""
        local, _, domain = address.rpartition("@")
        known = self._domains.get(domain)
        if (
            known is not None
            and len(local) <= self._LOCAL_MAX
            and len(local) + 1 + len(known) <= self._ADDRESS_MAX
            and self._PLAIN_LOCAL.match(local)
        ):
            return f"{local}@{known}"
        checked = validated_recipient(address)
        self._domains[domain] = checked.domain
        return checked.normalized


def _max_lengths() -> dict[str, int]:
    """Column limits, taken from the model so the file is refused before the database would."""

    def length(column: InstrumentedAttribute[Any]) -> int:
        return int(column.property.columns[0].type.length)

    return {
        "player_ref": length(Player.external_ref),
        "first_name": length(Player.first_name),
        "last_name": length(Player.last_name),
        "team": length(Team.name),
        "parent_ref": length(Parent.external_ref),
        "parent_name": length(Parent.name),
        "parent_first_name": length(Parent.first_name),
        "parent_email": length(Parent.email),
        "product": length(Product.name),
        "order_ref": length(Order.external_ref),
    }


class RowChecker:
    """Checks the rows of one file in order; remembers what cross-row rules need."""

    format: FileFormat

    def __init__(self, errors: ErrorList, notation: MoneyNotation = DECIMAL_POINT) -> None:
        self.errors = errors
        self.notation = notation
        # Amounts above the sanity bound, which the import commits only once confirmed.
        self.large_amounts: list[LargeAmount] = []
        self._limits = _max_lengths()
        self._first_line_of_ref: dict[str, int] = {}

    def check(self, row: CsvRow) -> RosterRecord | None:
        """The row's record, or None when it has a problem (recorded in ``errors``)."""
        if row.problem is not None:
            # Its values may sit under the wrong columns: checking them would only mislead.
            self.errors.add(row.line, None, row.problem)
            return None
        before = self.errors.total
        record = self._check(row)
        return record if self.errors.total == before else None

    def _check(self, row: CsvRow) -> RosterRecord | None:
        raise NotImplementedError

    # Field rules shared by the kinds of file.

    def _present(self, row: CsvRow) -> None:
        """Required cells are filled in, and no cell holds what the database cannot: more
        characters than it has room for, or a NUL (PostgreSQL refuses it in text, which would
        fail the commit after a clean preview)."""
        for column in self.format.required_values:
            if not row.values[column]:
                self.errors.add(row.line, column, f"is empty; every row needs a {column}")
        for column, value in row.values.items():
            if "\x00" in value:
                self.errors.add(
                    row.line, column,
                    "holds a NUL character (byte 0x00), which cannot be stored; remove it from the file "
                    "(it often comes from a file saved as UTF-16: save it as \"CSV UTF-8\")",
                )
            limit = self._limits.get(column)
            if limit is not None and len(value) > limit:
                self.errors.add(row.line, column, f"is {len(value)} characters long; the most is {limit}")

    # The rules below skip an empty cell: ``_present`` has already reported it.

    def _choice(self, row: CsvRow, column: str, allowed: Mapping[str, T]) -> T | None:
        text = row.values[column]
        key = normalise_column_name(text)
        if not text:
            return None
        if key not in allowed:
            names = _one_of(list(allowed))
            self.errors.add(row.line, column, f"{text!r} is not a known {column}; use {names}")
            return None
        return allowed[key]

    def _money(self, row: CsvRow, column: str) -> int | None:
        """The cell's amount in cents, read in the file's notation; large ones are remembered."""
        text = row.values[column]
        if not text:
            return None
        try:
            amount = parse_money(text, self.notation)
        except InvalidInput as exc:
            self.errors.add(row.line, column, str(exc))
            return None
        if amount > LARGE_AMOUNT_CENTS:
            self.large_amounts.append(LargeAmount(row.line, column, amount, text))
        return amount

    def _unique_ref(self, row: CsvRow, column: str) -> None:
        ref = row.values[column]
        if not ref:
            return
        first = self._first_line_of_ref.setdefault(ref, row.line)
        if first != row.line:
            self.errors.add(
                row.line, column, f"{ref!r} is already used on line {first}; each {column} must appear once"
            )


def _one_of(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _members(enum_class: type[E]) -> dict[str, E]:
    return {member.value: member for member in enum_class}


class PlayerRowChecker(RowChecker):
    format = PLAYERS

    def __init__(self, errors: ErrorList, notation: MoneyNotation = DECIMAL_POINT) -> None:
        super().__init__(errors, notation)
        self._parents: dict[str, tuple[int, str, str | None, str | None]] = {}
        # Siblings repeat their parent's address: check each distinct text once.
        self._emails: dict[str, tuple[str | None, str]] = {}
        self._email_checker = EmailChecker()
        self._statuses = _members(PlayerStatus)

    def _check(self, row: CsvRow) -> PlayerRecord | None:
        self._present(row)
        values = row.values
        self._unique_ref(row, "player_ref")
        status = self._choice(row, "status", self._statuses)
        email, email_ok = self._email(row)
        if email_ok and values["parent_ref"]:
            self._same_parent(row, email)
        if status is None:
            return None
        return PlayerRecord(
            line=row.line,
            ref=values["player_ref"],
            first_name=values["first_name"],
            last_name=values["last_name"],
            status=status,
            team=values["team"] or None,
            parent_ref=values["parent_ref"],
            parent_name=values["parent_name"],
            parent_email=email,
            parent_first_name=values.get("parent_first_name"),
        )

    def _email(self, row: CsvRow) -> tuple[str | None, bool]:
        """The normalised address (None when empty) and whether the cell is acceptable."""
        text = row.values["parent_email"]
        if not text:
            return None, True
        if text not in self._emails:
            try:
                self._emails[text] = (self._email_checker.normalise(text), "")
            except EmailNotValidError as exc:
                self._emails[text] = (None, str(exc))
        normalised, problem = self._emails[text]
        if normalised is None:
            self.errors.add(row.line, "parent_email", f"{text!r} is not a valid email address: {problem}")
            return None, False
        return normalised, True

    def _same_parent(self, row: CsvRow, email: str | None) -> None:
        """Siblings share a parent_ref; their rows must agree on who that parent is."""
        ref, name = row.values["parent_ref"], row.values["parent_name"]
        given_name = row.values.get("parent_first_name")
        first = self._parents.setdefault(ref, (row.line, name, email, given_name))
        first_line, first_name, first_email, first_given_name = first
        if first_line == row.line:
            return
        if given_name != first_given_name:
            self.errors.add(
                row.line,
                "parent_first_name",
                f"parent {ref!r} has first name {first_given_name or '(none)'!r} on line {first_line} "
                f"but {given_name or '(none)'!r} here",
            )
        if name != first_name:
            self.errors.add(
                row.line,
                "parent_name",
                f"parent {ref!r} is {first_name!r} on line {first_line} but {name!r} here",
            )
        if (email or "").lower() != (first_email or "").lower():
            self.errors.add(
                row.line,
                "parent_email",
                f"parent {ref!r} has email {first_email or '(none)'!r} on line {first_line} "
                f"but {email or '(none)'!r} here",
            )


class ProductRowChecker(RowChecker):
    format = PRODUCTS

    def _check(self, row: CsvRow) -> ProductRecord | None:
        self._present(row)
        self._unique_ref(row, "product")
        kind = self._choice(row, "kind", _members(ProductKind))
        required = self._choice(row, "required", _YES_NO)
        amount = self._money(row, "amount")
        if kind is None or required is None or amount is None:
            return None
        return ProductRecord(row.line, row.values["product"], kind, required, amount)


class OrderRowChecker(RowChecker):
    format = ORDERS

    def __init__(self, errors: ErrorList, notation: MoneyNotation = DECIMAL_POINT) -> None:
        super().__init__(errors, notation)
        self._statuses = _members(OrderStatus)

    def _check(self, row: CsvRow) -> OrderRecord | None:
        self._present(row)
        self._unique_ref(row, "order_ref")
        amount = self._money(row, "amount")
        status = self._choice(row, "status", self._statuses)
        if amount is None or status is None:
            return None
        values = row.values
        return OrderRecord(row.line, values["order_ref"], values["player_ref"], values["product"], amount, status)


CHECKERS: dict[RosterKind, type[RowChecker]] = {
    RosterKind.PLAYERS: PlayerRowChecker,
    RosterKind.PRODUCTS: ProductRowChecker,
    RosterKind.ORDERS: OrderRowChecker,
}
