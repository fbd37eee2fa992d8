"""Outstanding balances: the one implementation of "who owes what".

The dashboard table, the treasurer's CSV, the email audience and the email body all call
``outstanding_balances``; so does a family's statement for what is open. It runs two SQL
statements whatever the size of the league: the balances, and the families' "Pay the balance"
links (``OutstandingBalance.family_pay_url``, shown only for exactly the total shown).

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
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, NamedTuple

from sqlalchemy import CompoundSelect, Select, and_, case, false, func, select
from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, Permission, require
from core.errors import PermissionDenied
from core.ledger.accounts import charge_settlements, family_credit, is_billed, reversed_ids
from core.ledger.allocation import OpenCharge, allocate
from core.models import DEFAULT_CURRENCY, Charge, FamilyLink, LinkStatus, Parent, PaymentLink, Player, Product, Team
from core.reporting.name_search import fold


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
    # The family's "Pay the balance" link, when its active one is for exactly ``total_cents``
    # (``core.payments.family_links``); else empty.
    family_pay_url: str = ""

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
        return self.items[0].currency if self.items else DEFAULT_CURRENCY

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
        balances = _group_by_parent(rows, show_email=user.can(Permission.VIEW_CONTACT_DETAILS))
    return _with_family_links(session, user, balances)


def _with_family_links(session: Session, user: ActingUser,
                       balances: list[OutstandingBalance]) -> list[OutstandingBalance]:
    """Each balance with its family's balance link, if that link is for exactly what it shows (one
    statement). A narrowed view (a coach's teams, a product filter) shows a part of a family's
    balance, so the link, for the whole of it, is not shown there."""
    if not balances:
        return balances
    query = select(FamilyLink.parent_id, FamilyLink.amount_cents, FamilyLink.url).where(
        FamilyLink.tenant_id == user.tenant_id, FamilyLink.status == LinkStatus.ACTIVE)
    if len(balances) <= 100:
        query = query.where(FamilyLink.parent_id.in_([balance.parent_id for balance in balances]))
    family = {parent_id: (amount, url) for parent_id, amount, url in session.execute(query)}
    if not family:
        return balances
    shown = []
    for balance in balances:
        amount, url = family.get(balance.parent_id, (None, None))
        if url and amount == balance.total_cents:
            balance = replace(balance, family_pay_url=url)
        shown.append(balance)
    return shown


def summarise(balances: Sequence[OutstandingBalance]) -> BalanceSummary:
    """The headline figures of a list of balances (no extra query)."""
    items = [item for balance in balances for item in balance.items]
    return BalanceSummary(
        total_cents=sum(balance.total_cents for balance in balances),
        families=sum(1 for balance in balances if balance.items),
        players=len({item.player_id for item in items if item.player_id is not None}),
        line_items=sum(1 for item in items if not item.processing),
        currency=items[0].currency if items else DEFAULT_CURRENCY,
        processing_cents=sum(balance.processing_cents for balance in balances),
        processing_items=sum(1 for item in items if item.processing),
    )


def _balances_statement(user: ActingUser, filters: BalanceFilter) -> Select[*tuple[Any, ...]]:
    tenant_id = user.tenant_id
    settled = charge_settlements(tenant_id).cte("settled")  # read once, joined twice
    credit = family_credit(tenant_id, settlements=settled).subquery("credit")
    processing = func.coalesce(settled.c.processing_cents, 0)
    unsettled = Charge.amount_cents - func.coalesce(settled.c.settled_cents, 0)  # open and processing
    open_cents = unsettled - processing
    statement = (
        select(
            Parent.id,
            Parent.name,
            Parent.email,
            Parent.email_opt_out,
            # From here on, a LineItem's fields in order (what the common row is: see ``_items``).
            PaymentLink.id,
            Charge.player_id,
            func.coalesce(func.trim(Player.first_name + " " + Player.last_name), ""),
            Team.name,
            Charge.product_id,
            func.coalesce(Product.name, Charge.description),
            open_cents,
            Charge.currency,
            # The charge's link pays exactly what is left of it (not a partly paid charge's).
            case((PaymentLink.amount_cents == unsettled, PaymentLink.url), else_=""),
            false(),
            Charge.id,
            # Only wanted where credit is taken off (rare): a date costs to send and read.
            case((credit.c.credit_cents.is_not(None), Charge.due_on)),
            # Then what makes a row uncommon: a payment processing on it, the family's credit.
            processing,
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
            unsettled > 0,
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


def _group_by_parent(rows: Sequence[Sequence[Any]], *, show_email: bool) -> list[OutstandingBalance]:
    parents: dict[int, tuple[str, str | None, bool]] = {}
    items: dict[int, list[LineItem]] = {}
    unusual: dict[int, list[Sequence[Any]]] = {}  # families with a payment processing or credit
    make_item = LineItem._make
    for row in rows:
        parent_id = row[0]
        parent_items = items.get(parent_id)
        if parent_items is None:
            parent_items = items[parent_id] = []
            parents[parent_id] = (row[1], row[2] if show_email else None, row[3])
        if row[16] or row[17]:
            unusual.setdefault(parent_id, []).append(row)
        else:
            parent_items.append(make_item(row[4:16]))
    credit_left: dict[int, int] = {}
    for parent_id, family_rows in unusual.items():
        items[parent_id].extend(_unusual_items(family_rows, credit_left, parent_id))
    ordered = sorted(parents.items(), key=lambda entry: (entry[1][0].casefold(), entry[0]))
    return [
        OutstandingBalance(
            parent_id=parent_id,
            parent_name=name,
            parent_email=email,
            email_opt_out=bool(opt_out),
            items=tuple(sorted(items[parent_id], key=_item_order)) if len(items[parent_id]) > 1
            else tuple(items[parent_id]),
            credit_cents=credit_left.get(parent_id, 0),
        )
        for parent_id, (name, email, opt_out) in ordered
        if items[parent_id]
    ]


def _unusual_items(rows: list[Sequence[Any]], credit_left: dict[int, int], parent_id: int) -> list[LineItem]:
    """The items of a family with a payment processing or credit (rare; every row of a family
    with credit comes here, as credit is the family's).

    A charge is split into what is owed and what is processing; credit is taken off what is
    owed, oldest due first (see the module docstring), and an item it reduces loses its link.
    """
    credit = rows[0][17]
    taken: dict[int, int] = {}
    if credit > 0:
        split = allocate(credit, [OpenCharge(row[14], row[15] or date.min, row[10]) for row in rows if row[10] > 0])
        taken = dict(split.parts)
        credit_left[parent_id] = split.remainder_cents
    made = []
    for row in rows:
        base = LineItem._make(row[4:16])
        charge_id, open_cents, processing = row[14], row[10], row[16]
        split_up = open_cents > 0 and processing > 0
        left = open_cents - taken.get(charge_id, 0)
        if left > 0:
            made.append(base._replace(amount_cents=left,
                                      pay_url="" if split_up or charge_id in taken else base.pay_url))
        if processing > 0:
            made.append(base._replace(amount_cents=processing, processing=True,
                                      pay_url="" if split_up else base.pay_url))
    return made


def _item_order(item: LineItem) -> tuple[str, int, str, int, bool]:
    return (item.player_name, item.player_id or 0, item.product_name, item.charge_id or 0, item.processing)
