"""A family's page: the statement, what is open, their contact details, and the treasurer's tools.

The statement is ``core.ledger.statement.family_statement``. Every change (a payment, an
adjustment, a reversal, a refund) runs through ``core.ledger.workflows.apply_ledger_change``
with the same ``core`` write the command line uses, and the page only presents its outcome;
the receipt email is ``core.email.payment_received``. Nothing here is cached: after a change
the statement and the Outstanding balances page read the ledger again.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st
from sqlalchemy.orm import Session

from core.access.league_settings import settings_for_league
from core.access.permissions import ActingUser, Permission
from core.email.opt_out import set_email_opt_out
from core.email.payment_received import preview_receipt, send_receipt
from core.errors import BillingError, EmailDeliveryError
from core.ledger.amounts import parse_amount
from core.ledger.entries import LedgerChange, league_today, record_adjustment, record_payment, reverse_entry
from core.ledger.refunds import run_refund
from core.ledger.statement import Statement, StatementLine, family_statement, statement_csv
from core.ledger.words import ADJUSTMENT, KIND, REDUCTION_NAMES
from core.ledger.workflows import LedgerOutcome, apply_ledger_change
from core.models import LedgerEntryKind, PaymentMethod
from core.reporting.directory import families_named, league_of
from core.settings import Settings
from dashboard.email_frame import sandboxed_email
from dashboard.family_link import FAMILY_PARAM
from dashboard.state import require_user, services, session_scope, settings
from dashboard.text import plain

DONE = "family_done"  # (parent id, what the last change did), shown after the rerun it starts
RECEIPT_FOR = "family_receipt_payment"  # (parent id, payment id) whose receipt the page offers
METHODS = {"cash": PaymentMethod.CASH, "check": PaymentMethod.CHECK, "bank transfer": PaymentMethod.BANK,
           "other": PaymentMethod.OTHER}
SWITCH_OFF_ACTION = "switch off the payment links of what is no longer owed"


# -- choosing the family --------------------------------------------------------------------------


def _chosen_family(user: ActingUser) -> int | None:
    raw = st.query_params.get(FAMILY_PARAM, "")
    current = int(raw) if raw.isdigit() else None
    left, right = st.columns([2, 3])
    search = left.text_input("Find a family", key="family_search", placeholder="e.g. O'Brien")
    with session_scope() as session:
        choices = {choice.id: choice.label for choice in families_named(session, user, search, first=current)}
    if not choices:
        right.info("No family of this league has that name.")
        return None
    options = list(choices)
    picked = right.selectbox(
        "Family", options=options, format_func=choices.__getitem__, key=f"family_pick_{current}",
        index=options.index(current) if current in choices else None, placeholder="Choose a family",
    )
    if picked is not None and picked != current:
        st.query_params[FAMILY_PARAM] = str(picked)
    return picked


# -- what the page shows --------------------------------------------------------------------------


def _header(user: ActingUser, statement: Statement) -> None:
    st.header(plain(statement.parent_name), anchor=False)
    if user.can(Permission.VIEW_CONTACT_DETAILS):
        email = plain(statement.parent_email) if statement.parent_email else "no email on file"
        reminders = "gets no reminder emails (opted out)" if statement.email_opt_out else "gets reminder emails"
        st.caption(f"Email: {email} · {reminders}")
    first, second, third = st.columns(3)
    if statement.balance_cents >= 0:
        first.metric("Balance owed", statement.money(statement.balance_cents))
    else:
        first.metric("Credit", statement.money(-statement.balance_cents))
    open_items = [item for item in statement.open.items if not item.processing] if statement.open else []
    second.metric("Open charges", f"{len(open_items)}")
    third.metric("Processing", statement.money(statement.processing_cents),
                 help="Paid through a bank payment that has not settled yet: not counted as owed.")
    if statement.credit_cents > 0:
        st.warning(
            f"{statement.money(statement.credit_cents)} more than was owed has been paid: it is this family's "
            "credit. Refund it (the Refund tab) or keep it: it settles their next charge.",
            icon=":material/savings:",
        )


def _opt_out(user: ActingUser, statement: Statement) -> None:
    if not user.can(Permission.MANAGE_EMAIL_PREFERENCES):
        return
    label = "Send reminder emails again" if statement.email_opt_out else "Stop reminder emails to this family"
    if st.button(label, key="family_opt_out", icon=":material/unsubscribe:"):
        with session_scope() as session:
            change = set_email_opt_out(session, user, statement.parent_id, opted_out=not statement.email_opt_out)
        _done(statement.parent_id, (
            f"{change.parent_name} will get no more reminder emails (they stay in the balances)."
            if change.opted_out else f"{change.parent_name} will get reminder emails again."
        ) + " Recorded in the audit log.")


def _open_charges(statement: Statement) -> None:
    st.subheader("What is open", anchor=False)
    if statement.open is None or not statement.open.items:
        st.caption("Nothing is open: this family owes nothing.")
        return
    st.dataframe(pd.DataFrame([
        {"Charge": item.charge_id, "Player": item.player_name, "Item": item.product_name,
         "Due": item.due_on.isoformat() if item.due_on else "", "Open": statement.money(item.amount_cents),
         "Status": "processing" if item.processing else "owed"}
        for item in statement.open.items
    ]), hide_index=True, width="stretch")


def _statement_table(user: ActingUser, statement: Statement) -> None:
    st.subheader("Statement", anchor=False)
    if not statement.lines:
        st.caption("No charge, payment or adjustment yet.")
        return
    st.dataframe(pd.DataFrame([
        {"Date": line.on.isoformat(), "Entry": line.entry_id, "Kind": KIND[line.kind],
         "Description": line.description, "Player": line.player_name or "", "Reference": line.reference or "",
         "State": line.state or "", "Amount": statement.money(line.amount_cents),
         "Balance": statement.money(line.balance_cents),
         "Reversed by": f"entry {line.reversed_by}" if line.reversed_by else "", "Note": line.note or "",
         "Recorded by": line.recorded_by}
        for line in statement.lines
    ]), hide_index=True, width="stretch", key="family_statement")

    def csv() -> bytes:
        with session_scope() as session:
            return statement_csv(session, user, statement.parent_id)

    st.download_button("Download the statement (CSV)", data=csv, file_name=f"statement-{statement.parent_id}.csv",
                       mime="text/csv", key="family_statement_csv", icon=":material/download:")


# -- the changes ----------------------------------------------------------------------------------


def _apply(user: ActingUser, parent_id: int, write: Callable[[Session], LedgerChange], *,
           form_fields: tuple[str, ...], offer_receipt: bool = False) -> None:
    """Run one ledger change through the one workflow; say what it did on the next run."""
    gateway = services().payment_gateway_if_configured(action=SWITCH_OFF_ACTION)
    _run(parent_id, lambda: apply_ledger_change(services().sessions, user, write, gateway=gateway),
         form_fields=form_fields, offer_receipt=offer_receipt)


def _run(parent_id: int, change: Callable[[], LedgerOutcome], *, form_fields: tuple[str, ...],
         offer_receipt: bool = False) -> None:
    """Make a ledger change (``change`` commits it) and say what it did on the next run.

    Once it is recorded, the form's ``form_fields`` are emptied, so a second click of the same
    button records nothing twice; after an error they keep what was typed, to correct it.
    """
    try:
        outcome = change()
    except BillingError as problem:
        st.error(f"{problem} Nothing was recorded.", icon=":material/error:")
        return
    for key in form_fields:
        st.session_state.pop(key, None)
    if offer_receipt:
        st.session_state[RECEIPT_FOR] = (parent_id, outcome.change.entry_id)
    _done(parent_id, *_outcome_words(outcome))


def _outcome_words(outcome: LedgerOutcome) -> tuple[str, str | None]:
    """What the change did, and a warning when links it retired are still on in Stripe."""
    change = outcome.change
    words = f"{change.summary}. Entry {change.entry_id}; {change.parent_name} now {outcome.balance}."
    if outcome.switched_off is not None and outcome.switched_off.switched_off:
        words += f" {len(outcome.switched_off.switched_off)} payment link(s) no longer owed were switched off in Stripe."
    warning = None
    if outcome.links_still_on:
        why = "" if services().stripe_configured else " (Stripe is not configured here)"
        warning = (f"{outcome.links_still_on} payment link(s) of what is no longer owed could not be switched off "
                   f"in Stripe{why}: they are retired here and the next backfill switches them off. Until then "
                   "the family could still pay through them.")
    return words, warning


def _done(parent_id: int, words: str, warning: str | None = None) -> None:
    st.session_state[DONE] = (parent_id, words, warning)
    st.rerun()


def _amount(text: str, statement: Statement) -> int | None:
    try:
        return parse_amount(text, currency=statement.currency)
    except BillingError as problem:
        st.error(f"{problem} Nothing was recorded.", icon=":material/error:")
        return None


def _open_charge_labels(statement: Statement) -> dict[int, str]:
    items = statement.open.items if statement.open else ()
    return {item.charge_id: f"{item.product_name} for {item.player_name} — {statement.money(item.amount_cents)} "
                            f"open" + (f" (due {item.due_on.isoformat()})" if item.due_on else "")
            for item in items if item.charge_id is not None and not item.processing}


def _payment_form(user: ActingUser, statement: Statement) -> None:
    charges = _open_charge_labels(statement)
    with session_scope() as session:
        today = league_today(session, user)  # the league's day, not the server's
    with st.form("record_payment", clear_on_submit=False):
        left, middle, right = st.columns(3)
        amount = left.text_input("Amount", key="payment_amount", placeholder="175.00")
        method = middle.selectbox("Method", options=list(METHODS), key="payment_method")
        received = right.date_input("Received on", value=today, max_value=today, key="payment_on")
        reference = left.text_input("Reference", key="payment_reference", placeholder="check number, bank reference")
        note = middle.text_input("Note", key="payment_note")
        chosen = st.multiselect("Settles (optional; otherwise the oldest due first)", options=list(charges),
                                format_func=charges.__getitem__, key="payment_charges")
        submitted = st.form_submit_button("Record the payment", icon=":material/payments:")
    if not submitted:
        return
    cents = _amount(amount, statement)
    if cents is None:
        return
    _apply(user, statement.parent_id, lambda session: record_payment(
        session, user, parent_id=statement.parent_id, amount_cents=cents, method=METHODS[method],
        received_on=received, reference=reference, note=note, charge_ids=chosen,
    ), form_fields=("payment_amount", "payment_reference", "payment_note", "payment_charges"), offer_receipt=True)


def _adjust_form(user: ActingUser, statement: Statement) -> None:
    charges = _open_charge_labels(statement)
    kinds = {ADJUSTMENT[kind]: kind for kind in REDUCTION_NAMES.values()}
    with st.form("adjust"):
        left, middle = st.columns(2)
        kind = left.selectbox("Kind", options=list(kinds), key="adjust_kind")
        amount = middle.text_input("Amount", key="adjust_amount", placeholder="25.00")
        charge = st.selectbox("On charge (optional; otherwise spread over the oldest due first)",
                              options=list(charges), format_func=charges.__getitem__, index=None,
                              key="adjust_charge", placeholder="The oldest due first")
        reason = st.text_input("Reason", key="adjust_reason", placeholder="sibling discount")
        submitted = st.form_submit_button("Record the adjustment", icon=":material/sell:")
    if not submitted:
        return
    cents = _amount(amount, statement)
    if cents is None:
        return
    _apply(user, statement.parent_id, lambda session: record_adjustment(
        session, user, parent_id=statement.parent_id, amount_cents=cents, kind=kinds[kind], reason=reason,
        charge_id=charge,
    ), form_fields=("adjust_amount", "adjust_charge", "adjust_reason"))


def _reversible(statement: Statement) -> dict[int, str]:
    return {line.entry_id: f"entry {line.entry_id} · {line.on.isoformat()} · {line.description} "
                           f"({statement.money(line.amount_cents)})"
            for line in reversed(statement.lines)
            if line.reversed_by is None and line.kind is not LedgerEntryKind.REVERSAL}


def _reverse_form(user: ActingUser, statement: Statement) -> None:
    entries = _reversible(statement)
    if not entries:
        st.caption("There is no entry to reverse.")
        return
    with st.form("reverse"):
        entry = st.selectbox("Entry", options=list(entries), format_func=entries.__getitem__, key="reverse_entry")
        reason = st.text_input("Reason", key="reverse_reason", placeholder="recorded for the wrong family")
        st.caption("Nothing is edited or deleted: the reversal is an entry of its own, with your reason.")
        submitted = st.form_submit_button("Reverse the entry", icon=":material/undo:")
    if submitted and entry is not None:
        _apply(user, statement.parent_id,
               lambda session: reverse_entry(session, user, entry_id=entry, reason=reason),
               form_fields=("reverse_entry", "reverse_reason"))


def _payments(statement: Statement) -> dict[int, StatementLine]:
    return {line.entry_id: line for line in reversed(statement.lines)
            if line.kind is LedgerEntryKind.PAYMENT and line.reversed_by is None and line.state == "settled"}


def _refund_form(user: ActingUser, statement: Statement) -> None:
    payments = _payments(statement)
    if not payments:
        st.caption("There is no settled payment to refund.")
        return
    stripe_ready = services().stripe_configured
    with st.form("refund"):
        payment = st.selectbox(
            "Payment", options=list(payments), key="refund_payment",
            format_func=lambda p: f"entry {p} · {payments[p].on.isoformat()} · {payments[p].description}",
        )
        left, right = st.columns(2)
        amount = left.text_input("Amount", key="refund_amount", placeholder="50.00")
        reason = right.text_input("Reason", key="refund_reason", placeholder="paid twice")
        outside = st.checkbox("The money was already given back outside Stripe (check, cash, the Stripe dashboard)",
                              key="refund_outside")
        waive = st.checkbox("Waive what the refund re-opens (e.g. a player who left)", key="refund_waive")
        st.caption("A Stripe payment is refunded through Stripe unless you tick the first box"
                   + ("." if stripe_ready else "; Stripe is not configured here, so only a refund made outside "
                      "Stripe can be recorded."))
        submitted = st.form_submit_button("Refund", icon=":material/currency_exchange:")
    if not submitted or payment is None:
        return
    cents = _amount(amount, statement)
    if cents is None:
        return
    gateway = services().payment_gateway_if_configured(action="refund a payment through Stripe")
    _run(statement.parent_id, lambda: run_refund(
        services().sessions, user, payment_id=payment, amount_cents=cents, reason=reason, gateway=gateway,
        outside_stripe=outside, waive_reopened=waive,
    ), form_fields=("refund_payment", "refund_amount", "refund_reason", "refund_outside", "refund_waive"))


def _tools(user: ActingUser, statement: Statement) -> None:
    tools = [(title, draw) for permission, title, draw in (
        (Permission.RECORD_PAYMENTS, "Record a payment", _payment_form),
        (Permission.ADJUST_BALANCES, "Adjust", _adjust_form),
        (Permission.REVERSE_ENTRIES, "Reverse an entry", _reverse_form),
        (Permission.REFUND_PAYMENTS, "Refund", _refund_form),
    ) if user.can(permission)]
    if not tools:
        return
    st.subheader("Change the books", anchor=False)
    for tab, (_, draw) in zip(st.tabs([title for title, _ in tools]), tools, strict=True):
        with tab:
            draw(user, statement)


# -- the receipt ----------------------------------------------------------------------------------


def _league_config(user: ActingUser) -> Settings:
    with session_scope() as session:
        return settings_for_league(league_of(session, user), settings())


def _receipt(user: ActingUser, statement: Statement) -> None:
    offered = st.session_state.get(RECEIPT_FOR)
    if not user.can(Permission.SEND_RECEIPTS) or not offered or offered[0] != statement.parent_id:
        return
    payment_id = offered[1]
    config = _league_config(user)
    st.subheader("Send a receipt", anchor=False)
    with session_scope() as session:
        preview = preview_receipt(session, user, payment_id=payment_id, email_from=config.email_from)
    st.caption(f"The receipt of payment {payment_id}, exactly as the family would get it: "
               f"{plain(preview.rendered.subject)}")
    sandboxed_email(preview.rendered.html, title="Receipt preview")
    with st.expander("Plain-text version"):
        st.code(preview.rendered.text, language=None, wrap_lines=True)
    if preview.already:
        st.info(f"This receipt was already queued: {plain(preview.already)}. It is not sent twice.",
                icon=":material/mark_email_read:")
        if preview.sent_before:
            return
    if statement.email_opt_out:
        st.caption("This family asked for no reminder emails. A receipt is not a reminder: it goes only because "
                   "you send it.")
    if preview.to_address is None:
        st.warning(preview.address_problem or "No address to send it to.", icon=":material/unsubscribe:")
        return
    if st.button(f"Send the receipt to {preview.to_address}", key="send_receipt", icon=":material/send:"):
        try:
            with services().email_backend(config) as backend:
                sent = send_receipt(services().sessions, user, payment_id=payment_id, backend=backend,
                                    email_from=config.email_from)
        except (EmailDeliveryError, BillingError) as problem:
            st.error(f"The receipt was not sent: {problem}", icon=":material/error:")
            return
        if sent.sent:
            words = "was already sent" if not sent.newly_sent else "was sent"
            _done(statement.parent_id, f"The receipt of payment {payment_id} {words} to {sent.to_address}.")
        st.error(f"The receipt to {sent.to_address} is {sent.status}" + (f": {sent.error}" if sent.error else ".")
                 + " The payment is recorded; try again, or see Email history.", icon=":material/error:")


# -- the page -------------------------------------------------------------------------------------


def main() -> None:
    user = require_user()
    st.title("Family page")
    parent_id = _chosen_family(user)
    if parent_id is None:
        st.info("Choose a family to see their statement, or open one from Outstanding balances.")
        return
    done = st.session_state.pop(DONE, None)
    if done and done[0] == parent_id:
        st.success(plain(done[1]), icon=":material/check_circle:")
        if done[2]:
            st.warning(done[2], icon=":material/link_off:")
    with session_scope() as session:
        statement = family_statement(session, user, parent_id)
    _header(user, statement)
    _opt_out(user, statement)
    _receipt(user, statement)
    _open_charges(statement)
    _tools(user, statement)
    _statement_table(user, statement)


main()
