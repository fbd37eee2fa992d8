"""Outstanding balances: the one implementation of "who owes what".

The dashboard table, the treasurer's CSV, the email audience and the email body all read
it; so does a family's statement for what is open. Each family's "Pay the balance" link comes
with it (``family_pay_url``), shown only where its link is for exactly the total shown.

The figures come from the ledger, as its positions are stored (``core.ledger.positions``, kept
by every write from ``core.ledger.accounts``' definition): a family owes the open amounts of
its billed charges less its unapplied credit. Each open charge is an item, with its Pay Now
link when the charge's active link is for exactly what is open (a partly paid charge has
none until the backfill mints one at the new amount). What a payment still processing
covers is an item of its own, marked processing: shown, not owed. The ledger carries credit
to open charges as it is written; should both ever stand side by side (a withdrawn player
signed again), the credit is taken off the family's items, oldest due first, so no figure
anywhere counts it twice and a family whose credit covers everything owes nothing.

One SQL building block says all of that: ``_owed_charges``, one row per open charge with what
of it is owed and what is processing (credit taken off in SQL, by a window over the family's
charges). Everything else is a view of it, so every figure agrees to the cent:

* ``outstanding_balances`` — the full list, items and all (the email audience and body, the
  statement, the sync summary); ``iter_outstanding_balances`` — the same, streamed from the
  database family by family (the CSV files);
* ``balance_summary`` — the headline figures, one aggregate statement;
* ``family_page`` — a page of the family list, sorted, cut and added up (the headline) in the
  database; ``family_ranking`` — every listed family's id in order, and the headline;
* ``owed_by`` — what is owed per team and per item (the charts).

Every form lists families in the same order (``FamilyOrder``; by default by name as written)
and a family's items in the same order. Each is one statement (``read_balances``; on PostgreSQL a
whole league's is planned without nested loops, the planner's setting switched around it).
"""

from __future__ import annotations

import enum
import gc
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from itertools import chain, groupby
from operator import itemgetter
from typing import Any, Literal, NamedTuple

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    CompoundSelect,
    Connection,
    CursorResult,
    Date,
    Select,
    String,
    and_,
    case,
    cast,
    false,
    func,
    literal,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement, GenericFunction

from core.access.permissions import ActingUser, Permission, require
from core.errors import PermissionDenied
from core.ledger.accounts import is_billed
from core.ledger.positions import bring_up_to_date
from core.models import (
    DEFAULT_CURRENCY,
    ChargePositionRow,
    FamilyCreditRow,
    FamilyLink,
    LinkStatus,
    Parent,
    PaymentLink,
    Player,
    Product,
    Team,
)
from core.query_plans import FEW_FAMILIES, without_nested_loops
from core.reporting.name_search import fold

# Rows fetched at a time when the balances are streamed (the CSV): memory stays this size.
STREAM_ROWS = 2000

# What a statement's rows are for (``_charge_rows``): the items, the charts' groups, or the figures alone.
_Shown = Literal["items", "groups", "figures"]


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
class BalanceView:
    """What of the balances a viewer sees: their league, their teams (None: every team), and
    whether email addresses. Two viewers with the same view see the same balances under the
    same filters, whoever they are (an admin and a treasurer, two coaches of the same team): what
    the dashboard keeps of them once per server is shared by view, not by person."""

    tenant_id: int
    team_ids: frozenset[int] | None
    contact_details: bool


def balance_view(user: ActingUser) -> BalanceView:
    """The view of the balances ``user`` has (see ``BalanceView``)."""
    return BalanceView(
        tenant_id=user.tenant_id, team_ids=None if user.sees_all_teams else frozenset(user.team_ids),
        contact_details=user.can(Permission.VIEW_CONTACT_DETAILS),
    )


@dataclass(frozen=True)
class BalanceSummary:
    total_cents: int  # still to pay; payments processing are not in it
    families: int
    players: int
    line_items: int  # items still to pay; those with a payment processing are not in it
    currency: str
    processing_cents: int = 0
    processing_items: int = 0


