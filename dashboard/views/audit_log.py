"""Audit log (admin): who did what and when, with filters and a CSV export."""

from __future__ import annotations

from datetime import date

import pandas as pd
import streamlit as st

from core.access.permissions import ActingUser
from core.audit import audit_filter_choices, audit_period, list_audit_entries
from core.audit_sentences import action_name, describe_action
from core.reporting.audit_export import audit_log_csv
from core.reporting.directory import league_of
from core.timezones import format_local, league_zone, today_in
from dashboard.state import require_user, session_scope
from dashboard.text import plain

SHOWN_ENTRIES = 500


def _filters(user: ActingUser, zone_name: str) -> tuple[str | None, str | None, date | None, date | None]:
    with session_scope() as session:
        choices = audit_filter_choices(session, user)
    action_column, actor_column, from_column, to_column = st.columns([2, 2, 1, 1])
    action = action_column.selectbox(
        "Action", options=[None, *choices.actions], key="audit_action",
        format_func=lambda value: "All actions" if value is None else action_name(value),
    )
    actor = actor_column.selectbox(
        "Who", options=[None, *choices.actors], key="audit_actor",
        format_func=lambda value: "Everyone" if value is None else value,
    )
    first_day = from_column.date_input("From", value=None, key="audit_from", help=f"Days in {zone_name}")
    last_day = to_column.date_input("To", value=None, key="audit_to", help=f"Days in {zone_name}")
    return action, actor, first_day, last_day


def main() -> None:
    user = require_user()
    with session_scope() as session:
        league = league_of(session, user)
        league_name, zone_name = league.name, league_zone(league)
    st.title("Audit log")
    st.caption(f"{plain(league_name)} · exports, imports, payment links, payment checks and sends, newest first; "
               f"times in {zone_name}")
    action, actor, first_day, last_day = _filters(user, zone_name)
    if first_day and last_day and first_day > last_day:
        st.warning("The 'From' day is after the 'To' day, so nothing can match.")
    since, until = audit_period(first_day, last_day, zone_name)
    with session_scope() as session:
        entries = list_audit_entries(
            session, user, action=action, actor=actor, since=since, until=until, limit=SHOWN_ENTRIES
        )
        rows = [
            {
                "When": format_local(entry.created_at, zone_name),
                "Who": entry.actor,
                "Role": entry.role,
                "What happened": describe_action(entry.action, entry.details, entry.summary),
                "Details": entry.summary,
            }
            for entry in entries
        ]
    if not rows:
        if action or actor or first_day or last_day:
            st.info("No audit entries match these filters.")
        else:
            st.info("Nothing has been recorded yet. Exports, imports, backfills, payment syncs and sends appear here.")
        return

    def export() -> bytes:
        with session_scope() as session:
            return audit_log_csv(session, user, action=action, actor=actor, since=since, until=until)

    st.download_button(
        "Download as CSV", data=export, file_name=f"audit-log-{today_in(zone_name):%Y-%m-%d}.csv",
        mime="text/csv", key="download_audit_log", icon=":material/download:",
    )
    if len(rows) == SHOWN_ENTRIES:
        st.caption(f"Showing the newest {SHOWN_ENTRIES} entries; the CSV has every matching entry.")
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


main()
