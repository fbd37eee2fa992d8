"""Setup checklist (admin): what the league needs before it bills families, and how to fix each thing."""

from __future__ import annotations

from typing import Literal

import streamlit as st

from core.errors import EmailDeliveryError
from core.reporting.directory import league_of
from core.setup.checklist import ChecklistItem, ItemKind, ItemState, check_email_connection, setup_checklist
from core.words import plural
from dashboard.navigation import entry_for
from dashboard.state import require_user, services, session_scope, settings
from dashboard.text import plain

_ICONS = {
    ItemState.READY: ":material/check_circle:",
    ItemState.WARNING: ":material/warning:",
    ItemState.MISSING: ":material/cancel:",
}
_STATE_WORDS = {ItemState.READY: "Ready", ItemState.WARNING: "Works, not for real yet", ItemState.MISSING: "To do"}
_COLOURS: dict[ItemState, Literal["green", "orange", "red"]] = {
    ItemState.READY: "green", ItemState.WARNING: "orange", ItemState.MISSING: "red"}
CHECK_RESULT = "setup_email_check"


def _item(item: ChecklistItem) -> None:
    with st.container(border=True):
        left, right = st.columns([3, 1])
        left.markdown(f"**{plain(item.title)}**")
        right.badge(_STATE_WORDS[item.state], icon=_ICONS[item.state], color=_COLOURS[item.state])
        st.markdown(plain(item.now))
        if item.fix:
            st.caption(plain(item.fix))
        entry = entry_for(item.page) if item.page else None
        if entry is not None and item.state is not ItemState.READY:
            st.page_link(entry.file, label=f"Open {entry.title}", icon=entry.icon)
        if item.kind is ItemKind.EMAIL_BACKEND:
            _connection_check()


def _connection_check() -> None:
    user = require_user()
    if st.button("Check the connection", key="check_email_connection", icon=":material/network_check:",
                 help="Connects and signs in to the email provider. Nothing is sent."):
        try:
            with st.spinner("Connecting…"), services().email_backend() as backend:
                st.session_state[CHECK_RESULT] = (True, check_email_connection(user, backend))
        except EmailDeliveryError as exc:
            st.session_state[CHECK_RESULT] = (False, str(exc))
    result = st.session_state.get(CHECK_RESULT)
    if result is not None:
        ok, said = result
        (st.success if ok else st.error)(plain(said), icon=":material/check_circle:" if ok else ":material/error:")


def main() -> None:
    user = require_user()
    with session_scope() as session:
        league_name = league_of(session, user).name
        items = setup_checklist(session, user, settings(), email_backend_problem=services().email_backend_problem())
    st.title("Setup checklist")
    to_do = sum(item.state is ItemState.MISSING for item in items)
    st.caption(f"{plain(league_name)} · what the league needs before it bills families. Secrets (the Stripe key, "
               "passwords) are never shown here; they stay in the server's environment or secrets.toml.")
    if to_do:
        st.info(f"{plural(to_do, 'thing')} to do before the league can bill families.",
                icon=":material/checklist:")
    else:
        st.success("Everything the league needs is set up.", icon=":material/task_alt:")
    for item in items:
        _item(item)


main()
