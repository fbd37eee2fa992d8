"""Sync from Stripe: payments, failures, refunds and disputes from Stripe's events; the full
sweep's comparison of the ledger with Stripe; withdrawn players' links switched off."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import streamlit as st

from core.access.league_settings import settings_for_league
from core.access.permissions import ActingUser
from core.money import format_cents
from core.payments.family_links import FamilyLinkMinting
from core.payments.flags import SyncFlag, payment_flags
from core.payments.sync import SyncProgress, SyncResult, sync_payments
from core.reporting.directory import league_of
from core.timezones import format_local, league_zone
from core.words import plural
from dashboard.state import require_user, services, session_scope, settings

RESULT_KEY = "payment_sync_result"


def _when(moment: datetime | None, zone_name: str) -> str:
    return format_local(moment, zone_name, missing="never")


def _not_configured() -> None:
    st.warning(
        "Stripe is not configured, so payments cannot be synced. Set **STRIPE_API_KEY** (a secret key, "
        "`sk_test_…` for test mode) in the server's environment or in `.streamlit/secrets.toml`, then reload "
        "this page. For a local Stripe stand-in, also set **STRIPE_API_BASE** to its address.",
        icon=":material/key_off:",
    )


def _run(user: ActingUser, *, full: bool) -> SyncResult:
    gateway = services().payment_gateway(action="sync payments")
    bar = st.progress(0.0, text="Asking Stripe…")

    def show(progress: SyncProgress) -> None:
        fraction = progress.fraction
        counted = f"{progress.done:,} of {progress.total:,}" if progress.total else f"{progress.done:,} so far"
        bar.progress(fraction if fraction is not None else 0.0, text=f"{progress.phase}: {counted}")

    with session_scope() as session:
        success_url = settings_for_league(league_of(session, user), settings()).payment_success_url
    # As the command line does: the balance links of families whose balance the sync changed
    # are replaced at the new balance.
    result = sync_payments(services().sessions, user, gateway, full=full, progress=show,
                           family_links=FamilyLinkMinting(gateway, success_url))
    bar.empty()
    return result


def _summary(user: ActingUser, result: SyncResult, zone_name: str) -> None:
    if result.errors:
        st.error(
            f"The check did not finish ({plural(len(result.errors), 'problem')}). "
            "Everything it recorded is kept; check again to finish.\n\n"
            + "\n".join(f"- {error}" for error in result.errors[:10]),
            icon=":material/error:",
        )
    elif result.new_flags:
        count = len(result.new_flags)
        st.warning(f"Checked. {plural(count, 'payment')} {'needs' if count == 1 else 'need'} a look (below).",
                   icon=":material/flag:")
    else:
        st.success(f"Checked at {_when(result.synced_at, zone_name)}.", icon=":material/check_circle:")
    first, second, third, fourth = st.columns(4)
    first.metric("New payments since the last check", f"{result.paid_count:,}", format_cents(result.paid_cents, result.currency),
                 delta_color="off", delta_arrow="off")
    second.metric("Still owed", f"{result.still_owed_count:,}",
                  format_cents(result.still_owed_cents, result.currency), delta_color="off", delta_arrow="off")
    third.metric("Processing", f"{result.processing_count:,}")
    fourth.metric("To look at", f"{len(result.flags):,}")
    _flagged(user, result, zone_name)
    if result.paid:
        st.subheader("Recorded as paid")
        st.dataframe(pd.DataFrame([
            {
                "Player": payment.player_name,
                "Item": payment.product_name,
                "Paid": "unknown" if payment.amount_cents is None
                else format_cents(payment.amount_cents, payment.currency),
                "Paid at": _when(payment.paid_at, zone_name),
            }
            for payment in result.paid
        ]), hide_index=True, width="stretch")
    if result.failed:
        st.subheader("Payments that failed (owed again)")
        st.dataframe(pd.DataFrame([
            {"Player": failed.player_name, "Item": failed.product_name, "Checkout Session": failed.checkout_session_id}
            for failed in result.failed
        ]), hide_index=True, width="stretch")
    if result.refunds:
        st.subheader("Refunds made in Stripe, recorded in the ledger")
        st.dataframe(pd.DataFrame([
            {"Family": refund.parent_name, "Refunded": format_cents(refund.amount_cents, refund.currency),
             "Payment": refund.payment_id, "Stripe refund": refund.stripe_refund_id}
            for refund in result.refunds
        ]), hide_index=True, width="stretch")
    if result.full:
        _differences(result)
    if result.deactivated:
        st.subheader("Switched off in Stripe (withdrawn players)")
        st.dataframe(pd.DataFrame([
            {"Player": link.player_name, "Item": link.product_name, "Stripe link": link.stripe_payment_link_id}
            for link in result.deactivated
        ]), hide_index=True, width="stretch")


def _differences(result: SyncResult) -> None:
    """The full sweep's comparison of the ledger with Stripe: every difference, or that they agree."""
    st.subheader("Ledger and Stripe")
    if not result.differences:
        if result.ok:
            st.success("The ledger and Stripe agree.", icon=":material/balance:")
        return
    count = len(result.differences)
    st.warning(f"{plural(count, 'difference')} between the ledger and Stripe.",
               icon=":material/difference:")
    st.dataframe(pd.DataFrame([
        {"Difference": difference.kind.label, "Detail": difference.message,
         "Payment": difference.payment_id or "—", "Checkout Session": difference.checkout_session_id}
        for difference in result.differences
    ]), hide_index=True, width="stretch")


