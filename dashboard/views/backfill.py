"""Create payment links (admin): the backfill plan, dry run by default, commit with confirmation."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from core.access.league_settings import EffectiveSettings, effective_settings
from core.access.permissions import ActingUser, Permission, require
from core.backfill import (
    BackfillPlan,
    BackfillPreflight,
    BackfillResult,
    ItemOutcome,
    PreflightKind,
    backfill_preflight,
    commit_backfill,
    describe_totals,
    plan_backfill,
    plan_rows,
    switch_off_rows,
)
from core.backfill.presentation import CREATES_A_LINK, STATUS_WORDS
from core.money import format_cents
from core.reporting.directory import league_of
from core.words import plural
from dashboard.state import require_user, services, session_scope, settings
from dashboard.text import plain

RESULT_KEY = "backfill_last_result"


def _plan(user: ActingUser) -> BackfillPlan:
    with session_scope() as session:
        return plan_backfill(session, user)


def _headline(plan: BackfillPlan) -> None:
    totals = plan.totals
    first, second, third, fourth, fifth = st.columns(5)
    first.metric("Payment links to create", f"{totals.links_to_mint:,}")
    second.metric("Amount they bill", format_cents(totals.amount_to_mint_cents, totals.currency))
    third.metric(
        "Price changes", f"{totals.links_to_replace:,}",
        help="Links at an old default price, replaced by a new link at the new price; the old link is deactivated.",
    )
    fourth.metric("Prices to create in Stripe", f"{totals.prices_to_create:,}",
                  help="Each amount a product is billed at is a price in Stripe; a new amount needs a new one.")
    fifth.metric("Already have a link or paid", f"{totals.already_linked + totals.already_paid:,}")
    st.caption(plain(describe_totals(totals)))  # amounts: "$" pairs must not turn into maths


def _pending_switch_offs(plan: BackfillPlan) -> None:
    if not plan.pending_switch_offs:
        return
    count = len(plan.pending_switch_offs)
    st.warning(f"{plural(count, 'old link')} {'is' if count == 1 else 'are'} deactivated here but still active in "
               "Stripe: an "
               "earlier run could not switch them off. Creating links (turn the dry run off) switches them off "
               "first.",
               icon=":material/link_off:")
    st.dataframe(pd.DataFrame(switch_off_rows(plan)), hide_index=True, width="stretch",
                 key="backfill_pending_switch_offs")


def _plan_table(plan: BackfillPlan) -> None:
    rows = plan_rows(plan)
    if not rows:
        st.info("No signed player owes anything: there is nothing to plan.")
        return
    only_to_mint = st.checkbox("Show only the links to create", key="backfill_only_to_mint")
    frame = pd.DataFrame(rows)
    if only_to_mint:
        frame = frame[frame["To do"].isin(CREATES_A_LINK)]
    st.dataframe(frame, hide_index=True, width="stretch", key="backfill_plan_table")


def _show_preflight(preflight: BackfillPreflight) -> bool:
    """Say what the preflight found (a dry run: what minting would say); False when it stops minting."""
    for note in preflight.notes:
        if note.kind is PreflightKind.STRIPE_NOT_CONFIGURED:
            st.warning(f"{note.message} Then reload this page.", icon=":material/key_off:")
        elif note.stops_commit:
            st.error(note.message, icon=":material/link_off:")
        else:
            st.warning(note.message, icon=":material/link:")
    return preflight.ok


def _in_force(user: ActingUser) -> EffectiveSettings:
    """The league's settings in force: its own thank-you page, else the configured one."""
    with session_scope() as session:
        return effective_settings(league_of(session, user), settings())


