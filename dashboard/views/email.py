"""Email: preview a family's email, send a test, and send to everyone through the outbox."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st

from core.access.league_settings import settings_for_league
from core.access.permissions import ActingUser, Permission
from core.email.campaigns import Manifest, MessageRow, parents_to_email, preview_email, unfinished_campaigns
from core.email.outbox import DrainProgress
from core.email.presend import PaymentsNotSynced
from core.email.registry import OUTSTANDING_BALANCE
from core.email.sending import (
    ListChangedSinceReview,
    PreparedSend,
    campaign_report,
    prepare_send_to_everyone,
    record_decisions,
    resume_campaign,
    send_prepared,
    send_test,
)
from core.errors import BillingError
from core.money import format_cents
from core.payments.family_links import FamilyLinkMinting
from core.reporting.directory import league_of
from core.settings import PLACEHOLDER_EMAIL_ADDRESS, Settings, address_of
from core.words import plural
from dashboard.email_frame import sandboxed_email
from dashboard.state import require_user, services, session_scope, settings
from dashboard.text import plain

EMAIL_TYPE = OUTSTANDING_BALANCE
LAST_CAMPAIGN = "email_last_campaign"
PREPARED = "email_prepared_send"
CONFIRMING = "email_confirming_send"
SEND_REFUSED = "email_send_refused"
NOTICE = "email_send_notice"
SYNC_ACTION = "sync payments before sending"


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
        try:
            with services().email_backend(config) as backend:
                outcome = send_test(services().sessions, user, email_type=EMAIL_TYPE, test_address=address,
                                    parent_id=parent_id, backend=backend, email_from=config.email_from,
                                    family_links=_family_links(config))
        except BillingError as exc:
            st.error(str(exc), icon=":material/error:")
            return
        if outcome.result.sent:
            st.success(f"Test email sent to {address.strip()}.", icon=":material/check_circle:")
        else:
            rows = outcome.report.rows
            st.error(f"The test was not sent: {rows[0].reason if rows else 'unknown error'}", icon=":material/error:")


def _family_links(config: Settings) -> FamilyLinkMinting | None:
    """What minting the families' balance links needs, when Stripe is configured."""
    gateway = services().payment_gateway_if_configured(action="mint the families' balance links")
    return FamilyLinkMinting(gateway, config.payment_success_url) if gateway is not None else None


def _progress_bar() -> Callable[[DrainProgress], None]:
    bar = st.progress(0.0, text="Sending…")

    def show(progress: DrainProgress) -> None:
        bar.progress(min(1.0, progress.done / max(progress.total, 1)),
                     text=f"{progress.done} of {progress.total} · {progress.sent} sent · {progress.failed} failed")

    return show


def _resume(user: ActingUser, config: Settings, campaign_id: int, *, retry_failed: bool = False,
            send_again: tuple[str, ...] = ()) -> None:
    try:
        with services().email_backend(config) as backend:
            resume_campaign(services().sessions, user, campaign_id, backend=backend, email_from=config.email_from,
                            retry_failed=retry_failed, send_again=send_again,
                            progress=_progress_bar())
    except BillingError as exc:
        st.session_state[SEND_REFUSED] = str(exc)


def _stop_confirming() -> None:
    st.session_state.pop(CONFIRMING, None)


def _open_confirmation() -> None:
    st.session_state[CONFIRMING] = True
    st.session_state.pop(SEND_REFUSED, None)


def _finishing(prepared: PreparedSend) -> str:
    """The stopped sends this one finishes first, for the admin to read: "campaign #4, #7"."""
    return "campaign " + ", ".join(f"#{c.id}" for c in prepared.to_finish) if prepared.to_finish else ""


def _prepare(user: ActingUser, config: Settings) -> None:
    st.session_state.pop(SEND_REFUSED, None)
    st.session_state.pop(NOTICE, None)
    st.session_state.pop(PREPARED, None)
    app = services()
    try:
        st.session_state[PREPARED] = prepare_send_to_everyone(
            app.sessions, user, EMAIL_TYPE, cooldown_days=config.email_cooldown_days,
            gateway=app.payment_gateway_if_configured(action=SYNC_ACTION), backend_problem=lambda: app.email_backend_problem(config),
        )
    except BillingError as exc:  # a failed sync, or email that cannot go out: no list to send from
        st.session_state[SEND_REFUSED] = str(exc)