class FamilyOrder(str, enum.Enum):
    """How the families are listed. Ties go by name, then by the family's id; names compare
    case-free, character by character (the same on both databases)."""

    NAME = "name"  # the parent's name as written: the CSV files' and the emails' order
    LAST_NAME = "last_name"  # the last word of the parent's name, then the whole name
    AMOUNT = "amount"  # what they owe, most first
    ITEMS = "items"  # how many items they have, most first


@dataclass(frozen=True)
class FamilyBalance:
    """One family's line in the family list: its figures without its items."""

    parent_id: int
    parent_name: str
    parent_email: str | None
    email_opt_out: bool
    total_cents: int
    processing_cents: int
    item_count: int  # owed and processing
    currency: str
    credit_cents: int = 0
    family_pay_url: str = ""  # as ``OutstandingBalance.family_pay_url``


@dataclass(frozen=True)
class FamilyPage:
    families: tuple[FamilyBalance, ...]
    summary: BalanceSummary  # of every page, under the same filters (``summary.families`` of them)
    offset: int


@dataclass(frozen=True)
class FamilyRanking:
    """Every family listed under some filters, in order (their ids: a page of the list is
    ``family_page`` of a slice of them), and the headline figures of them all."""

    parent_ids: tuple[int, ...]
    summary: BalanceSummary


@dataclass(frozen=True)
class OwedBreakdown:
    """What is still to pay per team and per item, largest first (a player without a team, and
    a family's own charge, are under the team name "")."""

    by_team: tuple[tuple[str, int], ...]
    by_item: tuple[tuple[str, int], ...]


def outstanding_balances(
    session: Session, user: ActingUser, filters: BalanceFilter = BalanceFilter(),
    order: FamilyOrder = FamilyOrder.NAME,
) -> list[OutstandingBalance]:
    """Per parent, the open charges of signed or prospect players (and the family's own
    charges) and the total, in ``order`` (by name unless told). One SQL statement.

    Charges settled, reversed or of withdrawn players are not owed. A coach sees only their own
    teams' players and no email addresses; everyone sees only their own league.
    """
    statement = _ordered_charges(user, filters, order)
    rows = _all_rows(session, read_balances(session, statement, filters))
    with _cyclic_gc_paused():
        return list(_balances_from(rows, show_email=user.can(Permission.VIEW_CONTACT_DETAILS)))


def iter_outstanding_balances(
    session: Session, user: ActingUser, filters: BalanceFilter = BalanceFilter(),
    order: FamilyOrder = FamilyOrder.NAME,
) -> Iterator[OutstandingBalance]:
    """``outstanding_balances``, streamed: the database hands the rows over ``STREAM_ROWS`` at a
    time (a server-side cursor on PostgreSQL), and one family at a time is built, so memory
    does not grow with the league. Consume it inside the session's transaction."""
    statement = _ordered_charges(user, filters, order).execution_options(yield_per=STREAM_ROWS)
    return _streamed(session, statement, filters, show_email=user.can(Permission.VIEW_CONTACT_DETAILS))


def summarise(balances: Sequence[OutstandingBalance]) -> BalanceSummary:
    """The headline figures of a list of balances already in hand (no query); from the
    database, ``balance_summary`` gives the same figures without building the list."""
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


def balance_summary(session: Session, user: ActingUser, filters: BalanceFilter = BalanceFilter()) -> BalanceSummary:
    """The headline figures (total, families, players, open items, processing): one aggregate
    statement, equal to ``summarise(outstanding_balances(...))``."""
    f = _figures(user, filters).subquery("figures").c
    row = read_balances(session, select(*_headline_of(f)), filters).one()
    return _summary_of(row)


def _headline_of(f: Any) -> tuple[FunctionElement[Any], ...]:
    """The headline figures of the families ``f`` (``_figures``' columns), as ``_summary_of``
    reads them: added up over all of them."""
    return (func.sum(f.total_cents), func.count(), func.sum(f.players), func.sum(f.owed_items), func.min(f.currency),
            func.sum(f.processing_cents), func.sum(f.processing_items))


