"""Outstanding balances: who owes what, grouped by family, with filters, charts and the CSV export.

The database does the work the screen needs: the headline figures and the order of the
families come from one statement (``family_ranking``, once for all the pages), a page's families
with their figures from another (``family_page`` of those families), their items when shown,
the charts from grouped sums (``owed_by``), and a CSV file is streamed from the database when
its button is clicked. What every session reads alike is cached once per server
(``dashboard.state.shared_figures``); session state keeps only this person's choices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st

from core.access.permissions import ActingUser, Permission, require
from core.email.opt_out import set_email_opt_out
from core.money import format_cents
from core.reporting.balances import (
    BalanceFilter,
    BalanceSummary,
    BalanceView,
    FamilyBalance,
    FamilyOrder,
    FamilyPage,
    FamilyRanking,
    LineItem,
    OwedBreakdown,
    balance_view,
    family_page,
    family_ranking,
    outstanding_balances,
    owed_by,
)
from core.reporting.directory import league_of, league_products, visible_teams
from core.reporting.export import ExportKind, balances_csv_chunks, export_file_name
from core.timezones import format_local, league_zone
from core.words import plural
from dashboard.family_link import family_page_link
from dashboard.memory import release_free_memory
from dashboard.state import engine, require_user, services, session_scope, shared_figures
from dashboard.text import plain

if TYPE_CHECKING:
    from streamlit.elements.lib.column_types import ColumnConfig

FAMILIES_PER_PAGE = 25
OPT_OUT_DONE = "balances_opt_out_done"
PAGE_KEY = "families_page"
FILTERS_OWNER = "balances_filters_owner"
FILTER_KEYS = ("filter_teams", "filter_products", "filter_search", "filter_email", "families_order", PAGE_KEY)
ORDERS = {
    FamilyOrder.LAST_NAME: "Last name",
    FamilyOrder.AMOUNT: "Amount owed",
    FamilyOrder.ITEMS: "Number of items",
}
NO_TEAM = "No team"


# The figures below are shared by everyone with the same view of the balances (``BalanceView``:
# an admin and a treasurer see the same families) in the same database, not cached per person:
# each is keyed by the view, and reads as the acting user (``_user``, left out of the key), who
# has already been checked to see the balances (``_may_view``).
_SharedView = tuple[str, BalanceView]  # the database (its address, no password), and the view


def _may_view(user: ActingUser) -> _SharedView:
    require(user, Permission.VIEW_BALANCES)
    return engine().url.render_as_string(hide_password=True), balance_view(user)


@shared_figures
def _ranking(view: _SharedView, filters: BalanceFilter, order: FamilyOrder, _user: ActingUser) -> FamilyRanking:
    """Every listed family in order, and the headline: the whole league added up once for all
    its pages (turning a page reads only that page's families)."""
    with session_scope() as session:
        return family_ranking(session, _user, filters, order=order)


@shared_figures
def _page_of(view: _SharedView, filters: BalanceFilter, order: FamilyOrder, parent_ids: tuple[int, ...],
             _user: ActingUser) -> tuple[FamilyBalance, ...]:
    narrowed = replace(filters, parent_ids=frozenset(parent_ids))  # the same filters, these families
    with session_scope() as session:
        return family_page(session, _user, narrowed, order=order, limit=max(len(parent_ids), 1)).families


def _page(user: ActingUser, filters: BalanceFilter, order: FamilyOrder, offset: int) -> FamilyPage:
    """A page of the family list: a slice of the ranking, with those families' figures."""
    view = _may_view(user)
    ranking = _ranking(view, filters, order, user)
    shown = ranking.parent_ids[offset:offset + FAMILIES_PER_PAGE]
    families = _page_of(view, filters, order, shown, user) if shown else ()
    return FamilyPage(families, ranking.summary, offset)


@shared_figures
def _items_in_view(view: _SharedView, filters: BalanceFilter, parent_ids: frozenset[int],
                   _user: ActingUser) -> dict[int, tuple[LineItem, ...]]:
    narrowed = replace(filters, parent_ids=parent_ids)  # the same filters, these families
    with session_scope() as session:
        return {balance.parent_id: balance.items for balance in outstanding_balances(session, _user, narrowed)}


def _items_of(user: ActingUser, filters: BalanceFilter, parent_ids: frozenset[int]) -> dict[int, tuple[LineItem, ...]]:
    """The items of the families shown, read only for them (same filters, so the same figures)."""
    return _items_in_view(_may_view(user), filters, parent_ids, user)


@shared_figures
def _breakdown_in_view(view: _SharedView, filters: BalanceFilter, _user: ActingUser) -> OwedBreakdown:
    with session_scope() as session:
        return owed_by(session, _user, filters)


def _breakdown(user: ActingUser, filters: BalanceFilter) -> OwedBreakdown:
    return _breakdown_in_view(_may_view(user), filters, user)


@shared_figures
def _choices(user: ActingUser) -> tuple[dict[int, str], dict[int, str]]:
    with session_scope() as session:
        teams = {team.id: team.label for team in visible_teams(session, user)}
        products = {product.id: product.label for product in league_products(session, user)}
    return teams, products


def _own_filters(user: ActingUser) -> None:
    """A search typed as one person (or role) is not carried into another's view: the filters
    belong to whoever set them, and start empty for anyone else."""
    owner = (user.identity, user.role.value, user.tenant_id, tuple(sorted(user.team_ids)))
    if st.session_state.get(FILTERS_OWNER) != owner:
        for key in FILTER_KEYS:
            st.session_state.pop(key, None)
        st.session_state[FILTERS_OWNER] = owner


def _to_first_page() -> None:
    st.session_state[PAGE_KEY] = 0


def _filters(user: ActingUser) -> BalanceFilter:
    teams, products = _choices(user)
    columns = st.columns([2, 2, 2, 2] if user.can(Permission.VIEW_CONTACT_DETAILS) else [2, 2, 2])
    team_ids = columns[0].multiselect(
        "Team", options=list(teams), format_func=teams.__getitem__, key="filter_teams", placeholder="All teams",
        on_change=_to_first_page,
    )
    product_ids = columns[1].multiselect(
        "Item", options=list(products), format_func=products.__getitem__, key="filter_products",
        placeholder="All items", on_change=_to_first_page,
    )
    search = columns[2].text_input("Family or player name", key="filter_search", placeholder="e.g. O'Brien",
                                   on_change=_to_first_page)
    email = ""
    if user.can(Permission.VIEW_CONTACT_DETAILS):
        email = columns[3].text_input("Parent email (exact)", key="filter_email", on_change=_to_first_page)
    return BalanceFilter(
        team_ids=frozenset(team_ids), product_ids=frozenset(product_ids),
        parent_search=search, parent_email=email,
    )


def _line_items_frame(rows: list[tuple[FamilyBalance | None, LineItem]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "Family": family.parent_name if family else "",
                "Player": item.player_name,
                "Team": item.team_name or "—",
                "Item": item.product_name,
                "Amount": format_cents(item.amount_cents, item.currency),
                "Status": "processing" if item.processing else "owed",
                "Pay Now": item.pay_url,
                "Pay balance": family.family_pay_url if family else "",  # the family's whole balance at once
            }
            for family, item in rows
        ],
        columns=["Family", "Player", "Team", "Item", "Amount", "Status", "Pay Now", "Pay balance"],
    )


