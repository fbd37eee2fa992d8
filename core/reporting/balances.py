"""Outstanding balances: the one implementation of "who owes what".

The dashboard table, the treasurer's CSV, the email audience and the email body all call
``outstanding_balances``. It runs one SQL statement whatever the size of the league.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, NamedTuple

from sqlalchemy import CompoundSelect, Row, Select, func, select
from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, Permission, require
from core.errors import PermissionDenied
from core.models import LinkStatus, Parent, PaymentLink, Player, PlayerStatus, Product, Team
from core.reporting.name_search import fold


class LineItem(NamedTuple):
    """One active payment link: what one player owes for one product.

    A named tuple rather than a dataclass: a large league builds tens of thousands of
    these per request, and a tuple is several times cheaper to create.
    """

    link_id: int
    player_id: int
    player_name: str
    team_name: str | None
    product_id: int
    product_name: str
    amount_cents: int
    currency: str
    pay_url: str
    processing: bool = False


@dataclass(frozen=True)
class OutstandingBalance:
    """Everything one parent owes. ``parent_email`` is None when the viewer may not see it."""

    parent_id: int
    parent_name: str
    parent_email: str | None
    email_opt_out: bool
    items: tuple[LineItem, ...]

    @property
    def total_cents(self) -> int:
        """What is still to pay: every item except payments already processing."""
        return sum(item.amount_cents for item in self.items if not item.processing)

    @property
    def processing_cents(self) -> int:
        """Paid through a delayed method (e.g. a bank debit) that has not settled yet."""
        return sum(item.amount_cents for item in self.items if item.processing)

    @property
    def currency(self) -> str:
        return self.items[0].currency if self.items else "usd"

    @property
    def player_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(item.player_name for item in self.items))


@dataclass(frozen=True)
class BalanceFilter:
    """Narrow the balances. Empty fields do not filter."""

    team_ids: frozenset[int] = field(default_factory=frozenset)
    product_ids: frozenset[int] = field(default_factory=frozenset)
    parent_ids: frozenset[int] = field(default_factory=frozenset)
    parent_search: str = ""
    parent_email: str = ""


@dataclass(frozen=True)
class BalanceSummary:
    total_cents: int  # still to pay; payments processing are not in it
    families: int
    players: int
    line_items: int  # items still to pay; those with a payment processing are not in it
    currency: str
    processing_cents: int = 0
    processing_items: int = 0


def outstanding_balances(
    session: Session, user: ActingUser, filters: BalanceFilter = BalanceFilter()
) -> list[OutstandingBalance]:
    """Per parent, the active links of signed or prospect players and the total, by parent name.

    Paid and deactivated links are not owed, and neither are links of withdrawn players
    (payment sync deactivates those). A coach sees only their own teams and no email
    addresses; everyone sees only their own league.
    """
    require(user, Permission.VIEW_BALANCES)
    if filters.parent_email and not user.can(Permission.VIEW_CONTACT_DETAILS):
        raise PermissionDenied(f"A {user.role.value} may not search by email address.")
    # Core execution: plain rows, without the ORM's per-row bookkeeping.
    rows = session.connection().execute(_balances_statement(user, filters)).all()
    with _cyclic_gc_paused():
        return _group_by_parent(rows, show_email=user.can(Permission.VIEW_CONTACT_DETAILS))


def summarise(balances: Sequence[OutstandingBalance]) -> BalanceSummary:
    """The headline figures of a list of balances (no extra query)."""
    items = [item for balance in balances for item in balance.items]
    return BalanceSummary(
        total_cents=sum(balance.total_cents for balance in balances),
        families=sum(1 for balance in balances if balance.items),
        players=len({item.player_id for item in items}),
        line_items=sum(1 for item in items if not item.processing),
        currency=items[0].currency if items else "usd",
        processing_cents=sum(balance.processing_cents for balance in balances),
        processing_items=sum(1 for item in items if item.processing),
    )


def _balances_statement(user: ActingUser, filters: BalanceFilter) -> Select:  # type: ignore[type-arg]
    statement = (
        select(
            Parent.id,
            Parent.name,
            Parent.email,
            Parent.email_opt_out,
            # From here on, the columns are a LineItem's fields in order.
            PaymentLink.id,
            Player.id,
            func.trim(Player.first_name + " " + Player.last_name),
            Team.name,
            Product.id,
            Product.name,
            PaymentLink.amount_cents,
            PaymentLink.currency,
            PaymentLink.url,
            PaymentLink.processing,
        )
        .join(Player, Player.id == PaymentLink.player_id)
        .join(Parent, Parent.id == Player.parent_id)
        .join(Product, Product.id == PaymentLink.product_id)
        .outerjoin(Team, Team.id == Player.team_id)
        .where(
            PaymentLink.tenant_id == user.tenant_id,
            Player.tenant_id == user.tenant_id,
            Parent.tenant_id == user.tenant_id,
            PaymentLink.status == LinkStatus.ACTIVE,
            Player.status != PlayerStatus.WITHDRAWN,
        )
    )  # ordered in Python: sorting in SQL made the database spill large leagues to disk
    if not user.sees_all_teams:
        statement = statement.where(Player.team_id.in_(sorted(user.team_ids) or [-1]))
    if filters.team_ids:
        statement = statement.where(Player.team_id.in_(sorted(filters.team_ids)))
    if filters.product_ids:
        statement = statement.where(PaymentLink.product_id.in_(sorted(filters.product_ids)))
    if filters.parent_ids:
        statement = statement.where(Parent.id.in_(sorted(filters.parent_ids)))
    if filters.parent_email:
        statement = statement.where(func.lower(Parent.email) == filters.parent_email.strip().lower())
    if filters.parent_search.strip():
        statement = statement.where(Player.id.in_(_players_named(user, filters.parent_search)))
    return statement


def _players_named(user: ActingUser, search: str) -> CompoundSelect:
    """The players whose name, or whose parent's name, holds ``search`` without regard to accents
    or case: compared with the stored folded names (``search_name``), so no row is folded, and
    PostgreSQL finds them through its trigram indexes instead of reading the whole league."""
    pattern = f"%{_escape_like(fold(search.strip()))}%"
    return select(Player.id).where(
        Player.tenant_id == user.tenant_id, Player.search_name.like(pattern, escape="\\")
    ).union(
        select(Player.id)
        .join(Parent, Parent.id == Player.parent_id)
        .where(Parent.tenant_id == user.tenant_id, Parent.search_name.like(pattern, escape="\\"))
    )


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many small acyclic objects.

    Tens of thousands of new tuples trigger repeated full collections that cost about a
    quarter of the time of a large league's balances; none of these objects form cycles.
    Only the caller that paused it resumes it, so concurrent callers cannot leave it off.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _group_by_parent(rows: Sequence[Row[Any]], *, show_email: bool) -> list[OutstandingBalance]:
    parents: dict[int, tuple[str, str | None, bool]] = {}
    items: dict[int, list[LineItem]] = {}
    make_item = LineItem._make
    for row in rows:
        parent_id = row[0]
        parent_items = items.get(parent_id)
        if parent_items is None:
            parent_items = items[parent_id] = []
            parents[parent_id] = (row[1], row[2] if show_email else None, row[3])
        parent_items.append(make_item(row[4:]))
    ordered = sorted(parents.items(), key=lambda entry: (entry[1][0].casefold(), entry[0]))
    return [
        OutstandingBalance(
            parent_id=parent_id,
            parent_name=name,
            parent_email=email,
            email_opt_out=bool(opt_out),
            items=tuple(sorted(items[parent_id], key=_ITEM_ORDER)),
        )
        for parent_id, (name, email, opt_out) in ordered
    ]


_ITEM_ORDER = attrgetter("player_name", "player_id", "product_name", "link_id")
