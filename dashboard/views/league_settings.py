"""League settings (admin): the league's name and brand, used by every email."""

from __future__ import annotations

import streamlit as st

from core.access.league_settings import LeagueSettings, current_league_settings, update_league_settings
from core.errors import InvalidInput
from dashboard.state import data_changed, require_user, session_scope
from dashboard.text import plain

SAVED = "league_settings_saved"


def main() -> None:
    user = require_user()
    with session_scope() as session:
        settings = current_league_settings(session, user)
    st.title("League settings")
    st.caption("The name and brand every email is signed with. The sending address itself is EMAIL_FROM.")
    if st.session_state.pop(SAVED, False):
        st.success("Saved. The next emails use these settings.", icon=":material/check_circle:")
    with st.form("league_settings"):
        name = st.text_input("League name", value=settings.name, key="league_name")
        sender_name = st.text_input("Emails come from (name)", value=settings.sender_name, key="league_sender")
        reply_to = st.text_input("Replies go to (email)", value=settings.reply_to, key="league_reply_to")
        logo_url = st.text_input("Logo (https:// image address)", value=settings.logo_url, key="league_logo")
        left, right = st.columns(2)
        primary = left.color_picker("Header colour", value=_six_digit(settings.primary_color), key="league_primary")
        accent = right.color_picker("Pay now button colour", value=_six_digit(settings.accent_color),
                                    key="league_accent")
        footer = st.text_area("Email footer", value=settings.footer_text, key="league_footer")
        saved = st.form_submit_button("Save", type="primary")
    if not saved:
        return
    changes = LeagueSettings(name=name, sender_name=sender_name, reply_to=reply_to, logo_url=logo_url,
                             primary_color=primary, accent_color=accent, footer_text=footer)
    try:
        with session_scope() as session:
            update_league_settings(session, user, changes)
    except InvalidInput as exc:
        problems = str(exc).splitlines()
        st.error("\n".join(f"- {plain(problem)}" for problem in problems) if len(problems) > 1 else plain(problems[0]),
                 icon=":material/error:")
        return
    data_changed()
    st.session_state[SAVED] = True
    st.rerun()  # the sidebar, drawn before this page, shows the league's new name too


def _six_digit(colour: str) -> str:
    """The colour picker wants #RRGGBB; a stored #RGB is expanded."""
    if len(colour) == 4:
        return "#" + "".join(c * 2 for c in colour[1:])
    return colour or "#000000"


main()