def _table(frame: pd.DataFrame) -> None:
    """A table as tall as its rows (no scroll box of its own), with the links as links."""
    config: dict[str, ColumnConfig | None] = {
        "Pay Now": st.column_config.LinkColumn("Pay Now", display_text="Pay now ↗"),
        "Pay balance": st.column_config.LinkColumn("Pay balance", display_text="Pay balance ↗"),
    }
    st.dataframe(frame, hide_index=True, column_config=config, width="stretch", height="content")


def _headline(summary: BalanceSummary, synced_at: datetime | None, zone_name: str) -> None:
    first, second, third, fourth = st.columns(4)
    first.metric("Total outstanding", format_cents(summary.total_cents, summary.currency))
    second.metric("Families owing", f"{summary.families:,}")
    third.metric("Players", f"{summary.players:,}")
    fourth.metric("Open items", f"{summary.line_items:,}",
                  help="Items still to pay. Items whose payment is processing are not counted."
                  if summary.processing_items else None)
    synced = format_local(synced_at, zone_name, missing="never")
    processing = ""
    if summary.processing_cents:
        processing = (f" {format_cents(summary.processing_cents, summary.currency)} more is being paid "
                      "(bank payments still processing) and is not counted as outstanding.")
    st.caption(f"Last checked with Stripe for new payments: {synced}. Paid items drop out after a check.{processing}")