def family_page(
    session: Session, user: ActingUser, filters: BalanceFilter = BalanceFilter(), *,
    order: FamilyOrder = FamilyOrder.NAME, offset: int = 0, limit: int = 25,
) -> FamilyPage:
    """``limit`` families from ``offset`` in ``order``, with their figures (not their items: see
    ``outstanding_balances`` with the page's ``parent_ids``) and the headline figures of all of
    them: one statement, sorted, cut and added up in the database."""
    families = _families(user, filters).subquery("families")
    f = families.c
    everyone = [figure.over() for figure in _headline_of(f)]
    offset = max(offset, 0)
    rows = _all_rows(session, read_balances(
        session,
        select(f.parent_id, f.parent_name, f.parent_email, f.email_opt_out, f.total_cents, f.processing_cents,
               f.item_count, f.currency, f.credit_cents, f.family_link_cents, f.family_link_url, *everyone)
        .order_by(*_family_order(order, f.parent_name, f.parent_id, total=f.total_cents, items=f.item_count))
        .offset(offset)
        .limit(max(limit, 1)),
        filters,
    ))
    show_email = user.can(Permission.VIEW_CONTACT_DETAILS)
    page = tuple(
        FamilyBalance(
            parent_id=row[0], parent_name=row[1], parent_email=row[2] if show_email else None,
            email_opt_out=bool(row[3]), total_cents=int(row[4]), processing_cents=int(row[5]),
            item_count=int(row[6]), currency=row[7] or DEFAULT_CURRENCY, credit_cents=int(row[8] or 0),
            family_pay_url=_family_pay_url(row[9], row[10], int(row[4])),
        )
        for row in rows
    )
    if not rows:  # past the last page (or nobody owes): the figures alone
        return FamilyPage(page, balance_summary(session, user, filters) if offset else _NOBODY, offset)
    return FamilyPage(page, _summary_of(rows[0][11:]), offset)


def family_ranking(
    session: Session, user: ActingUser, filters: BalanceFilter = BalanceFilter(), *,
    order: FamilyOrder = FamilyOrder.NAME,
) -> FamilyRanking:
    """The ids of every family ``family_page`` lists under ``filters``, in ``order``, and their
    headline figures (``balance_summary``'s): one statement. Any page of the list is then the
    ``family_page`` of a slice of the ids (``BalanceFilter.parent_ids``), the same families with
    the same figures, without the whole league's being added up again for each page."""
    families = _families(user, filters).subquery("families")
    f = families.c
    everyone = [figure.over() for figure in _headline_of(f)]
    in_order = _family_order(order, f.parent_name, f.parent_id, total=f.total_cents, items=f.item_count)
    first = func.row_number().over(order_by=in_order) == 1
    # The figures on the first row only: the rest are NULL, nothing to send or read.
    rows = read_balances(
        session, select(f.parent_id, *(case((first, figure)) for figure in everyone)).order_by(*in_order), filters
    ).all()
    if not rows:
        return FamilyRanking((), _NOBODY)
    return FamilyRanking(tuple(row[0] for row in rows), _summary_of(rows[0][1:]))


_NOBODY = BalanceSummary(total_cents=0, families=0, players=0, line_items=0, currency=DEFAULT_CURRENCY)


def _summary_of(row: Sequence[Any]) -> BalanceSummary:
    return BalanceSummary(
        total_cents=int(row[0] or 0), families=int(row[1] or 0), players=int(row[2] or 0),
        line_items=int(row[3] or 0), currency=row[4] or DEFAULT_CURRENCY, processing_cents=int(row[5] or 0),
        processing_items=int(row[6] or 0),
    )


