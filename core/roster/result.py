"""What an import did or would do: counts per entity and the problems found."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from core.money import LARGE_AMOUNT_CENTS, format_cents
from core.roster.formats import RosterKind

ENTITIES: tuple[str, ...] = ("teams", "parents", "players", "products", "orders")
MAX_REPORTED_ERRORS = 200


@dataclass(frozen=True)
class RowError:
    """One problem, naming the line of the file and the column when there is one."""

    line: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = []
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.column:
            where.append(f"column {self.column}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class ErrorList:
    """Collects problems; keeps the first ``limit`` and counts the rest."""

    def __init__(self, limit: int = MAX_REPORTED_ERRORS) -> None:
        self.limit = limit
        self.kept: list[RowError] = []
        self.total = 0

    def add(self, line: int | None, column: str | None, message: str) -> None:
        self.total += 1
        if len(self.kept) < self.limit:
            self.kept.append(RowError(line, column, message))

    def __bool__(self) -> bool:
        return self.total > 0

    def __iter__(self) -> Iterator[RowError]:
        return iter(self.kept)


@dataclass(frozen=True)
class LargeAmount:
    """An amount above ``core.money.LARGE_AMOUNT_CENTS``: imported only once it is confirmed."""

    line: int
    column: str
    amount_cents: int
    written: str  # as the file has it

    def describe(self, currency: str) -> str:
        """``line 3, column amount: $15,000.00 (written '15000')``."""
        return f"line {self.line}, column {self.column}: {format_cents(self.amount_cents, currency)} (written {self.written!r})"


@dataclass
class EntityCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0

    @property
    def total(self) -> int:
        return self.created + self.updated + self.unchanged


@dataclass
class ImportResult:
    """The preview (dry run) or the outcome (commit) of one roster import.

    ``counts`` has every entity; the file's kind decides which of them it touches
    (``entities``). ``errors`` holds the first problems found; ``error_count`` all of them.
    When there is any error nothing was (or would be) changed.

    ``large_amounts`` lists every amount above the sanity bound (``LARGE_AMOUNT_CENTS``): a file
    with any is committed only when the caller confirms them; ``unconfirmed`` says a commit was
    asked for and refused for that reason alone.
    """

    file_name: str
    kind: RosterKind | None = None
    entities: tuple[str, ...] = ()
    rows: int = 0
    counts: dict[str, EntityCounts] = field(default_factory=lambda: {e: EntityCounts() for e in ENTITIES})
    errors: list[RowError] = field(default_factory=list)
    error_count: int = 0
    committed: bool = False
    currency: str = "usd"
    large_amounts: list[LargeAmount] = field(default_factory=list)
    unconfirmed: bool = False

    @property
    def ok(self) -> bool:
        return self.error_count == 0

    @property
    def large_amount_bound(self) -> str:
        """The sanity bound in the league's currency, for messages: ``$10,000.00``."""
        return format_cents(LARGE_AMOUNT_CENTS, self.currency)

    @property
    def errors_not_shown(self) -> int:
        return self.error_count - len(self.errors)

    @property
    def changes(self) -> int:
        return sum(c.created + c.updated for c in self.counts.values())

    def summary(self) -> str:
        """One line for the audit log and messages: ``players: 3 created, 1 updated, 9 unchanged``."""
        parts = [
            f"{entity}: {c.created} created, {c.updated} updated, {c.unchanged} unchanged"
            for entity, c in self.counts.items()
            if entity in self.entities
        ]
        return "; ".join(parts) or "nothing to import"
