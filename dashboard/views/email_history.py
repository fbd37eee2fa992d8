"""Email history: every campaign, its messages, and the exact HTML each message carried."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.email.campaigns import campaign_summaries, get_message
from core.email.registry import EMAIL_TYPES
from core.email.sending import campaign_report
from core.reporting.directory import league_of
from core.timezones import format_local, league_zone
from dashboard.email_frame import sandboxed_email
from dashboard.state import require_user, session_scope


def _audience(email_type_key: str) -> str:
    """Who a campaign went to: everyone who owes (a reminder), or one family (a receipt)."""
    email_type = EMAIL_TYPES.get(email_type_key)
    return "everyone who owes" if email_type is None or email_type.reminder else f"one family: {email_type.title.lower()}"


user = require_user()
st.title("Email history")

with session_scope() as session:
    campaigns = campaign_summaries(session, user)
    zone_name = league_zone(league_of(session, user))
if not campaigns:
    st.info("No email has been sent yet.")
    st.stop()

st.dataframe(
    pd.DataFrame([
        {
            "Campaign": c.id,
            "Started": format_local(c.started_at, zone_name),
            "By": c.started_by,
            "To": f"test to {c.test_address}" if c.is_test else _audience(c.email_type),
            "Status": c.status,
            "Sent": c.counts.get("sent", 0),
            "Failed": c.counts.get("failed", 0),
            "Skipped": c.counts.get("skipped", 0),
            "Queued": c.counts.get("pending", 0),
            "Sending or interrupted": c.counts.get("sending", 0),
        }
        for c in campaigns
    ]),
    hide_index=True, width="stretch", key="history_campaigns",
)

labels = {c.id: f"#{c.id} · {format_local(c.started_at, zone_name)} · "
                f"{'test to ' + c.test_address if c.test_address else 'everyone'}" for c in campaigns}
campaign_id = st.selectbox("Campaign", options=list(labels), format_func=labels.__getitem__, key="history_campaign")
with session_scope() as session:
    rows = campaign_report(session, user, campaign_id).rows
st.dataframe(
    pd.DataFrame([{"Family": r.parent_name, "To": r.to_address or "—", "Owes": r.amount, "Status": r.status,
                   "Sent at": format_local(r.sent_at, zone_name, seconds=True),
                   "Reason": r.reason or "", "Provider id": r.provider_message_id or ""} for r in rows]),
    hide_index=True, width="stretch", key="history_messages",
)

viewable = {r.id: f"{r.parent_name} — {r.status}" for r in rows if r.has_body}
if viewable:
    message_id = st.selectbox("Show the email sent to", options=list(viewable), format_func=viewable.__getitem__,
                              key="history_message")
    with session_scope() as session:
        message = get_message(session, user, message_id)
        subject, html_body, text_body = message.subject, message.html_body or "", message.text_body or ""
        to_address, message_id_header = message.to_address, message.message_id_header
    st.text(f"Subject: {subject}\nTo: {to_address}\nMessage-ID: {message_id_header}")
    sandboxed_email(html_body, title="Email as sent")
    with st.expander("Plain-text part"):
        st.code(text_body, language=None, wrap_lines=True)