def owed_by(session: Session, user: ActingUser, filters: BalanceFilter = BalanceFilter()) -> OwedBreakdown:
    """What is still to pay per team and per item (the charts): one statement, grouped twice."""
    charges = _owed_charges(user, filters, "groups").cte("owed")
    owing = charges.c.owed_cents > 0
    team = func.coalesce(charges.c.team_name, "")
    grouped = union_all(
        select(literal("team").label("grouping"), team.label("label"), func.sum(charges.c.owed_cents).label("cents"))
        .where(owing).group_by(team),
        select(literal("item"), charges.c.product_name, func.sum(charges.c.owed_cents))
        .where(owing).group_by(charges.c.product_name),
    ).subquery("grouped")
    rows: Sequence[Any] = read_balances(
        session, select(grouped).order_by(grouped.c.grouping, grouped.c.cents.desc(), grouped.c.label), filters
    ).all()
    return OwedBreakdown(
        by_team=tuple((str(label), int(cents)) for grouping, label, cents in rows if grouping == "team"),
        by_item=tuple((str(label), int(cents)) for grouping, label, cents in rows if grouping == "item"),
    )


# -- the one building block ---------------------------------------------------------------------


def _credit_charge_rows(user: ActingUser, filters: BalanceFilter, shown: _Shown) -> Select[*tuple[Any, ...]]:
    """The open (or processing) charges of the families with credit (rare), with where each
    stands among the family's others (the credit is taken oldest due first): only these rows
    are sorted for the window."""
    rows = _charge_rows(user, filters, with_credit=True, shown=shown).subquery("credit_charge_rows")
    w = rows.c
    open_for_credit = case((w.open_cents > 0, w.open_cents), else_=0)
    return select(
        rows,
        cast(func.sum(open_for_credit).over(partition_by=w.parent_id, order_by=(w.due_on, w.charge_id),
                                            rows=(None, -1)), BigInteger).label("open_before"),
        cast(func.sum(open_for_credit).over(partition_by=w.parent_id), BigInteger).label("family_open"),
    )


