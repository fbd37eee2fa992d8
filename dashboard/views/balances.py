"""Outstanding balances: who owes what, grouped by family, with filters, charts and the CSV export."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st

from core.access.permissions import ActingUser, Permission
from core.email.opt_out import set_email_opt_out
from core.money import format_cents
from core.reporting.balances import BalanceFilter, OutstandingBalance, outstanding_balances, summarise
from core.reporting.directory import league_of, league_products, visible_teams
from core.reporting.export import ExportKind, record_balances_export, render_csv
from core.timezones import format_local, league_zone
from core.words import plural
from dashboard.family_link import family_page_link
from dashboard.state import require_user, session_scope
from dashboard.text import plain

if TYPE_CHECKING:
    from streamlit.elements.lib.column_types import ColumnConfig

FAMILIES_PER_PAGE = 25
OPT_OUT_DONE = "balances_opt_out_done"


def _balances(user: ActingUser, filters: BalanceFilter) -> list[OutstandingBalance]:
    # Not cached: the figures must follow changes made by the CLI or another replica at once;
    # it is one query however large the league.
    with session_scope() as session:
        return outstanding_balances(session, user, filters)


def _filters(user: ActingUser) -> BalanceFilter:
    with session_scope() as session:
        teams = {team.id: team.label for team in visible_teams(session, user)}
        products = {product.id: product.label for product in league_products(session, user)}
    columns = st.columns([2, 2, 2, 2] if user.can(Permission.VIEW_CONTACT_DETAILS) else [2, 2, 2])
    team_ids = columns[0].multiselect(
        "Team", options=list(teams), format_func=teams.__getitem__, key="filter_teams", placeholder="All teams"
    )
    product_ids = columns[1].multiselect(
        "Item", options=list(products), format_func=products.__getitem__, key="filter_products",
        placeholder="All items",
    )
    search = columns[2].text_input("Family or player name", key="filter_search", placeholder="e.g. O'Brien")
    email = ""
    if user.can(Permission.VIEW_CONTACT_DETAILS):
        email = columns[3].text_input("Parent email (exact)", key="filter_email")
    return BalanceFilter(
        team_ids=frozenset(team_ids), product_ids=frozenset(product_ids),
        parent_search=search, parent_email=email,
    )


def _line_items_frame(balances: list[OutstandingBalance]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "Family": balance.parent_name,
                "Player": item.player_name,
                "Team": item.team_name or "—",
                "Item": item.product_name,
                "Amount": format_cents(item.amount_cents, item.currency),
                "cents": item.amount_cents,
                "Status": "processing" if item.processing else "owed",
                "Pay Now": item.pay_url,
                "Pay balance": balance.family_pay_url,  # the family's whole balance at once
            }
            for balance in balances
            for item in balance.items
        ]
    )


def _link_columns() -> dict[str, ColumnConfig | None]:
    return {
        "Pay Now": st.column_config.LinkColumn("Pay Now", display_text="Pay now ↗"),
        "Pay balance": st.column_config.LinkColumn("Pay balance", display_text="Pay balance ↗"),
        "cents": None,
    }


def _headline(balances: list[OutstandingBalance], synced_at: datetime | None, zone_name: str) -> None:
    summary = summarise(balances)
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


def _families(balances: list[OutstandingBalance], user: ActingUser) -> None:
    pages = max(1, -(-len(balances) // FAMILIES_PER_PAGE))
    page = 1
    if pages > 1:
        page = st.columns([1, 4])[0].number_input(
            f"Page (of {pages})", min_value=1, max_value=pages, value=1, key="families_page"
        )
    start = (page - 1) * FAMILIES_PER_PAGE
    for balance in balances[start : start + FAMILIES_PER_PAGE]:
        contact = ""
        if user.can(Permission.VIEW_CONTACT_DETAILS):
            contact = f" · {plain(balance.parent_email)}" if balance.parent_email else " · no email on file"
            contact += " · no reminder emails (opted out)" if balance.email_opt_out else ""
        label = (
            f"**{plain(balance.parent_name)}** — {format_cents(balance.total_cents, balance.currency)} "
            f"({plural(len(balance.items), 'item')}){contact}"
        )
        with st.expander(label):
            if balance.family_pay_url:
                st.link_button(f"Pay {format_cents(balance.total_cents, balance.currency)} (the whole balance)",
                               balance.family_pay_url, icon=":material/payments:")
            frame = _line_items_frame([balance]).drop(columns=["Family", "Pay balance"])
            st.dataframe(frame, hide_index=True, column_config=_link_columns(), width="stretch")
            family_page_link(balance.parent_id)
            if user.can(Permission.MANAGE_EMAIL_PREFERENCES):
                _opt_out_button(user, balance)


def _opt_out_button(user: ActingUser, balance: OutstandingBalance) -> None:
    """Stop or resume this family's reminder emails (they stay in the balances either way)."""
    label = "Send reminder emails again" if balance.email_opt_out else "Stop reminder emails to this family"
    if st.button(label, key=f"opt_out_{balance.parent_id}", icon=":material/unsubscribe:"):
        with session_scope() as session:
            change = set_email_opt_out(session, user, balance.parent_id, opted_out=not balance.email_opt_out)
        st.session_state[OPT_OUT_DONE] = (
            f"{plain(change.parent_name)} will get no more reminder emails (they stay in the balances). "
            if change.opted_out else f"{plain(change.parent_name)} will get reminder emails again. "
        ) + "Recorded in the audit log."
        st.rerun()


