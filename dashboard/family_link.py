"""The way to a family's page (the statement and the treasurer's tools) from anywhere a family is listed."""

from __future__ import annotations

import streamlit as st

from core.access.permissions import Permission
from dashboard.state import acting_user

FAMILY_PAGE = "views/family.py"
FAMILY_PARAM = "parent"  # the family page's query parameter: the parent's id


def family_page_link(parent_id: int) -> None:
    """"Open the family page" for ``parent_id``; nothing for a role that may not see the ledger (a coach)."""
    user = acting_user()
    if user is None or not user.can(Permission.VIEW_LEDGER):
        return
    st.page_link(FAMILY_PAGE, label="Open the family page", icon=":material/receipt_long:",
                 query_params={FAMILY_PARAM: str(parent_id)})