def _charge_rows(user: ActingUser, filters: BalanceFilter, *, with_credit: bool,
                 shown: _Shown = "items") -> Select[*tuple[Any, ...]]:
    """The open (or processing) charges the viewer may see under ``filters``, of the families
    with credit or of those without (the database then estimates the big part as big): what is
    open, what is processing, and the family's credit (NULL for none).

    ``shown`` says what the rows are for, so the database joins no table whose columns go
    unused: ``"items"`` (every column), ``"groups"`` (the charts: no links, nothing of the
    family) or ``"figures"`` (no names, no links, nothing of the family: the family list and
    the headline, which add the family's own columns once per family, ``_families``). The
    figures are the same."""
    require(user, Permission.VIEW_BALANCES)
    if filters.parent_email and not user.can(Permission.VIEW_CONTACT_DETAILS):
        raise PermissionDenied(f"A {user.role.value} may not search by email address.")
    tenant_id = user.tenant_id
    # The ledger's positions as stored (``core.ledger.positions``): a row per charge with
    # something unsettled (with the charge's own columns), and the families with credit.
    position = ChargePositionRow
    credit = FamilyCreditRow
    processing = position.processing_cents
    unsettled = position.open_cents + position.processing_cents  # open and processing
    open_cents = position.open_cents
    named = shown != "figures"
    linked = shown == "items"
    families = shown == "items"  # the charts' groups and the figures need nothing of the family
    no_text = cast(null(), String)
    statement: Select[*tuple[Any, ...]] = (
        select(
            position.parent_id.label("parent_id"),
            (Parent.name if families else no_text).label("parent_name"),
            (Parent.email if families else no_text).label("parent_email"),
            (Parent.email_opt_out if families else cast(null(), Boolean)).label("email_opt_out"),
            (PaymentLink.id if linked else cast(null(), BigInteger)).label("link_id"),
            position.player_id.label("player_id"),
            (func.coalesce(func.trim(Player.first_name + " " + Player.last_name), "") if named else no_text)
            .label("player_name"),
            (Team.name if named else no_text).label("team_name"),
            position.product_id.label("product_id"),
            (func.coalesce(Product.name, position.description) if named else no_text).label("product_name"),
            open_cents.label("open_cents"),
            position.currency.label("currency"),
            # The charge's link pays exactly what is left of it (not a partly paid charge's).
            (case((PaymentLink.amount_cents == unsettled, PaymentLink.url), else_="") if linked else no_text)
            .label("link_url"),
            position.charge_id.label("charge_id"),
            # Only wanted where credit is taken off (rare): a date costs to send and read.
            (position.due_on if with_credit else cast(null(), Date)).label("due_on"),
            processing.label("processing_cents"),
            (credit.credit_cents if with_credit else cast(null(), BigInteger)).label("credit_cents"),
            # The family's active "Pay the balance" link (at most one) and what it was minted for.
            (FamilyLink.amount_cents if families else cast(null(), BigInteger)).label("family_link_cents"),
            (FamilyLink.url if families else no_text).label("family_link_url"),
        )
        # Each table named with the league, so a federation's database reads one league's rows.
        .select_from(position)
        .outerjoin(Player, and_(Player.id == position.player_id, Player.tenant_id == tenant_id))
        .where(position.tenant_id == tenant_id, is_billed())
    )
    if families or filters.parent_email:
        statement = statement.join(Parent, and_(Parent.id == position.parent_id, Parent.tenant_id == tenant_id))
    if families:
        statement = statement.outerjoin(
            FamilyLink, and_(FamilyLink.parent_id == position.parent_id, FamilyLink.tenant_id == tenant_id,
                             FamilyLink.status == LinkStatus.ACTIVE))
    if named:
        statement = (statement.outerjoin(Team, Team.id == Player.team_id)
                     .outerjoin(Product, Product.id == position.product_id))
    if linked:
        statement = statement.outerjoin(
            PaymentLink, and_(PaymentLink.charge_id == position.charge_id, PaymentLink.tenant_id == tenant_id,
                              PaymentLink.status == LinkStatus.ACTIVE))
    credit_of_family = and_(credit.parent_id == position.parent_id, credit.tenant_id == tenant_id)
    if with_credit:
        statement = statement.join(credit, credit_of_family)  # the window adds where each charge stands
    else:
        # NOT IN: one hashed look-up per row (an anti-join may probe the credits once per row).
        with_none = position.parent_id.not_in(select(credit.parent_id).where(credit.tenant_id == tenant_id))
        statement = statement.where(with_none)
    if not user.sees_all_teams:
        statement = statement.where(Player.team_id.in_(sorted(user.team_ids) or [-1]))
    if filters.team_ids:
        statement = statement.where(Player.team_id.in_(sorted(filters.team_ids)))
    if filters.product_ids:
        statement = statement.where(position.product_id.in_(sorted(filters.product_ids)))
    if filters.parent_ids:
        statement = statement.where(position.parent_id.in_(sorted(filters.parent_ids)))
    if filters.parent_email:
        statement = statement.where(func.lower(Parent.email) == filters.parent_email.strip().lower())
    if filters.parent_search.strip():
        statement = statement.where(Player.id.in_(_players_named(user, filters.parent_search)))
    return statement


def _owed_charges(user: ActingUser, filters: BalanceFilter, shown: _Shown = "items") -> CompoundSelect:
    """One row per open (or processing) charge the viewer may see under ``filters``, with the
    credit taken off: per charge ``owed_cents`` (still to pay, its item; 0 for none) with
    ``owed_url``, and ``processing_cents`` (being paid, an item of its own) with
    ``processing_url``; ``credit_left`` is the family's credit no charge took.

    The rows come in two parts: the families without credit (nearly all, and nothing to take
    off) and those with it, whose charges' running total says what the credit takes. A charge
    split into what is owed and what is processing has no link on either part; a charge credit
    reduced loses its link on what is left."""
    plain = _charge_rows(user, filters, with_credit=False, shown=shown).subquery("charge_rows")
    credited = _credit_charge_rows(user, filters, shown).subquery("open_charges").c
    credit = func.coalesce(credited.credit_cents, 0)
    credit_free = credit - func.coalesce(credited.open_before, 0)  # what credit is left for this charge
    taken = case(
        (or_(credit <= 0, credited.open_cents <= 0, credit_free <= 0), 0),
        (credit_free >= credited.open_cents, credited.open_cents),
        else_=credit_free,
    )
    family_open = func.coalesce(credited.family_open, 0)
    credit_left = case((credit > family_open, credit - family_open), else_=0)
    return union_all(_owed_of(plain.c), _owed_of(credited, taken=taken, credit_left=credit_left))


