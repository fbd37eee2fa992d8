"""Who is using the dashboard.

With ``AUTH_MODE=oidc`` people sign in through Streamlit's OpenID Connect (``st.login``)
and their roles come from the ``[roles.<league>]`` tables of secrets.toml. In demo mode
(the default) a role picker stands in for sign-in, and refuses to run where it could
hand out admin rights to strangers (see ``core.access.demo_guard``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import streamlit as st
from streamlit.errors import StreamlitAuthError

from core.access.demo_guard import demo_mode_refusal
from core.access.permissions import ActingUser, Role
from core.access.roles import (
    EmailClaimProblem,
    LeagueAccess,
    email_claim_problem,
    league_access_for,
    memberships_for,
    parse_role_directory,
    verified_email,
)
from core.access.sign_in import DEFAULT_PROVIDER, oidc_configuration_problem, oidc_providers
from core.demo import DEMO_SLUG
from core.reporting.directory import league_teams, list_leagues
from core.settings import ConfigurationError, Settings, read_secrets_section
from dashboard.first_run import first_run_page
from dashboard.state import session_scope, set_acting_user, settings
from dashboard.text import plain

logger = logging.getLogger(__name__)

ROLE_LABELS = {
    Role.ADMIN: "Admin (everything)",
    Role.TREASURER: "Treasurer (balances, export, sync)",
    Role.COACH: "Coach (own team's balances)",
}
_ROLE_NAMES = {Role.ADMIN: "Admin", Role.TREASURER: "Treasurer", Role.COACH: "Coach"}
DEMO_BANNER = (
    "**Demo mode.** Anyone can pick any role here, and sign-in is switched off. "
    "Use it to look around, never with real families' data."
)
# A league of one's own under the role picker: fine on one's own computer, not beyond it.
NO_SIGN_IN_BANNER = (
    "**Sign-in is off.** Whoever opens the dashboard on this computer picks a role. Fine while only you "
    "use it here; set up sign-in (docs/sign-in-and-roles.md) before anyone else does."
)
DEMO_ADMIN = "demo-admin"


@dataclass(frozen=True)
class Gate:
    """The one page shown instead of the app: nobody with a role is signed in, or the setup is refused."""

    title: str
    icon: str
    show: Callable[[], None]


def sign_in() -> ActingUser | Gate:
    """The acting user of this run (also put in session state), or the page to show instead."""
    set_acting_user(None)
    try:
        mode = settings().auth_mode
        auth = auth_section()
        result = _oidc_sign_in(auth) if mode == "oidc" else _demo_sign_in(auth)
    except ConfigurationError as exc:
        result = Gate("Setup problem", ":material/settings_alert:", partial(_problem_page, str(exc)))
    if isinstance(result, ActingUser):
        set_acting_user(result)
    return result


def auth_section() -> Mapping[str, Any]:
    """The ``[auth]`` section: the project's secrets.toml, or wherever Streamlit itself finds one."""
    section = read_secrets_section("auth")
    if section:
        return section
    if st.secrets.load_if_toml_exists() and "auth" in st.secrets:
        found = st.secrets["auth"]
        return found if isinstance(found, Mapping) else {}
    return {}


# --- demo mode -------------------------------------------------------------------------------


def _demo_sign_in(auth: Mapping[str, Any]) -> ActingUser | Gate:
    refusal = demo_mode_refusal(st.get_option("server.address"), bool(auth))
    if refusal:
        logger.warning("demo mode refused: %s", refusal)
        return Gate("Demo mode refused", ":material/block:", partial(_refused_page, refusal))
    user = demo_sign_in()
    if user is None:
        st.warning(NO_SIGN_IN_BANNER, icon=":material/lock_open:")
        with st.sidebar:
            st.caption("Demo sign-in")
            st.markdown("Acting as **Admin**: setting up the first league.")
        # The demo is offered except in the real league's own file (bash scripts/start-league).
        offer_demo = settings().database_url != Settings().database_url
        return Gate("Set up your league", ":material/waving_hand:",
                    partial(first_run_page, DEMO_ADMIN, offer_demo=offer_demo))
    return user


