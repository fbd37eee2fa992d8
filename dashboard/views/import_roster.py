"""Import roster (admins): upload a CSV, see what it would change, then import it."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from core.access.permissions import ActingUser, Permission, require
from core.money import format_cents
from core.reporting.directory import league_of
from core.roster.formats import FORMATS
from core.roster.importing import ImportResult, import_roster
from core.setup.checklist import next_setup_steps
from dashboard.navigation import entry_for
from dashboard.state import require_user, session_scope
from dashboard.text import plain

PREVIEW_KEY = "roster_import_preview"
DONE_KEY = "roster_import_done"
# Bumped after each import, so the file picker starts empty instead of offering the same file again.
UPLOADER_KEY = "roster_import_uploads"


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


def _large_amounts_confirmed(result: ImportResult, upload: Any) -> bool:
    """List the amounts above the sanity bound; True once the admin ticked that they are right
    (or when there are none). The tick belongs to this upload: a new file asks again."""
    if not result.large_amounts:
        return True
    count = len(result.large_amounts)
    these = "This amount is" if count == 1 else f"These {count} amounts are"
    st.warning(
        f"{these} above {plain(result.large_amount_bound)} for one item. An amount read the wrong way "
        "(a decimal comma taken for a thousands separator) is a hundred times too big and would go on to "
        "payment links and reminder emails: check each against the source before importing.",
        icon=":material/warning:",
    )
    frame = pd.DataFrame(
        [
            {"Row": str(large.line), "Column": large.column,
             "Amount": format_cents(large.amount_cents, result.currency), "As written": large.written}
            for large in result.large_amounts
        ]
    )
    st.dataframe(frame, hide_index=True)
    if not result.ok:
        return False
    label = "I checked this amount: it is right" if count == 1 else f"I checked these {count} amounts: they are right"
    return st.checkbox(label, key=f"roster_confirm_large_amounts_{upload.file_id}")


def _file_formats() -> None:
    with st.expander("What the file should look like"):
        st.markdown(
            "One kind of file at a time, recognised by its header row. Column order is free and extra "
            "columns are ignored. Import products and players before the orders that refer to them."
        )
        for file_format in FORMATS:
            optional = f" and optionally `{', '.join(file_format.optional)}`" if file_format.optional else ""
            st.markdown(f"- **{file_format.kind.value}**: `{', '.join(file_format.columns)}`{optional}")
        st.markdown(
            "Rows are matched on their `*_ref` (products on their name): importing an updated file "
            "updates in place and never duplicates. A player who left stays, with status `withdrawn`."
        )


def _import(user: ActingUser, upload: Any, *, confirm_large_amounts: bool) -> None:
    with st.spinner(f"Importing {plain(upload.name)}…"):
        with session_scope() as session:
            result = import_roster(
                session, user, upload, commit=True, confirm_large_amounts=confirm_large_amounts,
                file_name=upload.name,
            )
    st.session_state[PREVIEW_KEY] = None
    if result.committed:
        confirmed = (
            f" You confirmed {len(result.large_amounts)} above {plain(result.large_amount_bound)}."
            if result.large_amounts else ""
        )
        st.session_state[DONE_KEY] = (
            f"Imported {plain(result.file_name)} ({result.rows:,} rows): {result.summary()}. "
            f"Recorded in the audit log.{confirmed}",
            result,
        )
        st.session_state[UPLOADER_KEY] = st.session_state.get(UPLOADER_KEY, 0) + 1
    else:  # the league changed since the preview and the file no longer applies
        st.session_state[PREVIEW_KEY] = ((user, upload.file_id), result)
    st.rerun()


def uploader_key() -> str:
    """The file picker's key: a new one after each import, so it starts empty."""
    generation = st.session_state.get(UPLOADER_KEY, 0)
    return "roster_file" if not generation else f"roster_file_{generation}"


def _imported(user: ActingUser, message: str, result: ImportResult) -> None:
    """What the import just did, and what to do next to get the league billing."""
    st.success(message, icon=":material/check_circle:")
    st.subheader(f"Imported: {result.kind.value if result.kind else 'roster'} file")
    _counts_table(result)
    with session_scope() as session:
        steps = next_setup_steps(session, user)
    st.subheader("Next steps")
    for number, step in enumerate(steps, start=1):
        entry = entry_for(step.page)
        if entry is not None and user.can(entry.permission):
            st.page_link(entry.file, label=f"{number}. {step.text}", icon=entry.icon)
        else:
            st.markdown(f"{number}. {plain(step.text)}")
    st.divider()


def main() -> None:
    user = require(require_user(), Permission.IMPORT_ROSTER)
    with session_scope() as session:
        league_name = league_of(session, user).name
    st.title("Import roster")
    st.caption(f"{plain(league_name)} · players (with parents and teams), products or orders from a CSV file")
    done = st.session_state.pop(DONE_KEY, None)
    if done:
        _imported(user, *done)
    _file_formats()
    upload = st.file_uploader("Another roster CSV file (UTF-8)" if done else "Roster CSV file (UTF-8)", type=["csv"],
                              key=uploader_key())
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
    confirmed = _large_amounts_confirmed(result, upload)
    clicked = st.button(
        "Import",
        type="primary",
        disabled=not (result.ok and confirmed),
        key="roster_import_commit",
        help="Fix the problems listed above first." if not result.ok
        else None if confirmed else "Check the large amounts above and tick the box first.",
    )
    if clicked:
        _import(user, upload, confirm_large_amounts=confirmed)


main()