def _owed_of(c: Any, *, taken: ColumnElement[int] | None = None,
             credit_left: ColumnElement[int] | None = None) -> Select[*tuple[Any, ...]]:
    """``_owed_charges``' columns of charge rows ``c``, of which credit takes ``taken`` (None:
    nothing, a family without credit) and leaves ``credit_left``."""
    split_up = and_(c.open_cents > 0, c.processing_cents > 0)
    owed = case((c.open_cents > 0, c.open_cents - taken if taken is not None else c.open_cents), else_=0)
    return select(
        c.parent_id, c.parent_name, c.parent_email, c.email_opt_out,
        # From here on, a LineItem's fields in order (see ``_balances_from``).
        c.link_id, c.player_id, c.player_name, c.team_name, c.product_id, c.product_name,
        owed.label("owed_cents"), c.currency,
        case((or_(split_up, taken > 0) if taken is not None else split_up, ""), else_=c.link_url).label("owed_url"),
        false().label("processing"), c.charge_id, c.due_on,
        c.processing_cents,
        # Read only with a processing part: NULL (nothing to send) on the many rows without.
        case((c.processing_cents <= 0, null()), (split_up, ""), else_=c.link_url).label("processing_url"),
        (credit_left if credit_left is not None else cast(null(), BigInteger)).label("credit_left"),
        c.family_link_cents, c.family_link_url,
    )


def _families(user: ActingUser, filters: BalanceFilter) -> Select[*tuple[Any, ...]]:
    """Per family listed (one with an item): its figures, grouped in the database by the
    family's id, then its name, email address and "Pay the balance" link, once per family."""
    figures = _figures(user, filters).subquery("figures")
    g = figures.c
    tenant_id = user.tenant_id
    return (
        select(g.parent_id, Parent.name.label("parent_name"), Parent.email.label("parent_email"),
               Parent.email_opt_out.label("email_opt_out"), *(g[name] for name in _FIGURES),
               FamilyLink.amount_cents.label("family_link_cents"), FamilyLink.url.label("family_link_url"))
        .join(Parent, and_(Parent.id == g.parent_id, Parent.tenant_id == tenant_id))
        .outerjoin(FamilyLink, and_(FamilyLink.parent_id == g.parent_id, FamilyLink.tenant_id == tenant_id,
                                    FamilyLink.status == LinkStatus.ACTIVE))  # at most one (a unique index)
    )


_FIGURES = ("total_cents", "processing_cents", "item_count", "owed_items", "processing_items", "players", "currency",
            "credit_cents")


def _figures(user: ActingUser, filters: BalanceFilter) -> Select[*tuple[Any, ...]]:
    """Per family listed: its figures alone (``_figures_of``), nothing of the family joined."""
    return _figures_of(_owed_charges(user, filters, "figures").subquery("owed"))


def _figures_of(charges: Any) -> Select[*tuple[Any, ...]]:
    """Per family of the charge rows ``charges`` with an item: its figures (``_FIGURES``), grouped
    by the family's id."""
    c = charges.c
    owed_item = case((c.owed_cents > 0, 1), else_=0)
    processing_item = case((c.processing_cents > 0, 1), else_=0)
    items = func.sum(owed_item + processing_item)
    return (
        select(
            c.parent_id,
            func.sum(c.owed_cents).label("total_cents"),
            func.sum(c.processing_cents).label("processing_cents"),
            items.label("item_count"),
            func.sum(owed_item).label("owed_items"),
            func.sum(processing_item).label("processing_items"),
            func.count(func.distinct(case((or_(c.owed_cents > 0, c.processing_cents > 0), c.player_id))))
            .label("players"),
            func.min(case((or_(c.owed_cents > 0, c.processing_cents > 0), c.currency))).label("currency"),
            func.max(c.credit_left).label("credit_cents"),
        )
        .group_by(c.parent_id)
        .having(items > 0)
    )


