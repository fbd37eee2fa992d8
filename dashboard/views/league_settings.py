"""League settings (admin): the league's name and brand, and the settings that may differ by league."""

from __future__ import annotations

import streamlit as st

from core.access.league_settings import (
    LeagueSettings,
    current_league_settings,
    effective_settings,
    update_league_settings,
)
from core.errors import InvalidInput
from core.models import DEFAULT_EMAIL_PAY_LINKS, EmailPayLinks
from dashboard.league_form import currency_input, time_zone_input
from dashboard.state import require_user, session_scope, settings
from dashboard.text import plain

SAVED = "league_settings_saved"


def main() -> None:
    user = require_user()
    with session_scope() as session:
        current = current_league_settings(session, user)
    environment = effective_settings(None, settings())  # what an empty field stands for
    st.title("League settings")
    st.caption("The name and brand every email is signed with, and the settings this league may set for itself. "
               "Leave a setting of the second part empty to use the server's (shown under it).")
    if st.session_state.pop(SAVED, False):
        st.success("Saved. The next emails use these settings.", icon=":material/check_circle:")
    with st.form("league_settings"):
        name = st.text_input("League name", value=current.name, key="league_name")
        sender_name = st.text_input("Emails come from (name)", value=current.sender_name, key="league_sender")
        reply_to = st.text_input("Replies go to (email)", value=current.reply_to, key="league_reply_to")
        logo_url = st.text_input("Logo (https:// image address)", value=current.logo_url, key="league_logo")
        left, right = st.columns(2)
        primary = left.color_picker("Header colour", value=_six_digit(current.primary_color), key="league_primary")
        accent = right.color_picker("Pay now button colour", value=_six_digit(current.accent_color),
                                    key="league_accent")
        footer = st.text_area("Email footer", value=current.footer_text, key="league_footer")
        st.subheader("Sending and payments")
        sender_address = st.text_input(
            "Emails come from (address)", value=current.sender_address, key="league_sender_address",
            help=f"Empty: {environment.email_from.value} ({environment.email_from.source.described}).",
        )
        success_url = st.text_input(
            "Thank-you page (where Stripe sends a family after paying)", value=current.payment_success_url,
            key="league_success_url",
            help=f"Empty: {environment.payment_success_url.value} "
                 f"({environment.payment_success_url.source.described}).",
        )
        left, middle, right = st.columns(3)
        with left:
            time_zone = time_zone_input(current.time_zone or "", key="league_time_zone",
                                        unset_label=f"Not set ({environment.time_zone.value})")
        with middle:
            cooldown = st.number_input(
                "Email cool-down (days)", min_value=0, max_value=365, step=1,
                value=int(current.email_cooldown_days) if current.email_cooldown_days else None,
                key="league_cooldown", placeholder=f"{environment.email_cooldown_days.value} (server's)",
                help="A family emailed this recently is skipped by a send to everyone. Empty: the server's "
                     f"{environment.email_cooldown_days.value} days.",
            )
        with right:
            currency = currency_input(current.currency or "usd", key="league_currency")
        choices = list(EmailPayLinks)
        chosen = EmailPayLinks(current.email_pay_links) if current.email_pay_links else DEFAULT_EMAIL_PAY_LINKS
        pay_links = st.radio(
            "The reminder email offers to pay", options=choices, index=choices.index(chosen),
            format_func=lambda choice: choice.label, key="league_pay_links", horizontal=True,
            help="The email leads with one button for the family's whole balance. Each item keeps its own "
                 "Pay now link while nothing has been paid or taken off it, unless you choose the balance only.",
        )
        saved = st.form_submit_button("Save", type="primary")
    if not saved:
        return
    changes = LeagueSettings(
        name=name, sender_name=sender_name, reply_to=reply_to, logo_url=logo_url,
        primary_color=primary, accent_color=accent, footer_text=footer,
        sender_address=sender_address, payment_success_url=success_url, time_zone=time_zone,
        email_cooldown_days="" if cooldown is None else str(int(cooldown)), currency=currency,
        email_pay_links="" if pay_links is DEFAULT_EMAIL_PAY_LINKS else pay_links.value,
    )
    try:
        with session_scope() as session:
            update_league_settings(session, user, changes)
    except InvalidInput as exc:
        problems = str(exc).splitlines()
        st.error("\n".join(f"- {plain(problem)}" for problem in problems) if len(problems) > 1 else plain(problems[0]),
                 icon=":material/error:")
        return
    st.session_state[SAVED] = True
    st.rerun()  # the sidebar, drawn before this page, shows the league's new name too


def _six_digit(colour: str | None) -> str:
    """The colour picker wants #RRGGBB; a stored #RGB is expanded."""
    if colour and len(colour) == 4:
        return "#" + "".join(c * 2 for c in colour[1:])
    return colour or "#000000"


main()
