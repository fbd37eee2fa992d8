"""The first run: on a database with no league yet, the admin names the league and sets it up here."""

from __future__ import annotations

import streamlit as st

from core.access.league_settings import LeagueSettings, create_first_league
from core.demo import build_demo_league
from core.errors import InvalidInput
from dashboard.league_form import currency_input, time_zone_input
from dashboard.state import session_scope
from dashboard.text import plain

# Set once the league is created: this browser session then starts on the Import page.
FIRST_RUN_DONE = "first_run_done"


def first_run_page(created_by: str, *, slug: str | None = None, offer_demo: bool = False) -> None:
    """The form that creates the league (recorded as ``created_by``); then the Import page opens."""
    st.title("Set up your league")
    st.write("There is no league in this database yet. Name yours and say how its emails are signed; you can "
             "change all of it later in League settings. Next you import your roster files.")
    with st.form("first_run"):
        name = st.text_input("League name", key="first_run_name", placeholder="e.g. Westside Youth Basketball")
        sender_name = st.text_input("Emails come from (name)", key="first_run_sender",
                                    placeholder="e.g. Westside Youth Basketball Treasurer")
        reply_to = st.text_input("Replies go to (email)", key="first_run_reply_to",
                                 placeholder="e.g. treasurer@yourleague.org",
                                 help="Parents' replies and unsubscribe requests go here.")
        left, right = st.columns(2)
        with left:
            currency = currency_input("usd", key="first_run_currency")
        with right:
            time_zone = time_zone_input("America/New_York", key="first_run_time_zone")
        created = st.form_submit_button("Create the league", type="primary")
    if created:
        details = LeagueSettings(name=name, sender_name=sender_name, reply_to=reply_to, currency=currency,
                                 time_zone=time_zone)
        try:
            with session_scope() as session:
                create_first_league(session, details, created_by=created_by, slug=slug)
        except InvalidInput as exc:
            problems = str(exc).splitlines()
            st.error("\n".join(f"- {plain(problem)}" for problem in problems), icon=":material/error:")
        else:
            st.session_state[FIRST_RUN_DONE] = True
            st.rerun()
    if offer_demo:
        st.divider()
        st.caption("Only looking around? The demo league has made-up families to try everything on.")
        if st.button("Create the demo league instead", key="create_demo"):
            with session_scope() as session:
                build_demo_league(session)
            st.rerun()