def demo_sign_in() -> ActingUser | None:
    """The sidebar role picker of demo mode; returns the chosen user (or None without a league)."""
    with session_scope() as session:
        leagues = [(tenant.id, tenant.name, tenant.slug) for tenant in list_leagues(session)]
    if not leagues:
        return None
    with st.sidebar:
        st.caption("Demo sign-in")
        league_names = {tenant_id: name for tenant_id, name, _ in leagues}
        demo_ids = {tenant_id for tenant_id, _, slug in leagues if slug == DEMO_SLUG}
        tenant_id = st.selectbox(
            "League", options=list(league_names), format_func=league_names.__getitem__, key="demo_league"
        )
        role = st.radio(
            "Act as", options=list(ROLE_LABELS), format_func=ROLE_LABELS.__getitem__, key="demo_role"
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
    if tenant_id in demo_ids:
        st.warning(DEMO_BANNER, icon=":material/science:")
    else:
        st.warning(NO_SIGN_IN_BANNER, icon=":material/lock_open:")
    return ActingUser(identity=f"demo-{role.value}", role=role, tenant_id=tenant_id, team_ids=team_ids)


def _refused_page(reason: str) -> None:
    st.title("Demo mode refused to start")
    st.error(reason, icon=":material/block:")
    st.caption("Nothing else is shown until this is fixed; restart the app afterwards.")


# --- OIDC sign-in ----------------------------------------------------------------------------


def _oidc_sign_in(auth: Mapping[str, Any]) -> ActingUser | Gate:
    problem = oidc_configuration_problem(auth)
    if problem:
        return Gate("Setup problem", ":material/settings_alert:", partial(_problem_page, problem))
    if not st.user.get("is_logged_in", False):
        return Gate("Sign in", ":material/login:", partial(_sign_in_page, oidc_providers(auth)))
    claims = st.user.to_dict()
    unproven = email_claim_problem(claims)
    if unproven is not None:
        return Gate("Welcome", ":material/waving_hand:", partial(_unverified_page, unproven, claims.get("email")))
    email = verified_email(claims)
    assert email is not None  # no problem: the address is verified
    directory = parse_role_directory(read_secrets_section("roles"))
    with session_scope() as session:
        leagues = league_access_for(session, directory, email)
        empty_database = not leagues and not list_leagues(session)
    if not leagues:
        first = _first_league_to_create(directory, email) if empty_database else None
        if first is not None:
            return Gate("Set up your league", ":material/waving_hand:",
                        partial(first_run_page, email, slug=first))
        return Gate("Welcome", ":material/waving_hand:", partial(_no_role_page, email))
    access = _choose_league(leagues)
    _signed_in_sidebar(email, access)
    return access.user


def _first_league_to_create(directory: Mapping[str, Any], email: str) -> str | None:
    """In a database with no league yet: the slug of the first league ``email`` is an admin of in
    secrets.toml's ``[roles]`` (the league they may create), or None."""
    return next((m.league_slug for m in memberships_for(directory, email) if m.role is Role.ADMIN), None)


def _choose_league(leagues: list[LeagueAccess]) -> LeagueAccess:
    if len(leagues) == 1:
        return leagues[0]
    by_slug = {league.league_slug: league for league in leagues}
    slug = st.sidebar.selectbox(
        "League", options=list(by_slug), key="signed_in_league",
        format_func=lambda slug: f"{by_slug[slug].league_name} ({_ROLE_NAMES[by_slug[slug].user.role]})",
    )
    return by_slug[slug]


def _signed_in_sidebar(email: str, access: LeagueAccess) -> None:
    with st.sidebar:
        st.caption(f"Signed in as {plain(email)}")
        st.caption(f"{_ROLE_NAMES[access.user.role]} · {plain(access.league_name)}")
        if st.button("Sign out", key="sign_out", icon=":material/logout:"):
            st.logout()
            st.stop()


def _sign_in_page(providers: list[str]) -> None:
    st.title("League Billing Dashboard")
    st.write("Sign in with your league account to see balances and billing.")
    for provider in providers:
        label = "Sign in" if provider == DEFAULT_PROVIDER else f"Sign in with {provider.title()}"
        if st.button(label, type="primary", key=f"sign_in_{provider}", icon=":material/login:"):
            try:
                st.login(provider)
            except StreamlitAuthError as exc:
                st.error(f"Sign-in is not set up correctly: {exc}", icon=":material/error:")


def _unverified_page(problem: EmailClaimProblem, email: object) -> None:
    st.title("Welcome")
    if problem is EmailClaimProblem.NO_EMAIL:
        st.info(
            "Your sign-in did not come with an email address, so the dashboard cannot tell which "
            "league you belong to. Sign in with your league account, or ask your league admin."
        )
    else:
        st.error(
            f"Your sign-in did not come with a verified email address: your identity provider did not "
            f"confirm that {plain(str(email))} is verified (its `email_verified` claim is missing or not "
            "true), so the dashboard cannot be sure the address is yours and gives it no role. Verify "
            "the address with your provider and sign in again, or ask your league admin.",
            icon=":material/gpp_bad:",
        )
    _sign_out_button()


def _no_role_page(email: str) -> None:
    st.title("Welcome")
    st.info(
        f"You are signed in as **{plain(email)}**, but you don't have a role in any league yet. "
        "Please ask your league admin to add your address as an admin, treasurer or coach."
    )
    _sign_out_button()


def _sign_out_button() -> None:
    if st.button("Sign out", key="no_role_sign_out", icon=":material/logout:"):
        st.logout()
        st.stop()


def _problem_page(problem: str) -> None:
    st.title("League Billing Dashboard")
    st.error(problem, icon=":material/settings_alert:")
    st.caption("An operator needs to fix the configuration; nothing else is shown until then.")