def _turn(step: int) -> None:
    st.session_state[PAGE_KEY] = int(st.session_state.get(PAGE_KEY, 0)) + step


def _pager(page: int, pages: int) -> None:
    """Previous / next buttons and where we are: no number to type."""
    if pages <= 1:
        return
    row = st.container(horizontal=True, vertical_alignment="center")
    row.button("Previous", key="families_previous", icon=":material/chevron_left:", disabled=page == 0,
               on_click=_turn, args=(-1,))
    row.button("Next", key="families_next", icon=":material/chevron_right:", disabled=page >= pages - 1,
               on_click=_turn, args=(1,))
    row.caption(f"Page {page + 1:,} of {pages:,}")


def _family_label(family: FamilyBalance, user: ActingUser) -> str:
    contact = ""
    if user.can(Permission.VIEW_CONTACT_DETAILS):
        contact = f" · {plain(family.parent_email)}" if family.parent_email else " · no email on file"
        contact += " · no reminder emails (opted out)" if family.email_opt_out else ""
    count = family.item_count
    return (f"**{plain(family.parent_name)}** — {format_cents(family.total_cents, family.currency)} "
            f"({plural(count, 'item')}){contact}")


def _families(page: FamilyPage, user: ActingUser, filters: BalanceFilter) -> None:
    """A row per family; a family's items are read and shown when its row is opened (opening
    one runs the page again), so a page of closed rows reads no items at all."""
    rows = [(family, st.expander(_family_label(family, user), key=_row_key(family.parent_id), on_change="rerun"))
            for family in page.families]
    opened = frozenset(family.parent_id for family, row in rows if row.open)
    items = _items_of(user, filters, opened) if opened else {}
    for family, row in rows:
        if not row.open:
            continue
        with row:
            if family.family_pay_url:
                st.link_button(f"Pay {format_cents(family.total_cents, family.currency)} (the whole balance)",
                               family.family_pay_url, icon=":material/payments:")
            _table(_line_items_frame([(None, item) for item in items.get(family.parent_id, ())])
                   .drop(columns=["Family", "Pay balance"]))
            family_page_link(family.parent_id)
            if user.can(Permission.MANAGE_EMAIL_PREFERENCES):
                _opt_out_button(user, family)


def _opt_out_button(user: ActingUser, family: FamilyBalance) -> None:
    """Stop or resume this family's reminder emails (they stay in the balances either way)."""
    label = "Send reminder emails again" if family.email_opt_out else "Stop reminder emails to this family"
    st.button(label, key=f"opt_out_{family.parent_id}", icon=":material/unsubscribe:", on_click=_switch_opt_out,
              args=(user, family))


def _switch_opt_out(user: ActingUser, family: FamilyBalance) -> None:
    """Before the page runs again: the change, what to say about it, and the family's row kept
    open (its label changes with the change)."""
    with session_scope() as session:
        change = set_email_opt_out(session, user, family.parent_id, opted_out=not family.email_opt_out)
    st.session_state[OPT_OUT_DONE] = (
        f"{plain(change.parent_name)} will get no more reminder emails (they stay in the balances). "
        if change.opted_out else f"{plain(change.parent_name)} will get reminder emails again. "
    ) + "Recorded in the audit log."
    st.session_state[_row_key(family.parent_id)] = True


def _row_key(parent_id: int) -> str:
    return f"family_{parent_id}"


def _charts(breakdown: OwedBreakdown, currency: str) -> None:
    left, right = st.columns(2)
    for column, groups, field, title in ((left, breakdown.by_team, "Team", "Owed by team"),
                                         (right, breakdown.by_item, "Item", "Owed by item")):
        frame = pd.DataFrame(
            [{field: label or NO_TEAM, "Owed": cents / 100} for label, cents in groups], columns=[field, "Owed"]
        )
        column.subheader(title)
        if frame.empty:
            column.caption("Nothing owed.")
            continue
        symbol = format_cents(0, currency).rstrip("0.,\u00a0 ") or "$"
        # The theme's colour (.streamlit/config.toml), so the charts match the rest of the app;
        # the axis in the league's money, whole units.
        column.vega_lite_chart(frame, {
            "mark": {"type": "bar", "color": st.get_option("theme.primaryColor") or "#1f77b4"},
            "encoding": {
                "y": {"field": field, "type": "nominal", "sort": "-x", "title": None},
                "x": {"field": "Owed", "type": "quantitative", "title": f"Owed ({symbol})",
                      "axis": {"format": ",.0f", "labelExpr": f"'{symbol}' + datum.label"}},
                "tooltip": [{"field": field}, {"field": "Owed", "format": ",.2f"}],
            },
        }, width="stretch")