def _send_reviewed(user: ActingUser, config: Settings, prepared: PreparedSend) -> None:
    """Send what the admin reviewed; if the list changed meanwhile, show it as it is now instead."""
    app = services()
    try:
        with app.email_backend(config) as backend:
            outcome = send_prepared(
                app.sessions, user, prepared, reviewed=True, backend=backend, email_from=config.email_from,
                gateway=app.payment_gateway_if_configured(action=SYNC_ACTION), progress=_progress_bar(),
                family_links=_family_links(config),
            )
    except ListChangedSinceReview as changed:
        st.session_state[PREPARED] = changed.prepared
        st.session_state[SEND_REFUSED] = str(changed)
    except PaymentsNotSynced as exc:
        st.session_state.pop(PREPARED, None)  # the list shown was not synced: prepare again
        st.session_state[SEND_REFUSED] = str(exc)
    except BillingError as exc:
        st.session_state[SEND_REFUSED] = str(exc)
    else:
        runs = outcome.runs
        if runs:
            st.session_state[LAST_CAMPAIGN] = runs[-1].campaign_id
        if outcome.queued is None and prepared.manifest.count:
            st.session_state[NOTICE] = "Nothing new was queued: another send is emailing these families already."
        st.session_state.pop(PREPARED, None)


# Kept open across reruns by a session flag (not only by the click that opened it), so the
# confirmation survives a full rerun; closing it clears the flag.
@st.dialog("Send to everyone", width="medium", on_dismiss=_stop_confirming)
def _confirm_send(prepared: PreparedSend) -> None:
    reviewed = prepared.totals
    st.write(f"Email **{reviewed.count}** families, "
             f"**{format_cents(reviewed.total_cents, prepared.manifest.currency)}** owed in total?")
    if prepared.to_finish:
        st.write(f"First, {_finishing(prepared)} is finished: its run stopped before it had sent everything.")
    st.caption(f"Families emailed in the last {prepared.cooldown_days} days, opted out, without an address or "
               "owing nothing are skipped. Payments are synced once more first; if the list changed, "
               "nothing is sent. This cannot be undone.")
    left, right = st.columns(2)
    if right.button("Cancel", key="cancel_send", width="stretch"):
        _stop_confirming()
        st.rerun()
    if left.button("Yes, send now", key="confirm_send", type="primary", width="stretch"):
        _stop_confirming()
        user = require_user()
        _send_reviewed(user, league_config(user), prepared)
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
        report = campaign_report(session, user, campaign_id)
    counts = report.counts
    st.subheader(f"Campaign #{campaign_id}")
    if report.being_sent:
        st.info(f"{plural(report.being_sent, 'message')} {'is' if report.being_sent == 1 else 'are'} being sent by another run right now.",
                icon=":material/outgoing_mail:")
    columns = st.columns(5)
    for column, (status, count) in zip(columns, counts.items(), strict=True):
        column.metric(status.capitalize(), f"{count:,}")
    st.dataframe(
        pd.DataFrame([{"Family": r.parent_name, "To": r.to_address or "—", "Owes": r.amount, "Status": r.status,
                       "Reason": r.reason or ""} for r in report.rows]),
        hide_index=True, width="stretch", key="campaign_result",
    )
    if counts["failed"] and st.button(f"Retry {counts['failed']} failed", key="retry_failed", icon=":material/replay:"):
        _resume(user, config, campaign_id, retry_failed=True)
        st.rerun()
    if counts["pending"] and st.button(f"Send the {counts['pending']} still queued", key="resume_pending",
                                       icon=":material/play_arrow:"):
        _resume(user, config, campaign_id)
        st.rerun()
    if report.interrupted:
        _decide_interrupted(user, config, campaign_id, report.interrupted)


