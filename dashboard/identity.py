"""Who is using the dashboard. In demo mode a role picker stands in for sign-in."""

from __future__ import annotations

from typing import Optional

import streamlit as st

from core.access import ActingUser, Role
from core.demo import build_demo_league
from core.directory import league_teams, list_leagues
from dashboard.state import session_scope, set_acting_user

_ROLE_LABELS = {
    Role.ADMIN: "Admin (everything)",
    Role.TREASURER: "Treasurer (balances, export, sync)",
    Role.COACH: "Coach (own team's balances)",
}


def demo_sign_in() -> Optional[ActingUser]:
    """The sidebar role picker of demo mode; returns the chosen user (or None without a league)."""
    with session_scope() as session:
        leagues = [(tenant.id, tenant.name) for tenant in list_leagues(session)]
    if not leagues:
        set_acting_user(None)
        return None
    with st.sidebar:
        st.caption("Demo sign-in")
        league_names = dict(leagues)
        tenant_id = st.selectbox(
            "League", options=list(league_names), format_func=league_names.__getitem__, key="demo_league"
        )
        role = st.radio(
            "Act as", options=list(_ROLE_LABELS), format_func=_ROLE_LABELS.__getitem__, key="demo_role"
        )
        team_ids: frozenset[int] = frozenset()
        if role is Role.COACH:
            with session_scope() as session:
                teams = {team.id: team.label for team in league_teams(session, tenant_id)}
            chosen = st.multiselect(
                "Coach of", options=list(teams), format_func=teams.__getitem__,
                default=list(teams)[:1], key="demo_coach_teams",
            )
            team_ids = frozenset(chosen)
    user = ActingUser(identity=f"demo-{role.value}", role=role, tenant_id=tenant_id, team_ids=team_ids)
    set_acting_user(user)
    return user


def no_league_page() -> None:
    """What a fresh install shows: how to get a league, and a button to create the demo one."""
    st.title("League Billing Dashboard")
    st.info(
        "There is no league in this database yet. Create the demo league to look around, "
        "or import your roster with `python -m core import players.csv --commit`."
    )
    if st.button("Create the demo league", type="primary", key="create_demo"):
        with session_scope() as session:
            build_demo_league(session)
        st.rerun()
