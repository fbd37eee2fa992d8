"""Outstanding balances: the one implementation of "who owes what".

The dashboard table, the treasurer's CSV, the email audience and the email body all call
``outstanding_balances``; so does a family's statement for what is open. It runs one SQL
statement whatever the size of the league.

The figures come from the ledger (``core.ledger.accounts``): a family owes the open amounts of
its billed charges less its unapplied credit. Each open charge is an item, with its Pay Now
link when the charge's active link is for exactly what is open (a partly paid charge has
none until the backfill mints one at the new amount). What a payment still processing
covers is an item of its own, marked processing: shown, not owed. The ledger carries credit
to open charges as it is written; should both ever stand side by side (a withdrawn player
signed again), the credit is taken off the family's items here, oldest due first, so no
figure anywhere counts it twice and a family whose credit covers everything owes nothing.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any, NamedTuple

from sqlalchemy import Row, Select, and_, func, or_, select
from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, Permission, require
from core.errors import PermissionDenied
from core.ledger.accounts import charge_settlements, family_credit, is_billed, reversed_ids
from core.ledger.allocation import OpenCharge, allocate
from core.models import Charge, LinkStatus, Parent, PaymentLink, Player, Product, Team
from core.reporting.name_search import fold, folded


class LineItem(NamedTuple):
    """One open charge (or the part of it a payment still processing covers): what a family
    owes for one thing, with the link that pays exactly that (``pay_url``, else empty).

    A named tuple rather than a dataclass: a large league builds tens of thousands of
    these per request, and a tuple is several times cheaper to create. ``player_id`` and
    ``product_id`` are None for a charge to the family itself (a fee); ``product_name`` is
    then the charge's description.
    """

    link_id: int | None
    player_id: int | None
    player_name: str
    team_name: str | None
    product_id: int | None
    product_name: str
    amount_cents: int
    currency: str
    pay_url: str
    processing: bool = False
    charge_id: int | None = None
    due_on: date | None = None


@dataclass(frozen=True)
class OutstandingBalance:
    """Everything one parent owes. ``parent_email`` is None when the viewer may not see it."""

    parent_id: int
    parent_name: str
    parent_email: str | None
    email_opt_out: bool
    items: tuple[LineItem, ...]
    # Credit the items did not use up (only a family with payments still processing is listed
    # with it: a family whose credit covers everything owes nothing and is not listed).
    credit_cents: int = 0

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
    """Per parent, the open charges of signed or prospect players (and the family's own
    charges) and the total, by parent name.

    Charges settled, reversed or of withdrawn players are not owed. A coach sees only their own
    teams' players and no email addresses; everyone sees only their own league.
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
        players=len({item.player_id for item in items if item.player_id is not None}),
        line_items=sum(1 for item in items if not item.processing),
        currency=items[0].currency if items else "usd",
        processing_cents=sum(balance.processing_cents for balance in balances),
        processing_items=sum(1 for item in items if item.processing),
    )


def _balances_statement(user: ActingUser, filters: BalanceFilter) -> Select:  # type: ignore[type-arg]
    tenant_id = user.tenant_id
    settled = charge_settlements(tenant_id).subquery("settled")
    credit = family_credit(tenant_id).subquery("credit")
    processing = func.coalesce(settled.c.processing_cents, 0)
    open_cents = Charge.amount_cents - func.coalesce(settled.c.settled_cents, 0) - processing
    statement = (
        select(
            Parent.id,
            Parent.name,
            Parent.email,
            Parent.email_opt_out,
            # From here on, what ``_items`` reads (see ``_ROW``).
            PaymentLink.id,
            Charge.player_id,
            func.trim(Player.first_name + " " + Player.last_name),
            Team.name,
            Charge.product_id,
            func.coalesce(Product.name, Charge.description),
            open_cents,
            processing,
            Charge.currency,
            PaymentLink.url,
            PaymentLink.amount_cents,
            Charge.id,
            Charge.due_on,
            func.coalesce(credit.c.credit_cents, 0),
        )
        .select_from(Charge)
        .join(Parent, Parent.id == Charge.parent_id)
        .outerjoin(Player, Player.id == Charge.player_id)
        .outerjoin(Team, Team.id == Player.team_id)
        .outerjoin(Product, Product.id == Charge.product_id)
        .outerjoin(settled, settled.c.charge_id == Charge.id)
        .outerjoin(credit, credit.c.parent_id == Charge.parent_id)
        .outerjoin(PaymentLink, and_(PaymentLink.charge_id == Charge.id, PaymentLink.status == LinkStatus.ACTIVE))
        .where(
            Charge.tenant_id == tenant_id,
            Parent.tenant_id == tenant_id,
            Charge.id.not_in(reversed_ids(tenant_id).scalar_subquery()),
            is_billed(),
            or_(open_cents > 0, processing > 0),
        )
    )  # ordered in Python: sorting in SQL made the database spill large leagues to disk
    if not user.sees_all_teams:
        statement = statement.where(Player.team_id.in_(sorted(user.team_ids) or [-1]))
    if filters.team_ids:
        statement = statement.where(Player.team_id.in_(sorted(filters.team_ids)))
    if filters.product_ids:
        statement = statement.where(Charge.product_id.in_(sorted(filters.product_ids)))
    if filters.parent_ids:
        statement = statement.where(Parent.id.in_(sorted(filters.parent_ids)))
    if filters.parent_email:
        statement = statement.where(func.lower(Parent.email) == filters.parent_email.strip().lower())
    if filters.parent_search.strip():
        pattern = f"%{_escape_like(fold(filters.parent_search.strip()))}%"
        statement = statement.where(
            or_(
                folded(Parent.name).like(pattern, escape="\\"),
                folded(Player.first_name + " " + Player.last_name).like(pattern, escape="\\"),
            )
        )
    return statement


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