def _decide_interrupted(user: ActingUser, config: Settings, campaign_id: int, rows: tuple[MessageRow, ...]) -> None:
    st.warning(f"{plural(len(rows), 'message')} {'was' if len(rows) == 1 else 'were'} being sent when their run stopped: they may have been delivered. "
               "Look for each Message-ID in the sent mail, then say what happened. Nothing is sent again "
               "until you do.", icon=":material/warning:")
    st.dataframe(
        pd.DataFrame([{"Message": r.id, "Family": r.parent_name, "To": r.to_address or "—",
                       "Message-ID": r.message_id_header} for r in rows]),
        hide_index=True, width="stretch", key="awaiting_decision",
    )
    labels = {str(r.id): f"{r.parent_name} — {r.message_id_header}" for r in rows}
    chosen = st.multiselect("Messages", options=list(labels), default=[], format_func=labels.__getitem__,
                            key="decide_messages")
    left, right = st.columns(2)
    if left.button("It was sent", key="decide_was_sent", disabled=not chosen, icon=":material/done_all:"):
        try:
            record_decisions(services().sessions, user, campaign_id, was_sent=tuple(chosen))
        except BillingError as exc:
            st.session_state[SEND_REFUSED] = str(exc)
        st.rerun()
    if right.button("Send it again", key="decide_send_again", disabled=not chosen, icon=":material/forward_to_inbox:"):
        _resume(user, config, campaign_id, send_again=tuple(chosen))
        st.rerun()


def _send_tab(user: ActingUser, config: Settings) -> None:
    with session_scope() as session:
        unfinished = unfinished_campaigns(session, user)
    for campaign in unfinished:
        if campaign.id != st.session_state.get(LAST_CAMPAIGN):
            if campaign.sending_now:
                st.info(f"Campaign #{campaign.id} is being sent by another run right now: "
                        f"{campaign.counts.get('pending', 0)} still queued.", icon=":material/outgoing_mail:")
            else:
                st.warning(f"Campaign #{campaign.id} did not finish: {campaign.counts.get('pending', 0)} queued, "
                           f"{campaign.counts.get('sending', 0)} interrupted. A send to everyone finishes it first.",
                           icon=":material/pending:")
            if st.button(f"Open campaign #{campaign.id}", key=f"open_campaign_{campaign.id}"):
                st.session_state[LAST_CAMPAIGN] = campaign.id
                st.rerun()
    st.write("First the payments are brought in from Stripe (when it is configured), so nobody who paid is "
             "reminded; then you see who gets what before anything is sent.")
    cannot_send = config.email_from_problem() is not None  # said at the top of the page
    if st.button("Sync payments and prepare the send", key="prepare_send", icon=":material/sync:",
                 disabled=cannot_send):
        _prepare(user, config)
    if SEND_REFUSED in st.session_state:
        st.error(st.session_state[SEND_REFUSED], icon=":material/block:")
    if NOTICE in st.session_state:
        st.info(st.session_state[NOTICE], icon=":material/info:")
    prepared: PreparedSend | None = st.session_state.get(PREPARED)
    if prepared is not None:
        st.info(prepared.sync.note, icon=":material/info:")
        _manifest_tables(prepared.manifest)
        if prepared.manifest.count or prepared.to_finish:
            label = (f"Send {prepared.manifest.count} emails…" if prepared.manifest.count
                     else f"Finish {_finishing(prepared)}…")
            st.button(label, key="open_send_dialog", type="primary", icon=":material/send:",
                      on_click=_open_confirmation)
            if st.session_state.get(CONFIRMING):
                _confirm_send(prepared)
        else:
            _stop_confirming()
            st.success("Nobody needs an email right now.")
    campaign_id: int | None = st.session_state.get(LAST_CAMPAIGN)
    if campaign_id is not None:
        _result(user, config, campaign_id)


def league_config(user: ActingUser) -> Settings:
    """The settings this league sends with: its own sender address and cool-down, else the server's."""
    with session_scope() as session:
        return settings_for_league(league_of(session, user), settings())


def main() -> None:
    user = require_user()
    config = league_config(user)
    st.title("Email")
    where = f"files in {config.email_outbox_dir}" if config.email_backend == "file" else config.email_backend.upper()
    st.caption(f"The outstanding-balance email. Sending through: {where}.")
    sender_problem = config.email_from_problem()
    if sender_problem:
        st.error(f"Nothing can be sent yet: {plain(sender_problem)}", icon=":material/alternate_email:")
    elif address_of(config.email_from) == PLACEHOLDER_EMAIL_ADDRESS:
        st.warning(f"Emails go out from the placeholder address {PLACEHOLDER_EMAIL_ADDRESS}: fine for trying "
                   "the file outbox, but set the address your league sends from in League settings before "
                   "sending for real.", icon=":material/alternate_email:")
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
