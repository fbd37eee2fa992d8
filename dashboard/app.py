"""League Billing Dashboard: the Streamlit entrypoint and router.

Run from the repository root: ``python -m streamlit run dashboard/app.py``.

Every page is registered, but the menu shows only the pages the signed-in role may open.
A page reached by its address anyway is refused here, before it runs, and the ``core``
functions it calls refuse again: hiding a page is a convenience, never the protection.
"""

from __future__ import annotations

import streamlit as st
from sqlalchemy.exc import OperationalError

from core.access.permissions import ActingUser, require
from core.errors import BillingError, PermissionDenied
from core.settings import ConfigurationError, without_database_secrets
from dashboard.first_run import FIRST_RUN_DONE
from dashboard.identity import Gate, sign_in
from dashboard.memory import cap_allocator_arenas, release_free_memory
from dashboard.navigation import PAGES, entry_for, pages_for
from dashboard.state import settings

cap_allocator_arenas()  # before the sessions' threads allocate (see dashboard.memory)
st.set_page_config(page_title="League Billing", page_icon="🏀", layout="wide")


def menu(user: ActingUser) -> dict[str, list[st.Page]]:
    """All pages by section: the user's own visible (first one the default), the rest hidden.

    Right after the first run, the admin who named the league starts on Import roster.
    """
    allowed = pages_for(user)
    home = allowed[0] if allowed else None
    if st.session_state.get(FIRST_RUN_DONE):
        home = next((entry for entry in allowed if entry.url_path == "import"), home)
    sections: dict[str, list[st.Page]] = {}
    for entry in allowed:
        sections.setdefault(entry.section, []).append(
            st.Page(entry.file, title=entry.title, icon=entry.icon, url_path=entry.url_path,
                    default=entry is home)
        )
    # Hidden pages sit in the first section so that no empty section heading appears.
    first_section = next(iter(sections), PAGES[0].section)
    for entry in PAGES:
        if entry not in allowed:
            sections.setdefault(first_section, []).append(
                st.Page(entry.file, title=entry.title, icon=entry.icon, url_path=entry.url_path,
                        visibility="hidden")
            )
    return sections


def run() -> None:
    signed_in = sign_in()
    if isinstance(signed_in, Gate):
        st.navigation([st.Page(signed_in.show, title=signed_in.title, icon=signed_in.icon)]).run()
        return
    sections = menu(signed_in)
    page = st.navigation(sections)
    entry = entry_for(page.url_path)
    try:
        if entry is not None:
            require(signed_in, entry.permission)
    except PermissionDenied as refusal:
        st.error(str(refusal), icon=":material/block:")
        home = next((shown for pages in sections.values() for shown in pages if shown.visibility == "visible"), None)
        if home is not None:
            st.page_link(home, label=f"Go to {home.title}", icon=":material/arrow_back:")
        return
    try:
        page.run()
    except BillingError as exc:
        st.error(str(exc), icon=":material/block:")


# A setting the product cannot use, or a database it cannot reach: one clear line, not a traceback.
try:
    run()
    release_free_memory()
except ConfigurationError as problem:
    st.error(f"The dashboard cannot start: {problem}", icon=":material/settings_alert:")
except OperationalError as problem:
    reason = str(getattr(problem, "orig", None) or problem).strip().splitlines()[0]
    reason = without_database_secrets(reason, settings().database_url)
    st.error(f"The database cannot be reached (`{settings().database_url_for_display()}`): {reason}",
             icon=":material/database_off:")