def outstanding_rows(
    user: ActingUser, filters: BalanceFilter, columns: Callable[[Any], Sequence[ColumnElement[Any]]],
    order: FamilyOrder = FamilyOrder.NAME,
) -> Select[*tuple[Any, ...]]:
    """The rows ``outstanding_balances`` is built from (one per open charge the viewer may see),
    family after family in ``order`` and each family's in item order, as the columns
    ``columns`` makes of them: for a view the database renders itself (the CSV). ``columns`` gets
    the rows' columns: ``parent_id``, ``parent_name``, ``parent_email``, ``player_id``,
    ``player_name``, ``team_name``, ``product_name``, ``owed_cents`` (the item still to pay; 0:
    none) with ``owed_url``, ``processing_cents`` (the item being paid; 0: none) with
    ``processing_url``, ``currency``, ``family_link_cents`` and ``family_link_url``. The
    viewer's permissions apply as in ``outstanding_balances``; whether they may see email
    addresses is for the caller."""
    return _ordered_charges(user, filters, order, columns)


def _ordered_charges(user: ActingUser, filters: BalanceFilter, order: FamilyOrder,
                     columns: Callable[[Any], Sequence[ColumnElement[Any]]] | None = None) -> Select[*tuple[Any, ...]]:
    """``_owed_charges`` family after family in ``order`` (items are put in order per family)."""
    if order in (FamilyOrder.NAME, FamilyOrder.LAST_NAME):
        rows = _owed_charges(user, filters).subquery("owed")
        return select(*(columns(rows.c) if columns else rows.c)).order_by(
            *_family_order(order, rows.c.parent_name, rows.c.parent_id), *_item_order_in_sql(rows.c))
    # By a family's figures: each row joined to its family's, grouped from the same rows.
    charges = _owed_charges(user, filters).cte("owed")
    families = _figures_of(charges).subquery("families")
    return (
        select(*(columns(charges.c) if columns else charges.c))
        .join(families, families.c.parent_id == charges.c.parent_id)
        .order_by(*_family_order(order, charges.c.parent_name, charges.c.parent_id,
                                 total=families.c.total_cents, items=families.c.item_count),
                  *_item_order_in_sql(charges.c))
    )


def _item_order_in_sql(c: Any) -> list[ColumnElement[Any]]:
    """A family's items in order, by the database: by player (name, then id), product, charge;
    a row's owed part comes before its processing part (as ``_items`` yields them). Names
    compare character by character, as Python's ``sorted`` would."""
    return [_bytewise(c.player_name), func.coalesce(c.player_id, 0), _bytewise(c.product_name), c.charge_id]


def _family_order(order: FamilyOrder, name: Any, parent_id: Any, *, total: Any = None,
                  items: Any = None) -> list[ColumnElement[Any]]:
    by_name = [_case_free(name), parent_id]
    if order is FamilyOrder.LAST_NAME:
        return [_case_free(_last_word(name)), *by_name]
    if order is FamilyOrder.AMOUNT:
        return [total.desc(), *by_name]
    if order is FamilyOrder.ITEMS:
        return [items.desc(), *by_name]
    return by_name


class _case_free(GenericFunction[str]):
    """``lower(text)`` compared character by character: PostgreSQL's collation would otherwise
    skip spaces and punctuation ("O'Neil" among the "On…"), unlike SQLite and Python."""

    name = "lower"
    type = String()
    inherit_cache = True


@compiles(_case_free, "postgresql")
def _case_free_postgresql(element: _case_free, compiler: SQLCompiler, **kw: Any) -> str:
    return f'lower({compiler.process(element.clauses, **kw)}) COLLATE "C"'


class _bytewise(GenericFunction[str]):
    """Text compared character by character, as Python compares strings: PostgreSQL's "C"
    collation; SQLite's own."""

    name = "bytewise"
    type = String()
    inherit_cache = True