def _flagged(user: ActingUser, result: SyncResult | None, zone_name: str) -> None:
    """The payments that need a look, as recorded; those this check recorded first are "new"."""
    with session_scope() as session:
        flags = payment_flags(session, user)
    if not flags:
        return
    new = {flag.key for flag in result.new_flags} if result is not None else set()

    def reported(flag: SyncFlag) -> str:
        return "new" if flag.key in new else f"since {_when(flag.flagged_at, zone_name)}"

    st.subheader("Payments and disputes to look at")
    st.dataframe(pd.DataFrame([
        {
            "Why": flag.kind.label,
            "Player": flag.player_name or "—",
            "Item": flag.product_name or "—",
            "Detail": flag.message,
            "Checkout Session": flag.checkout_session_id,
            "Reported": reported(flag),
        }
        for flag in flags
    ]), hide_index=True, width="stretch")


def _league(user: ActingUser) -> tuple[str, datetime | None, str]:
    with session_scope() as session:
        league = league_of(session, user)
        return league.name, league.payments_synced_at, league_zone(league)


def main() -> None:
    user = require_user()
    league_name, _, zone_name = _league(user)
    st.title("Sync from Stripe")
    st.caption(league_name)
    st.write(
        "Asks Stripe what happened since the last check: new payments through the links, delayed payments "
        "that settled or failed (what a failed one paid is owed again), refunds made in Stripe's dashboard, "
        "and disputes; switches off the links of withdrawn players. Families who paid then drop out of the "
        "balances and of reminder emails."
    )
    last_synced = st.empty()  # filled after a sync below may have moved it
    if not settings().stripe_configured:
        last_synced.caption(f"Last checked with Stripe: {_when(_league(user)[1], zone_name)}.")
        _not_configured()
        return
    full = st.toggle(
        "Check every link one by one and compare the ledger with Stripe (for the first check, payments older "
        "than the 30 days of events Stripe keeps, or an audit; slower: about 24 links a second)",
        key="sync_full",
    )
    if st.button("Check for new payments", key="sync_run", type="primary", icon=":material/sync:"):
        st.session_state[RESULT_KEY] = _run(user, full=full)
    last_synced.caption(f"Last checked with Stripe: {_when(_league(user)[1], zone_name)}.")
    result = st.session_state.get(RESULT_KEY)
    if isinstance(result, SyncResult):
        _summary(user, result, zone_name)
    else:
        _flagged(user, None, zone_name)  # found by earlier checks: recorded, so shown on every visit


main()
