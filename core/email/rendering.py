"""Rendering: Jinja2 templates to a subject, an HTML part and a plain-text part, then the exact message.

Rendering is separate from sending. ``render_email`` turns one parent's balance into text;
``compose_message`` turns that text into the ``email.message.EmailMessage`` whose bytes a
backend delivers. HTML templates are autoescaped, CSS is inlined for mail clients, and every
header value goes through ``core.email.headers`` so it can never carry a line break.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from functools import lru_cache
from typing import TYPE_CHECKING

import css_inline
from jinja2 import Environment, PackageLoader, StrictUndefined, Template, select_autoescape

from core.email.brand import Brand
from core.email.headers import encoded_header, header_text, mailto_url, require_header_address
from core.email.registry import Recipient
from core.models import DEFAULT_EMAIL_PAY_LINKS, EmailPayLinks, utcnow
from core.money import format_cents
from core.reporting.balances import OutstandingBalance
from core.timezones import format_local, local_time

if TYPE_CHECKING:
    from core.email.registry import EmailType

TEST_SUBJECT_PREFIX = "[TEST] "
# SMTP's policy (CRLF line ends), except that headers written pre-folded (``set_raw``: the
# subject and List-Unsubscribe) are kept as written rather than folded again by the library.
MESSAGE_POLICY = policy.SMTP.clone(refold_source="none")


@dataclass(frozen=True)
class EmailLine:
    """One row of the Player | Item | Amount | Pay Now table, formatted for a template."""

    player_name: str
    product_name: str
    amount: str
    pay_url: str | None
    processing: bool


@dataclass(frozen=True)
class RenderedEmail:
    """The text of one email: header-safe subject, inlined HTML part, plain-text part."""

    subject: str
    html: str
    text: str


@lru_cache(maxsize=1)
def template_environment() -> Environment:
    """The Jinja2 environment (built on first use): ``.html`` autoescaped, ``.txt`` and subjects not."""
    return Environment(
        loader=PackageLoader("core.email", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )


@lru_cache(maxsize=32)
def _subject_template(source: str) -> Template:
    return template_environment().from_string(source)


@lru_cache(maxsize=1)
def _inliner() -> css_inline.CSSInliner:
    # Remote stylesheets are never fetched: everything a template needs is in it.
    return css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


def inline_css(html: str) -> str:
    """``html`` with its CSS inlined for mail clients (what ``render_email`` does to its HTML part)."""
    return _inliner().inline(html)



def _web_url(url: str) -> str | None:
    return url if url.startswith(("https://", "http://")) else None


def email_lines(balance: OutstandingBalance, *, item_links: bool = True) -> list[EmailLine]:
    """The table rows of ``balance``; only http(s) payment URLs become buttons, and none
    without ``item_links``. An item has a link only while it is untouched (its link is for
    exactly what is open: ``outstanding_balances``)."""
    return [
        EmailLine(
            player_name=header_text(item.player_name),
            product_name=header_text(item.product_name),
            amount=format_cents(item.amount_cents, item.currency),
            pay_url=_web_url(item.pay_url) if item_links else None,
            processing=item.processing,
        )
        for item in balance.items
    ]


def render_email(email_type: EmailType, balance: OutstandingBalance, brand: Brand, *,
                 as_of: datetime | None = None,
                 pay_links: EmailPayLinks = DEFAULT_EMAIL_PAY_LINKS) -> RenderedEmail:
    """Render ``email_type`` for one parent's ``balance`` in the league's ``brand``.

    The email leads with the family's "Pay <balance>" button when it has a balance link
    (``OutstandingBalance.family_pay_url``); the items keep their own Pay Now links unless the
    league chose ``EmailPayLinks.BALANCE_ONLY`` (without a balance link they always keep them:
    the family must be able to pay). The greeting uses the parent's first name when the roster
    gives one (a ``Recipient`` of the email type's audience), else their name as the roster
    writes it. Every email ends with how to unsubscribe: a ``mailto:`` to the league naming the
    family. The balance is the one ``as_of`` (default: now), shown on the league's clock.
    """
    environment = template_environment()
    first_name = balance.first_name if isinstance(balance, Recipient) else None
    family_url = _web_url(balance.family_pay_url)
    item_links = family_url is None or pay_links is EmailPayLinks.BALANCE_AND_ITEMS
    context = {
        "brand": brand,
        "parent_name": header_text(balance.parent_name),
        "greeting_name": header_text(first_name or balance.parent_name),
        "unsubscribe_address": unsubscribe_address(brand),
        "unsubscribe_url": unsubscribe_url(brand, family=balance.parent_name),
        "lines": email_lines(balance, item_links=item_links),
        "family_pay_url": family_url,
        "item_links": item_links,
        "total": format_cents(balance.total_cents, balance.currency),
        "players": _join_names(tuple(header_text(name) for name in balance.player_names)),
        "as_of": format_local(as_of or utcnow(), brand.time_zone),
    }
    subject = header_text(_subject_template(email_type.subject_template).render(context), limit=250)
    html = environment.get_template(email_type.html_template).render(subject=subject, **context)
    text = environment.get_template(email_type.text_template).render(subject=subject, **context)
    return RenderedEmail(subject=subject, html=_inliner().inline(html), text=text)


def unsubscribe_address(brand: Brand) -> str:
    """Where an unsubscribe request goes: the league's reply-to address, else its sender address."""
    return brand.reply_to or brand.sender_address


def unsubscribe_url(brand: Brand, *, family: str) -> str:
    """The ``mailto:`` that asks the league to stop emailing ``family`` (its subject names them)."""
    who = header_text(family)
    subject = f"Unsubscribe {who} from {brand.league_name} reminders" if who else (
        f"Unsubscribe from {brand.league_name} reminders")
    return mailto_url(unsubscribe_address(brand), subject=subject)


def mark_as_test(subject: str) -> str:
    """The subject of a test send: marked so nobody mistakes it for the real reminder."""
    return header_text(TEST_SUBJECT_PREFIX + subject, limit=260)


def message_id_for(*, tenant_id: int, campaign_id: int, parent_id: int, domain: str) -> str:
    """The Message-ID of the email to ``parent_id`` in ``campaign_id``: the same on every attempt."""
    digest = hashlib.sha256(f"{tenant_id}:{campaign_id}:{parent_id}".encode()).hexdigest()[:16]
    return f"<c{campaign_id}.p{parent_id}.{digest}@{require_header_address(domain)}>"


def compose_message(
    rendered: RenderedEmail,
    *,
    brand: Brand,
    to_name: str,
    to_address: str,
    message_id: str,
    date: datetime | None = None,
    family_name: str | None = None,
    unsubscribe: bool = True,
) -> EmailMessage:
    """The exact message to send: headers, a plain-text part and the HTML alternative.

    Lines end in CRLF (the SMTP policy), so the bytes written to a file, handed to SMTP or to
    the Gmail API are the same. ``List-Unsubscribe`` is a ``mailto:`` to the league whose
    subject names ``family_name`` (default: ``to_name``; a test send, addressed to nobody by
    name, passes the family it shows). ``unsubscribe=False``: no ``List-Unsubscribe`` (an email
    that is no reminder, such as a receipt: a family's opt-out of reminders does not stop it).
    """
    message = EmailMessage(policy=MESSAGE_POLICY)
    message.set_raw("Subject", encoded_header("Subject", header_text(rendered.subject, limit=260)))
    message["From"] = brand.sender
    message["To"] = Address(display_name=header_text(to_name), addr_spec=require_header_address(to_address))
    if brand.reply_to_address is not None:
        message["Reply-To"] = brand.reply_to_address
    message["Date"] = format_datetime(local_time(date or utcnow(), brand.time_zone))
    message["Message-ID"] = require_header_address(message_id)
    message["Auto-Submitted"] = "auto-generated"
    if unsubscribe:
        family = to_name if family_name is None else family_name
        message.set_raw("List-Unsubscribe", f"<{unsubscribe_url(brand, family=family)}>")
    message.set_content(rendered.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="quoted-printable")
    # A boundary derived from the Message-ID (not a random one) makes the bytes reproducible.
    message.set_boundary("=_" + hashlib.sha256(message_id.encode()).hexdigest()[:32])
    return message


def _join_names(names: tuple[str, ...]) -> str:
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]