@compiles(_bytewise)
def _bytewise_default(element: _bytewise, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(_bytewise, "postgresql")
def _bytewise_postgresql(element: _bytewise, compiler: SQLCompiler, **kw: Any) -> str:
    return f'{compiler.process(element.clauses, **kw)} COLLATE "C"'


def _last_word(name: Any) -> ColumnElement[str]:
    """The last word of a name ("Ngozi Okafor" → "Okafor"), in SQL both databases speak: strip
    the trailing run of non-space characters, and take what follows."""
    trimmed = func.trim(name)
    return func.substr(trimmed, func.length(func.rtrim(trimmed, func.replace(trimmed, " ", ""))) + 1)


def _reading_connection(session: Session) -> Connection:
    """The session's connection, once the positions of what it wrote are stored (Core
    execution: plain rows, without the ORM's per-row bookkeeping)."""
    bring_up_to_date(session)
    return session.connection()


def read_balances(session: Session, statement: Executable, filters: BalanceFilter) -> CursorResult[Any]:
    """``statement`` (a view of ``_owed_charges`` under ``filters``) executed on the session's
    ``_reading_connection``: planned without nested loops (``core.query_plans``) unless
    ``filters`` name a few families outright (by email address, or by ``FEW_FAMILIES`` ids at most),
    so tables nothing has analyzed yet cannot make it take minutes. A name search is planned
    without them too: on such tables even a search that finds one family took the planner's
    nested loops over half a minute at 3,000 families."""
    connection = _reading_connection(session)
    few = bool(filters.parent_email.strip()) or 0 < len(filters.parent_ids) <= FEW_FAMILIES
    with without_nested_loops(connection, when=not few):
        return connection.execute(statement)


def _all_rows(session: Session, result: CursorResult[Any]) -> Sequence[Sequence[Any]]:
    """Every row of ``result``: on PostgreSQL the driver's own tuples, whose columns psycopg
    already returns as Python's types (SQLAlchemy's row objects cost a fifth of a large league's
    balances); on SQLite SQLAlchemy's rows, which turn its 0/1 and date text into bools and dates."""
    if session.get_bind().dialect.name != "postgresql":
        return result.all()
    try:
        return result.cursor.fetchall()
    finally:
        result.close()


def _streamed(session: Session, statement: Select[*tuple[Any, ...]], filters: BalanceFilter, *,
              show_email: bool) -> Iterator[OutstandingBalance]:
    rows = read_balances(session, statement, filters)
    try:
        yield from _balances_from(streamed_rows(rows), show_email=show_email)
    finally:
        rows.close()


def streamed_rows(result: CursorResult[Any]) -> Iterator[Sequence[Any]]:
    """The rows of a streamed ``result`` (``yield_per``), taken a batch at a time rather than
    one at a time (a large league's CSV file costs a tenth less CPU time)."""
    return chain.from_iterable(result.partitions())


def _balances_from(rows: Iterable[Sequence[Any]], *, show_email: bool) -> Iterator[OutstandingBalance]:
    """The families of ``_owed_charges`` rows that come family after family, each family's
    items in order (the database sorted them: ``_item_order_in_sql``), a row's owed part before
    its processing part."""
    make_item = LineItem._make
    for _, family in groupby(rows, key=itemgetter(0)):
        items: list[LineItem] = []
        owed = 0
        for row in family:
            if row[10] > 0:
                items.append(make_item(row[4:16]))
                owed += row[10]
            if row[16] > 0:
                items.append(LineItem(row[4], row[5], row[6], row[7], row[8], row[9], row[16], row[11], row[17],
                                      True, row[14], row[15]))
        if items:
            yield OutstandingBalance(
                parent_id=row[0], parent_name=row[1], parent_email=row[2] if show_email else None,
                email_opt_out=bool(row[3]), items=tuple(items), credit_cents=int(row[18] or 0),
                family_pay_url=_family_pay_url(row[19], row[20], owed),
            )


def _family_pay_url(link_cents: int | None, url: str | None, total_cents: int) -> str:
    """The family's balance link, if it is for exactly ``total_cents``: a narrowed view (a coach's
    teams, a product filter) shows a part of a family's balance, and the link is for all of it."""
    if not url or link_cents is None or int(link_cents) != total_cents:
        return ""
    return url


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