def _charts(balances: list[OutstandingBalance]) -> None:
    frame = _line_items_frame(balances)
    left, right = st.columns(2)
    for column, field, title in ((left, "Team", "Owed by team"), (right, "Item", "Owed by item")):
        grouped = frame.groupby(field, as_index=False)["cents"].sum()
        grouped["Dollars owed"] = grouped["cents"] // 100  # whole dollars, for the bar length only
        column.subheader(title)
        # The theme's colour (.streamlit/config.toml), so the charts match the rest of the app.
        column.bar_chart(grouped, x=field, y="Dollars owed", horizontal=True,
                         color=st.get_option("theme.primaryColor"))


def _downloads(user: ActingUser, balances: list[OutstandingBalance]) -> None:
    """The CSVs of exactly the balances on screen; the export is audited when it is clicked."""

    def record(kind: ExportKind) -> None:
        with session_scope() as session:
            record_balances_export(session, user, balances, kind=kind)

    stamp = datetime.now().strftime("%Y-%m-%d")
    row = st.container(horizontal=True)
    for kind, label, name in (
        (ExportKind.LINE_ITEMS, "Download line items (CSV)", "line-items"),
        (ExportKind.PARENTS, "Download per family (CSV)", "per-family"),
    ):
        row.download_button(
            label, data=render_csv(balances, kind), file_name=f"balances-{name}-{stamp}.csv", mime="text/csv",
            key=f"download_{name}", icon=":material/download:", on_click=record, args=(kind,),
        )


def main() -> None:
    user = require_user()
    with session_scope() as session:
        league = league_of(session, user)
        league_name, synced_at, zone_name = league.name, league.payments_synced_at, league_zone(league)
    st.title("Outstanding balances")
    st.caption(plain(league_name))
    done = st.session_state.pop(OPT_OUT_DONE, None)
    if done:
        st.success(done, icon=":material/check_circle:")
    filters = _filters(user)
    balances = _balances(user, filters)
    _headline(balances, synced_at, zone_name)
    if not balances:
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
        _downloads(user, balances)
    by_family, line_items, charts = st.tabs(["By family", "All line items", "Charts"])
    with by_family:
        _families(balances, user)
    with line_items:
        st.dataframe(
            _line_items_frame(balances), hide_index=True, column_config=_link_columns(), width="stretch"
        )
    with charts:
        _charts(balances)


main()