def _commit_controls(user: ActingUser, plan: BackfillPlan) -> bool:
    """Confirmation and the Create button; returns True when links were created in this run."""
    in_force = _in_force(user)
    if not _show_preflight(backfill_preflight(settings(), plan, commit=True, in_force=in_force)):
        return False
    totals = plan.totals
    if not plan.has_work:
        st.success("Every signed player already has their payment links. There is nothing to create.")
        return False
    if plan.to_change:
        label = (f"Create {plural(totals.links_to_mint, 'payment link')} in Stripe, billing "
                 f"{format_cents(totals.amount_to_mint_cents, totals.currency)} in total")
        if totals.links_to_switch_off:
            label += f", and switch off {plural(totals.links_to_switch_off, 'old link')} an earlier run left on"
    else:
        label = f"Switch off in Stripe the {plural(totals.links_to_switch_off, 'old link')} an earlier run left on"
    if totals.links_to_replace:
        label += (f", and replace {totals.links_to_replace:,} at a new price "
                  f"({format_cents(totals.replaced_from_cents, totals.currency)} → "
                  f"{format_cents(totals.replaced_to_cents, totals.currency)}; the old links are deactivated)")
    confirmed = st.checkbox(plain(label), key="backfill_confirm")
    if not st.button("Create payment links", type="primary", disabled=not confirmed, key="backfill_commit"):
        return False
    bar = st.progress(0.0, text="Starting…")

    def progress(done: int, total: int, outcome: ItemOutcome) -> None:
        item = outcome.item
        bar.progress(done / total, text=f"{done:,} of {total:,}: {plain(item.player_name)} — "
                                        f"{plain(item.product_name)} ({STATUS_WORDS[outcome.status]})")

    gateway = services().payment_gateway(action="create payment links")
    result = commit_backfill(services().sessions, user, gateway, plan, success_url=in_force.payment_success_url.value,
                             progress=progress, family_links=True)
    st.session_state[RESULT_KEY] = _result_view(result)
    return True


def _result_view(result: BackfillResult) -> dict[str, Any]:
    return {
        "summary": result.summary(),
        "failures": [
            {"Player": o.item.player_name, "Parent": o.item.parent_name, "Product": o.item.product_name,
             "Amount": o.item.amount_text, "Reason": o.reason}
            for o in result.failed
        ],
        "old_links_still_active": [
            {"Player": o.link.player_name, "Parent": o.link.parent_name, "Product": o.link.product_name,
             "Old Stripe link": o.stripe_payment_link_id, "Reason": o.reason}
            for o in result.old_links_still_active
        ],
    }


def _last_result() -> None:
    view = st.session_state.get(RESULT_KEY)
    if not view:
        return
    if view["failures"]:
        st.error(f"Last run: {view['summary']}. These links could not be created; fix the cause and "
                 "create them again (links already made are kept).", icon=":material/error:")
        st.dataframe(pd.DataFrame(view["failures"]), hide_index=True, width="stretch",
                     key="backfill_failures")
    if view.get("old_links_still_active"):
        lead = "" if view["failures"] else f"Last run: {view['summary']}. "
        st.error(f"{lead}These links are deactivated here, but Stripe could not switch them off: someone with "
                 "the address can still pay through them. The next run tries again; or deactivate them in "
                 "the Stripe dashboard.", icon=":material/link_off:")
        st.dataframe(pd.DataFrame(view["old_links_still_active"]), hide_index=True, width="stretch",
                     key="backfill_old_links_still_active")
    if not view["failures"] and not view.get("old_links_still_active"):
        st.success(f"Last run: {view['summary']}.", icon=":material/check_circle:")


def main() -> None:
    user = require(require_user(), Permission.MINT_LINKS)
    st.title("Create payment links")
    st.caption(
        "Families pay through payment links: one per required product and per pending order of every "
        "signed player, made in Stripe. Links that exist are left alone, so this is safe to run again; "
        "when a product's price changes, its links are replaced by new ones at the new price and the "
        "old ones switched off."
    )
    plan = _plan(user)
    dry_run = st.toggle("Dry run: show the plan, change nothing", value=True, key="backfill_dry_run")
    if dry_run:
        st.info("Dry run: nothing is changed. Turn the dry run off to create the links below.",
                icon=":material/visibility:")
        _show_preflight(backfill_preflight(settings(), plan, commit=False, in_force=_in_force(user)))
    elif _commit_controls(user, plan):
        # Drawn again from the new plan: the confirmation ticked for this run is not left armed.
        st.session_state.pop("backfill_confirm", None)
        st.rerun()
    _last_result()
    _headline(plan)
    _pending_switch_offs(plan)
    _plan_table(plan)


main()