class _Row(NamedTuple):
    """The columns of one balances row after the parent's four."""

    link_id: int | None
    player_id: int | None
    player_name: str | None
    team_name: str | None
    product_id: int | None
    product_name: str
    open_cents: int
    processing_cents: int
    currency: str
    link_url: str | None
    link_cents: int | None
    charge_id: int
    due_on: date
    credit_cents: int


def _group_by_parent(rows: Sequence[Row[Any]], *, show_email: bool) -> list[OutstandingBalance]:
    parents: dict[int, tuple[str, str | None, bool]] = {}
    charges: dict[int, list[_Row]] = {}
    make_row = _Row._make
    for row in rows:
        parent_id = row[0]
        parent_charges = charges.get(parent_id)
        if parent_charges is None:
            parent_charges = charges[parent_id] = []
            parents[parent_id] = (row[1], row[2] if show_email else None, row[3])
        parent_charges.append(make_row(row[4:]))
    ordered = sorted(parents.items(), key=lambda entry: (entry[1][0].casefold(), entry[0]))
    balances = []
    for parent_id, (name, email, opt_out) in ordered:
        items, credit_left = _items(charges[parent_id])
        if items:
            balances.append(OutstandingBalance(
                parent_id=parent_id, parent_name=name, parent_email=email, email_opt_out=bool(opt_out),
                items=tuple(sorted(items, key=_item_order)), credit_cents=credit_left,
            ))
    return balances


def _items(rows: list[_Row]) -> tuple[list[LineItem], int]:
    """A family's items: each charge's open part (after any credit) and its processing part."""
    credit = rows[0].credit_cents
    taken: dict[int, int] = {}
    if credit > 0:  # rare: see the module docstring
        split = allocate(credit, [OpenCharge(r.charge_id, r.due_on, r.open_cents) for r in rows if r.open_cents > 0])
        taken = dict(split.parts)
        credit = split.remainder_cents
    items = []
    for row in rows:
        owed = row.open_cents - taken.get(row.charge_id, 0)
        whole = owed > 0 and row.processing_cents == 0 or owed <= 0 and row.processing_cents > 0
        player_name = row.player_name or ""
        if owed > 0:
            url = row.link_url if whole and row.link_cents == owed and row.link_url else ""
            items.append(LineItem(row.link_id, row.player_id, player_name, row.team_name, row.product_id,
                                  row.product_name, owed, row.currency, url, False, row.charge_id, row.due_on))
        if row.processing_cents > 0:
            url = row.link_url if whole and row.link_cents == row.processing_cents and row.link_url else ""
            items.append(LineItem(row.link_id, row.player_id, player_name, row.team_name, row.product_id,
                                  row.product_name, row.processing_cents, row.currency, url, True, row.charge_id,
                                  row.due_on))
    return items, credit


def _item_order(item: LineItem) -> tuple[str, int, str, int, bool]:
    return (item.player_name, item.player_id or 0, item.product_name, item.charge_id or 0, item.processing)