def _csv_file(user: ActingUser, filters: BalanceFilter, kind: ExportKind) -> Callable[[], bytes]:
    """What the download button calls when clicked: the file streamed from the database, the
    export audited once it is all read. (Streamlit holds the bytes it serves until the page's
    next run; nothing is made before the click.)"""
    sessions = services().sessions  # the callable runs outside the page's script

    def make() -> bytes:
        with sessions() as session:
            data = b"".join(balances_csv_chunks(session, user, filters, kind=kind))
            session.commit()
        release_free_memory()  # the chunks the file was joined from
        return data

    return make


def _downloads(user: ActingUser, filters: BalanceFilter, zone_name: str) -> None:
    """The CSVs of exactly the balances on screen (every page), made when clicked."""
    row = st.container(horizontal=True)
    for kind, label, name in (
        (ExportKind.LINE_ITEMS, "Download line items (CSV)", "line-items"),
        (ExportKind.PARENTS, "Download per family (CSV)", "per-family"),
    ):
        row.download_button(
            label, data=_csv_file(user, filters, kind), file_name=export_file_name(kind, zone_name), mime="text/csv",
            key=f"download_{name}", icon=":material/download:", on_click="ignore",
        )


def main() -> None:
    user = require_user()
    _own_filters(user)
    with session_scope() as session:
        league = league_of(session, user)
        league_name, synced_at, zone_name = league.name, league.payments_synced_at, league_zone(league)
    st.title("Outstanding balances")
    st.caption(plain(league_name))
    done = st.session_state.pop(OPT_OUT_DONE, None)
    if done:
        st.success(done, icon=":material/check_circle:")
    filters = _filters(user)
    order = FamilyOrder(st.session_state.get("families_order") or FamilyOrder.LAST_NAME)
    number = max(int(st.session_state.get(PAGE_KEY, 0)), 0)
    page = _page(user, filters, order, number * FAMILIES_PER_PAGE)
    pages = max(1, -(-page.summary.families // FAMILIES_PER_PAGE))
    if number >= pages:  # the list got shorter: its last page
        number = pages - 1
        page = _page(user, filters, order, number * FAMILIES_PER_PAGE)
    st.session_state[PAGE_KEY] = number
    summary = page.summary
    _headline(summary, synced_at, zone_name)
    if not summary.families:
        if not user.sees_all_teams and not user.team_ids:
            st.warning("You are not the coach of any team yet, so there are no balances to show. Ask your "
                       "league's admin to add you as a team's coach.", icon=":material/groups:")
        elif filters != BalanceFilter():
            st.info("No family owes anything that matches these filters. Clear a filter to see more.")
        else:
            st.success(
                "Nobody owes anything right now. If you expected balances, import the roster, then create "
                "the payment links on Create payment links (admin)."
            )
        return
    if user.can(Permission.EXPORT_BALANCES):
        _downloads(user, filters, zone_name)
    # Only the open tab runs (and reads what it shows); switching tabs runs the page again.
    by_family, line_items, charts = st.tabs(["By family", "All line items", "Charts"], on_change="rerun",
                                            key="balances_tab")
    if by_family.open or line_items.open:
        with by_family if by_family.open else line_items:
            sort_column, pager_column = st.columns([1, 3], vertical_alignment="bottom")
            sort_column.selectbox("Sort families by", options=list(ORDERS), format_func=ORDERS.__getitem__,
                                  key="families_order", on_change=_to_first_page)
            with pager_column:
                _pager(number, pages)
            if by_family.open:
                _families(page, user, filters)
            else:
                st.caption("The line items of the families on this page; the CSV has every page.")
                items = _items_of(user, filters, frozenset(family.parent_id for family in page.families))
                _table(_line_items_frame([(family, item) for family in page.families
                                          for item in items.get(family.parent_id, ())]))
    if charts.open:
        with charts:
            _charts(_breakdown(user, filters), summary.currency)


main()
