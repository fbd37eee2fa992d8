"""Import roster (admins): upload a CSV, see what it would change, then import it."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from core.access.permissions import ActingUser, Permission, require
from core.reporting.directory import league_of
from core.roster.formats import FORMATS
from core.roster.importing import ImportResult, import_roster
from dashboard.state import data_changed, require_user, session_scope
from dashboard.text import plain

PREVIEW_KEY = "roster_import_preview"
DONE_KEY = "roster_import_done"


def _preview(user: ActingUser, upload: Any) -> ImportResult:
    """The dry run of the uploaded file, computed once per upload."""
    cached = st.session_state.get(PREVIEW_KEY)
    if cached is not None and cached[0] == (user, upload.file_id):
        return cached[1]
    with st.spinner(f"Checking every row of {plain(upload.name)}…"):
        with session_scope() as session:
            result = import_roster(session, user, upload, file_name=upload.name)
    st.session_state[PREVIEW_KEY] = ((user, upload.file_id), result)
    return result


def _counts_table(result: ImportResult) -> None:
    frame = pd.DataFrame(
        [
            {
                "": entity.capitalize(),
                "Created": result.counts[entity].created,
                "Updated": result.counts[entity].updated,
                "Left alone": result.counts[entity].unchanged,
            }
            for entity in result.entities
        ]
    )
    st.dataframe(frame, hide_index=True)


def _errors_table(result: ImportResult) -> None:
    noun = "problem" if result.error_count == 1 else "problems"
    st.error(
        f"{result.error_count:,} {noun} in {plain(result.file_name)}. Nothing will be imported until the file "
        "is fixed: correct it in your spreadsheet and upload it again.",
        icon=":material/error:",
    )
    frame = pd.DataFrame(
        [
            {"Row": str(error.line) if error.line is not None else "—",
             "Column": error.column or "—",
             "Problem": error.message}
            for error in result.errors
        ]
    )
    st.dataframe(frame, hide_index=True, width="stretch")
    if result.errors_not_shown:
        st.caption(f"… and {result.errors_not_shown:,} more not listed. Fix these and upload again to see them.")


def _file_formats() -> None:
    with st.expander("What the file should look like"):
        st.markdown(
            "One kind of file at a time, recognised by its header row. Column order is free and extra "
            "columns are ignored. Import products and players before the orders that refer to them."
        )
        for file_format in FORMATS:
            st.markdown(f"- **{file_format.kind.value}**: `{', '.join(file_format.columns)}`")
        st.markdown(
            "Rows are matched on their `*_ref` (products on their name): importing an updated file "
            "updates in place and never duplicates. A player who left stays, with status `withdrawn`."
        )


def _import(user: ActingUser, upload: Any) -> None:
    with st.spinner(f"Importing {plain(upload.name)}…"):
        with session_scope() as session:
            result = import_roster(session, user, upload, commit=True, file_name=upload.name)
    st.session_state[PREVIEW_KEY] = None
    if result.committed:
        data_changed()
        st.session_state[DONE_KEY] = (
            f"Imported {plain(result.file_name)} ({result.rows:,} rows): {result.summary()}. "
            "Recorded in the audit log."
        )
    else:  # the league changed since the preview and the file no longer applies
        st.session_state[PREVIEW_KEY] = ((user, upload.file_id), result)
    st.rerun()


def main() -> None:
    user = require(require_user(), Permission.IMPORT_ROSTER)
    with session_scope() as session:
        league_name = league_of(session, user).name
    st.title("Import roster")
    st.caption(f"{plain(league_name)} · players (with parents and teams), products or orders from a CSV file")
    done = st.session_state.pop(DONE_KEY, None)
    if done:
        st.success(done, icon=":material/check_circle:")
    _file_formats()
    upload = st.file_uploader("Roster CSV file (UTF-8)", type=["csv"], key="roster_file")
    if upload is None:
        return
    result = _preview(user, upload)
    if not result.ok:
        _errors_table(result)
    if result.kind is not None:
        st.subheader(f"Preview: {result.kind.value} file, {result.rows:,} rows")
        if result.ok:
            st.caption(f"What importing {plain(result.file_name)} would change. Nothing has changed yet.")
        else:
            st.caption(f"What the rows of {plain(result.file_name)} without problems would change, once all are fixed.")
        _counts_table(result)
        if result.ok and result.changes == 0:
            st.info("Everything in this file is already in the league: importing it changes nothing.")
    clicked = st.button(
        "Import",
        type="primary",
        disabled=not result.ok,
        key="roster_import_commit",
        help=None if result.ok else "Fix the problems listed above first.",
    )
    if clicked:
        _import(user, upload)


main()
