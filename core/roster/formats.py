"""The three kinds of roster file, recognised by their header row."""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from core.errors import InvalidInput


class RosterKind(str, enum.Enum):
    PLAYERS = "players"
    PRODUCTS = "products"
    ORDERS = "orders"


@dataclass(frozen=True)
class FileFormat:
    """The columns a kind of file must have (in any order; extra columns are ignored)."""

    kind: RosterKind
    columns: tuple[str, ...]
    # Columns that must be in the header but whose cells may be empty.
    may_be_empty: frozenset[str]
    # What the file creates or updates, in the order a person reads the preview.
    entities: tuple[str, ...]
    # Columns a file may have or leave out; read when the header has them.
    optional: tuple[str, ...] = ()

    @cached_property
    def required_values(self) -> tuple[str, ...]:
        return tuple(c for c in self.columns if c not in self.may_be_empty)

    def describe(self) -> str:
        optional = f" (optional: {', '.join(self.optional)})" if self.optional else ""
        return f"{self.kind.value}: {', '.join(self.columns)}{optional}"


PLAYERS = FileFormat(
    RosterKind.PLAYERS,
    columns=(
        "player_ref",
        "first_name",
        "last_name",
        "status",
        "team",
        "parent_ref",
        "parent_name",
        "parent_email",
    ),
    may_be_empty=frozenset({"team", "parent_email"}),
    entities=("teams", "parents", "players"),
    optional=("parent_first_name",),
)
PRODUCTS = FileFormat(
    RosterKind.PRODUCTS,
    columns=("product", "kind", "required", "amount"),
    may_be_empty=frozenset(),
    entities=("products",),
)
ORDERS = FileFormat(
    RosterKind.ORDERS,
    columns=("order_ref", "player_ref", "product", "amount", "status"),
    may_be_empty=frozenset(),
    entities=("orders",),
)
FORMATS: tuple[FileFormat, ...] = (PLAYERS, PRODUCTS, ORDERS)

_SEPARATORS = re.compile(r"[\s\-_]+")


def normalise_column_name(name: str) -> str:
    """``' Player Ref '`` → ``'player_ref'``: header names ignore case, spaces and dashes."""
    return _SEPARATORS.sub("_", name.strip().lower()).strip("_")


@dataclass(frozen=True)
class RecognisedHeader:
    format: FileFormat
    # Where each of the format's columns is in a row.
    positions: dict[str, int]


def recognise_header(cells: Sequence[str]) -> RecognisedHeader:
    """The file format whose columns all appear in ``cells``; ``InvalidInput`` saying why not."""
    positions: dict[str, int] = {}
    repeated: list[str] = []
    for index, cell in enumerate(cells):
        name = normalise_column_name(cell)
        if not name:
            continue
        if name in positions:
            repeated.append(name)
        else:
            positions[name] = index
    matches = [f for f in FORMATS if all(c in positions for c in f.columns)]
    if len(matches) > 1:
        kinds = " and ".join(f.kind.value for f in matches)
        raise InvalidInput(
            f"The header has the columns of more than one kind of file ({kinds}); "
            "import each kind from its own file."
        )
    if not matches:
        raise InvalidInput(_no_match_message(positions))
    found = matches[0]
    clashing = [name for name in repeated if name in found.columns]
    if clashing:
        raise InvalidInput(
            f"The column {clashing[0]} appears more than once in the header; keep only one."
        )
    clashing = [name for name in repeated if name in found.optional]
    if clashing:
        raise InvalidInput(
            f"The column {clashing[0]} appears more than once in the header; keep only one."
        )
    wanted = (*found.columns, *(c for c in found.optional if c in positions))
    return RecognisedHeader(found, {c: positions[c] for c in wanted})


def _no_match_message(present: dict[str, int]) -> str:
    closest: FileFormat | None = max(
        FORMATS, key=lambda f: sum(c in present for c in f.columns), default=None
    )
    expected = "; ".join(f.describe() for f in FORMATS)
    message = f"The header row matches no kind of roster file. Expected the columns of one of {expected}."
    if closest is not None and any(c in present for c in closest.columns):
        missing = ", ".join(c for c in closest.columns if c not in present)
        message += f" It looks like a {closest.kind.value} file missing: {missing}."
    return message
