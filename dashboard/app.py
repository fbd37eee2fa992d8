"""League Billing Dashboard: the Streamlit entrypoint and router.

Run from the repository root: ``python -m streamlit run dashboard/app.py``.
"""

from __future__ import annotations

import streamlit as st

from core.errors import BillingError
from dashboard.identity import demo_sign_in, no_league_page
from dashboard.navigation import pages_for

st.set_page_config(page_title="League Billing", page_icon=":material/sports_basketball:", layout="wide")

user = demo_sign_in()
entries = pages_for(user)
if entries:
    sections: dict[str, list[st.Page]] = {}
    for entry in entries:
        sections.setdefault(entry.section, []).append(
            st.Page(entry.file, title=entry.title, icon=entry.icon, url_path=entry.url_path)
        )
    page = st.navigation(sections)
else:
    page = st.navigation([st.Page(no_league_page, title="Welcome", icon=":material/waving_hand:")])

st.sidebar.warning("Demo mode: anyone can pick any role. Not for real families' data.", icon=":material/science:")

try:
    page.run()
except BillingError as exc:
    st.error(str(exc), icon=":material/block:")
