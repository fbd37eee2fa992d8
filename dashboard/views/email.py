"""Email: preview a family's email, send a test, and send to everyone through the outbox."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st

from core.access.permissions import ActingUser, Permission
from core.composition import make_email_backend
from core.email.campaigns import (
    Manifest,
    ManifestChanged,
    ManifestTotals,
    build_manifest,
    campaign_summaries,
    message_rows,
    parents_to_email,
    preview_email,
    run_campaign,
    send_test_email,
    start_campaign,
)
from core.email.outbox import DrainProgress, DrainResult, retry_messages
from core.email.presend import PaymentsNotSynced, sync_payments_first
from core.email.registry import OUTSTANDING_BALANCE
from core.errors import InvalidInput
from core.money import format_cents
from core.settings import Settings
from dashboard.email_frame import sandboxed_email
from dashboard.state import data_changed, engine, require_user, session_scope, settings
from dashboard.text import plain

EMAIL_TYPE = OUTSTANDING_BALANCE
LAST_CAMPAIGN = "email_last_campaign"
PREPARED = "email_prepared_note"
CONFIRMING = "email_confirming_send"
REVIEWED = "email_reviewed_manifest"
SEND_REFUSED = "email_send_refused"


def _choices(user: ActingUser) -> dict[int, str]:
    with session_scope() as session:
        return {choice.parent_id: choice.label for choice in parents_to_email(session, user, EMAIL_TYPE)}


def _preview_tab(user: ActingUser, config: Settings, choices: dict[int, str]) -> None:
    if not choices:
        st.info("Nobody owes anything: there is no email to preview.")
        return
    parent_id = st.selectbox("Family", options=list(choices), format_func=choices.__getitem__, key="preview_parent")
    with session_scope() as session:
        preview = preview_email(session, user, parent_id=parent_id, email_type=EMAIL_TYPE, email_from=config.email_from)
    if preview.parent_email is None:
        st.warning("This family has no email address: a send to everyone skips them. A test send still works.")
    st.caption("Exactly the HTML that is sent, in a sandboxed frame. The Message-ID and Date are set when it is sent.")
    sandboxed_email(preview.rendered.html)
    with st.expander("Plain-text part"):
        st.code(preview.rendered.text, language=None, wrap_lines=True)
    with st.expander("Headers"):
        st.dataframe(pd.DataFrame(preview.headers, columns=["Header", "Value"]), hide_index=True, width="stretch")
    st.download_button(
        "Download as .eml", data=preview.raw, file_name=f"preview-parent-{parent_id}.eml",
        mime="message/rfc822", key="preview_download", icon=":material/download:",
    )


def _test_send_tab(user: ActingUser, config: Settings, choices: dict[int, str]) -> None:
    if not choices:
        st.info("Nobody owes anything: there is no email to test.")
        return
    st.write("Sends one family's real email to an address of yours, with **[TEST]** in the subject. "
             "It does not count as a reminder to the family.")
    parent_id = st.selectbox("Whose email", options=list(choices), format_func=choices.__getitem__, key="test_parent")
    address = st.text_input("Send the test to", key="test_address", placeholder="you@example.org")
    if st.button("Send test email", key="send_test", type="primary", icon=":material/send:",
                 disabled=config.email_from_problem() is not None):
        backend = make_email_backend(config)
        try:
            result = send_test_email(engine(), user, parent_id=parent_id, test_address=address,
                                     email_type=EMAIL_TYPE, backend=backend, email_from=config.email_from)
        except InvalidInput as exc:
            st.error(str(exc), icon=":material/error:")
            return
        finally:
            backend.close()
        data_changed()
        if result.sent:
            st.success(f"Test email sent to {address.strip()}.", icon=":material/check_circle:")
        else:
            with session_scope() as session:
                rows = message_rows(session, user, result.campaign_id)
            st.error(f"The test was not sent: {rows[0].reason if rows else 'unknown error'}", icon=":material/error:")


def _progress_bar() -> Callable[[DrainProgress], None]:
    bar = st.progress(0.0, text="Sending…")

    def show(progress: DrainProgress) -> None:
        bar.progress(min(1.0, progress.done / max(progress.total, 1)),
                     text=f"{progress.done} of {progress.total} · {progress.sent} sent · {progress.failed} failed")

    return show


def _run(user: ActingUser, config: Settings, campaign_id: int) -> DrainResult:
    backend = make_email_backend(config)
    try:
        return run_campaign(engine(), user, campaign_id, backend=backend, email_from=config.email_from,
                            progress=_progress_bar())
    finally:
        backend.close()
        data_changed()


def _stop_confirming() -> None:
    st.session_state.pop(CONFIRMING, None)
    st.session_state.pop(REVIEWED, None)


def _open_confirmation(reviewed: ManifestTotals, currency: str) -> None:
    # The figures the admin saw when they asked to send: confirming sends exactly those or nothing.
    st.session_state[REVIEWED] = (reviewed, currency)
    st.session_state[CONFIRMING] = True
    st.session_state.pop(SEND_REFUSED, None)


def _start_reviewed_send(user: ActingUser, config: Settings, reviewed: ManifestTotals) -> int | None:
    """Sync again, then queue the campaign only if it is what the admin reviewed; None if refused."""
    make_email_backend(config).close()  # a backend that cannot send refuses now, before anything is queued
    try:
        st.session_state[PREPARED] = sync_payments_first(engine(), user, settings=config).note
        with session_scope() as session:
            campaign = start_campaign(session, user, EMAIL_TYPE, email_from=config.email_from,
                                      cooldown_days=config.email_cooldown_days, expected=reviewed)
            return campaign.id
    except PaymentsNotSynced as exc:
        st.session_state.pop(PREPARED, None)  # the list shown was not synced: prepare again
        st.session_state[SEND_REFUSED] = str(exc)
        return None
    except ManifestChanged as exc:  # the page shows the list as it is now, to review again
        st.session_state[SEND_REFUSED] = str(exc)
        return None
    finally:
        data_changed()


# Kept open across reruns by a session flag (not only by the click that opened it), so the
# confirmation survives a full rerun; closing it clears the flag.
@st.dialog("Send to everyone", width="medium", on_dismiss=_stop_confirming)
def _confirm_send(reviewed: ManifestTotals, currency: str, cooldown_days: int) -> None:
    st.write(f"Email **{reviewed.count}** families, **{format_cents(reviewed.total_cents, currency)}** "
             "owed in total?")
    st.caption(f"Families emailed in the last {cooldown_days} days, opted out, without an address or "
               "owing nothing are skipped. Payments are synced once more first; if the list changed, "
               "nothing is sent. This cannot be undone.")
    left, right = st.columns(2)
    if right.button("Cancel", key="cancel_send", width="stretch"):
        _stop_confirming()
        st.rerun()
    if left.button("Yes, send now", key="confirm_send", type="primary", width="stretch"):
        _stop_confirming()
        user, config = require_user(), settings()
        campaign_id = _start_reviewed_send(user, config, reviewed)
        if campaign_id is not None:
            _run(user, config, campaign_id)
            st.session_state[LAST_CAMPAIGN] = campaign_id
            st.session_state.pop(PREPARED, None)
        st.rerun()


def _manifest_tables(manifest: Manifest) -> None:
    first, second, third = st.columns(3)
    first.metric("Emails to send", f"{manifest.count:,}")
    second.metric("Owed by them", manifest.total)
    third.metric("Families skipped", f"{len(manifest.skipped):,}")
    if manifest.recipients:
        st.dataframe(
            pd.DataFrame([{"Family": e.parent_name, "Email": e.email, "Items": e.line_items, "Owes": e.amount}
                          for e in manifest.recipients]),
            hide_index=True, width="stretch", key="manifest_recipients",
        )
    if manifest.skipped:
        st.caption("Skipped, and why: " + ", ".join(f"{reason} ({count})"
                                                    for reason, count in sorted(manifest.skip_counts.items())))
        st.dataframe(
            pd.DataFrame([{"Family": e.parent_name, "Email": e.email or "—", "Owes": e.amount, "Why skipped": e.skip_reason}
                          for e in manifest.skipped]),
            hide_index=True, width="stretch", key="manifest_skipped",
        )


def _result(user: ActingUser, config: Settings, campaign_id: int) -> None:
    with session_scope() as session:
        rows = message_rows(session, user, campaign_id)
    counts = {status: sum(1 for row in rows if row.status == status)
              for status in ("sent", "failed", "interrupted", "pending", "skipped")}
    sending = sum(1 for row in rows if row.status == "sending")
    st.subheader(f"Campaign #{campaign_id}")
    if sending:
        st.info(f"{sending} message(s) are being sent by another run right now.", icon=":material/outgoing_mail:")
    columns = st.columns(5)
    for column, (status, count) in zip(columns, counts.items()):
        column.metric(status.capitalize(), f"{count:,}")
    st.dataframe(
        pd.DataFrame([{"Family": r.parent_name, "To": r.to_address or "—", "Owes": r.amount, "Status": r.status,
                       "Reason": r.reason or ""} for r in rows]),
        hide_index=True, width="stretch", key="campaign_result",
    )
    if counts["failed"] and st.button(f"Retry {counts['failed']} failed", key="retry_failed", icon=":material/replay:"):
        with session_scope() as session:
            retry_messages(session, user, campaign_id)
        _run(user, config, campaign_id)
        st.rerun()
    if counts["pending"] and st.button(f"Send the {counts['pending']} still queued", key="resume_pending",
                                       icon=":material/play_arrow:"):
        _run(user, config, campaign_id)
        st.rerun()
    if counts["interrupted"]:
        st.warning(f"{counts['interrupted']} message(s) were being sent when the run stopped: they may have been "
                   "delivered. Check before sending them again.", icon=":material/warning:")
        checked = st.checkbox("I checked: these families did not get the email", key="confirm_interrupted")
        if st.button("Send interrupted again", key="retry_interrupted", disabled=not checked):
            with session_scope() as session:
                retry_messages(session, user, campaign_id, failed=False, interrupted=True)
            _run(user, config, campaign_id)
            st.rerun()


def _send_tab(user: ActingUser, config: Settings) -> None:
    with session_scope() as session:
        unfinished = [c for c in campaign_summaries(session, user, limit=20) if c.unfinished and not c.is_test]
    for campaign in unfinished:
        if campaign.id != st.session_state.get(LAST_CAMPAIGN):
            st.warning(f"Campaign #{campaign.id} did not finish: {campaign.counts.get('pending', 0)} queued, "
                       f"{campaign.counts.get('sending', 0)} being sent or interrupted.", icon=":material/pending:")
            if st.button(f"Open campaign #{campaign.id}", key=f"open_campaign_{campaign.id}"):
                st.session_state[LAST_CAMPAIGN] = campaign.id
                st.rerun()
    st.write("First the payments are brought in from Stripe (when it is configured), so nobody who paid is "
             "reminded; then you see who gets what before anything is sent.")
    cannot_send = config.email_from_problem() is not None  # said at the top of the page
    if st.button("Sync payments and prepare the send", key="prepare_send", icon=":material/sync:",
                 disabled=cannot_send):
        st.session_state.pop(SEND_REFUSED, None)
        try:
            st.session_state[PREPARED] = sync_payments_first(engine(), user, settings=config).note
        except PaymentsNotSynced as exc:
            st.session_state.pop(PREPARED, None)
            st.session_state[SEND_REFUSED] = str(exc)
        data_changed()
    if SEND_REFUSED in st.session_state:
        st.error(st.session_state[SEND_REFUSED], icon=":material/block:")
    if PREPARED in st.session_state:
        st.info(st.session_state[PREPARED], icon=":material/info:")
        with session_scope() as session:
            manifest = build_manifest(session, user, EMAIL_TYPE, cooldown_days=config.email_cooldown_days)
        _manifest_tables(manifest)
        if manifest.count:
            st.button(f"Send {manifest.count} emails…", key="open_send_dialog", type="primary",
                      icon=":material/send:", on_click=_open_confirmation, args=(manifest.totals, manifest.currency))
            if st.session_state.get(CONFIRMING) and REVIEWED in st.session_state:
                reviewed, currency = st.session_state[REVIEWED]
                _confirm_send(reviewed, currency, config.email_cooldown_days)
        else:
            _stop_confirming()
            st.success("Nobody needs an email right now.")
    campaign_id: int | None = st.session_state.get(LAST_CAMPAIGN)
    if campaign_id is not None:
        _result(user, config, campaign_id)


def main() -> None:
    user = require_user()
    config = settings()
    st.title("Email")
    where = f"files in {config.email_outbox_dir}" if config.email_backend == "file" else config.email_backend.upper()
    st.caption(f"The outstanding-balance email. Sending through: {where}.")
    sender_problem = config.email_from_problem()
    if sender_problem:
        st.error(f"Nothing can be sent yet: {plain(sender_problem)}", icon=":material/alternate_email:")
    choices = _choices(user)
    preview, test, everyone = st.tabs(["Preview", "Test send", "Send to everyone"])
    with preview:
        _preview_tab(user, config, choices)
    with test:
        _test_send_tab(user, config, choices)
    with everyone:
        if user.can(Permission.SEND_EMAIL):
            _send_tab(user, config)


main()
