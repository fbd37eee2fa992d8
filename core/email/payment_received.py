"""The "payment received" email: the receipt of one payment, previewed, queued once, sent through the outbox.

What it says comes from ``core.ledger.receipts.payment_receipt`` (what the payment settled,
what became credit, the balance after), in the league's brand, currency and time zone.

A payment has at most one receipt: its outbox row's Message-ID is derived from the league and
the payment (``receipt_message_id``), and ``send_receipt`` looks for it under the family's
ledger lock before queueing. Asked again, it does not queue a second one: a receipt already
sent is reported as sent, a failed one is put back in the queue and sent, one queued is sent,
and one interrupted in the provider call (it may have been delivered) waits for the admin's
decision on the Email history page, like any interrupted message.

A receipt is not a reminder (``EmailType.reminder``): it is sent because the person who
recorded the payment asked for it, so the reminder cool-down does not hold it back, it does not
hold the next reminder back, and a family's choice to get no *reminder* emails does not stop it.

Sessions: ``preview_receipt`` takes a ``Session`` and never commits; ``send_receipt`` takes
``sessions`` and commits (the outbox row before the provider is called, as every send).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage as MimeMessage
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.access.league_settings import DEFAULT_TIME_ZONE
from core.access.permissions import ActingUser, Permission, require
from core.audit import record_action
from core.db import Sessions, unit_of_work
from core.email.backends import EmailBackend
from core.email.brand import Brand, brand_for_tenant
from core.email.headers import header_text, normalise_recipient, require_header_address
from core.email.outbox import drain_outbox, is_in_flight, retry_messages
from core.email.registry import PAYMENT_RECEIVED
from core.email.rendering import (
    RenderedEmail,
    compose_message,
    inline_css,
    template_environment,
)
from core.errors import InvalidInput
from core.ledger.accounts import lock_family
from core.ledger.receipts import PaymentReceipt, payment_receipt
from core.models import (
    EmailCampaign,
    EmailMessage,
    LedgerEntry,
    MessageStatus,
    Parent,
    Tenant,
    utcnow,
)
from core.money import format_cents


@dataclass(frozen=True)
class ReceiptPreview:
    """The exact receipt a family would get, and where it would go."""

    receipt: PaymentReceipt
    rendered: RenderedEmail
    message: MimeMessage
    to_address: str | None  # None: no usable address on file (the receipt cannot be sent)
    address_problem: str | None
    already: str | None  # what became of an earlier receipt of this payment, in words; None: none yet
    sent_before: bool = False  # an earlier receipt of this payment was sent (it is never sent twice)

    @property
    def raw(self) -> bytes:
        return self.message.as_bytes()


@dataclass(frozen=True)
class ReceiptSent:
    """What ``send_receipt`` did."""

    payment_id: int
    parent_name: str
    to_address: str
    campaign_id: int
    status: str  # the receipt's outbox status now: "sent", "failed", "interrupted", "queued", "sending"
    newly_sent: bool  # False: an earlier click already sent it (nothing was sent again)
    error: str | None = None

    @property
    def sent(self) -> bool:
        return self.status == "sent"


def receipt_message_id(*, tenant_id: int, payment_id: int, domain: str) -> str:
    """The Message-ID of the receipt of ``payment_id``: one per payment, on every attempt."""
    return f"<{_local_part(tenant_id, payment_id)}@{require_header_address(domain)}>"


def render_receipt(receipt: PaymentReceipt, brand: Brand, *, first_name: str | None, recorded_at: datetime,
                   time_zone: str) -> RenderedEmail:
    """The receipt's subject, HTML (CSS inlined) and plain text, in ``brand``; times in ``time_zone``."""
    def money(cents: int) -> str:
        return format_cents(cents, receipt.currency)

    context = {
        "brand": brand,
        "greeting_name": header_text(first_name or receipt.parent_name),
        "parent_name": header_text(receipt.parent_name),
        "amount": money(receipt.amount_cents),
        "method": receipt.method,
        "reference": header_text(receipt.reference) if receipt.reference else None,
        "received_on": receipt.received_on.strftime("%B %-d, %Y"),
        "recorded_at": _local_time(recorded_at, time_zone),
        "lines": [
            {"description": header_text(line.description), "player_name": header_text(line.player_name or ""),
             "amount": money(line.cents)}
            for line in receipt.settled
        ],
        "credit": money(receipt.credit_cents) if receipt.credit_cents > 0 else None,
        "balance_words": _balance_words(receipt.balance_cents, money),
    }
    environment = template_environment()
    subject = header_text(environment.from_string(PAYMENT_RECEIVED.subject_template).render(context), limit=250)
    html = environment.get_template(PAYMENT_RECEIVED.html_template).render(subject=subject, **context)
    text = environment.get_template(PAYMENT_RECEIVED.text_template).render(subject=subject, **context)
    return RenderedEmail(subject=subject, html=inline_css(html), text=text)


def preview_receipt(session: Session, user: ActingUser, *, payment_id: int, email_from: str) -> ReceiptPreview:
    """The exact receipt of ``payment_id`` (headers, plain text, HTML), as ``send_receipt`` would queue it."""
    require(user, Permission.SEND_RECEIPTS)
    receipt = payment_receipt(session, user, payment_id)
    tenant = session.get_one(Tenant, user.tenant_id)
    brand = brand_for_tenant(tenant, email_from=email_from)
    parent = session.get_one(Parent, receipt.parent_id)
    rendered = _render(session, receipt, brand, parent=parent, tenant=tenant)
    address, problem = _address(parent)
    message = compose_message(
        rendered, brand=brand, to_name=parent.name, to_address=address or "no-address@invalid",
        message_id=receipt_message_id(tenant_id=user.tenant_id, payment_id=payment_id, domain=brand.sender_domain),
        unsubscribe=False,  # no reminder: a family's opt-out of reminders does not stop it
    )
    earlier = _earlier_receipt(session, user, payment_id)
    return ReceiptPreview(receipt=receipt, rendered=rendered, message=message, to_address=address,
                          address_problem=problem, already=_described(earlier) if earlier else None,
                          sent_before=earlier is not None and earlier.status is MessageStatus.SENT)


def send_receipt(
    sessions: Sessions,
    user: ActingUser,
    *,
    payment_id: int,
    backend: EmailBackend,
    email_from: str,
) -> ReceiptSent:
    """Queue the receipt of ``payment_id`` in the outbox (once per payment) and send it.

    ``InvalidInput`` when the family has no usable address (nothing is queued). See the module
    docstring for a receipt asked for again. **Commits**: the outbox row, then the outbox's steps.
    """
    require(user, Permission.SEND_RECEIPTS)
    with unit_of_work(sessions) as session:
        receipt = payment_receipt(session, user, payment_id)
        lock_family(session, user, receipt.parent_id)  # two clicks at once: the second finds the first's row
        earlier = _earlier_receipt(session, user, payment_id)
        if earlier is None:
            campaign_id, address = _queue(session, user, receipt, email_from=email_from)
        else:
            campaign_id, address = earlier.campaign_id, earlier.to_address or ""
            if _shown_status(earlier) in ("sent", "sending", "interrupted"):
                return _outcome(receipt, earlier, newly_sent=False)
            if earlier.status is MessageStatus.FAILED:
                retry_messages(session, user, campaign_id)
    drain_outbox(sessions, user, campaign_id, backend=backend, email_from=email_from, workers=1)
    with unit_of_work(sessions) as session:
        row = session.get_one(EmailMessage, _message_of(session, campaign_id))
        return _outcome(receipt, row, newly_sent=row.status is MessageStatus.SENT, address=address)


# -- the parts ------------------------------------------------------------------------------------


def _local_part(tenant_id: int, payment_id: int) -> str:
    digest = hashlib.sha256(f"receipt:{tenant_id}:{payment_id}".encode()).hexdigest()[:16]
    return f"receipt.p{payment_id}.{digest}"


def _render(session: Session, receipt: PaymentReceipt, brand: Brand, *, parent: Parent,
            tenant: Tenant) -> RenderedEmail:
    recorded_at = session.get_one(LedgerEntry, receipt.payment_id).recorded_at
    return render_receipt(receipt, brand, first_name=parent.first_name, recorded_at=recorded_at,
                          time_zone=tenant.time_zone or DEFAULT_TIME_ZONE)


def _address(parent: Parent) -> tuple[str | None, str | None]:
    if not parent.email:
        return None, f"{parent.name} has no email address on file: add one to the roster to send a receipt."
    try:
        return normalise_recipient(parent.email), None
    except InvalidInput as problem:
        return None, f"{parent.name}'s email address cannot be used: {problem}"


def _queue(session: Session, user: ActingUser, receipt: PaymentReceipt, *, email_from: str) -> tuple[int, str]:
    tenant = session.get_one(Tenant, user.tenant_id)
    parent = session.get_one(Parent, receipt.parent_id)
    address, problem = _address(parent)
    if address is None:
        raise InvalidInput(f"{problem} Nothing was sent.")
    brand = brand_for_tenant(tenant, email_from=email_from)
    rendered = _render(session, receipt, brand, parent=parent, tenant=tenant)
    campaign = EmailCampaign(
        tenant_id=user.tenant_id, email_type=PAYMENT_RECEIVED.key, cooldown_days=0, recipient_count=1,
        skipped_count=0, total_cents=receipt.amount_cents, started_by=user.identity,
        audience={"scope": "receipt", "payment_id": receipt.payment_id},  # for display only
    )
    session.add(campaign)
    session.flush()
    session.add(EmailMessage(
        campaign_id=campaign.id, tenant_id=user.tenant_id, parent_id=parent.id, to_address=address,
        subject=rendered.subject, amount_cents=receipt.amount_cents, currency=receipt.currency,
        status=MessageStatus.PENDING, html_body=rendered.html, text_body=rendered.text,
        message_id_header=receipt_message_id(tenant_id=user.tenant_id, payment_id=receipt.payment_id,
                                             domain=brand.sender_domain),
    ))
    record_action(
        session, user, "email.receipt",
        f"Queued the receipt of payment {receipt.payment_id} ({format_cents(receipt.amount_cents, receipt.currency)}) "
        f"to {parent.name} at {address}",
        details={"campaign_id": campaign.id, "payment_id": receipt.payment_id, "parent_id": parent.id},
    )
    session.flush()
    return campaign.id, address


def _earlier_receipt(session: Session, user: ActingUser, payment_id: int) -> EmailMessage | None:
    """The receipt already queued for ``payment_id`` (whatever the sender's domain was then)."""
    return session.scalars(
        select(EmailMessage)
        .join(EmailCampaign, EmailCampaign.id == EmailMessage.campaign_id)
        .where(EmailMessage.tenant_id == user.tenant_id, EmailCampaign.email_type == PAYMENT_RECEIVED.key,
               EmailMessage.message_id_header.startswith(f"<{_local_part(user.tenant_id, payment_id)}@",
                                                         autoescape=True))
        .order_by(EmailMessage.id)
        .limit(1)
    ).first()


def _message_of(session: Session, campaign_id: int) -> int:
    return session.scalars(select(EmailMessage.id).where(EmailMessage.campaign_id == campaign_id)).one()


def _shown_status(row: EmailMessage) -> str:
    if row.status is MessageStatus.SENDING:
        in_flight = is_in_flight(row.status, error=row.error, claimed_at=row.claimed_at, now=utcnow())
        return "sending" if in_flight else "interrupted"
    if row.status is MessageStatus.PENDING:
        return "queued"
    return row.status.value


def _described(row: EmailMessage) -> str:
    status = _shown_status(row)
    if status == "sent" and row.sent_at is not None:
        return f"sent to {row.to_address} on {row.sent_at.strftime('%d %b %Y %H:%M UTC')}"
    if status == "interrupted":
        return (f"interrupted while being sent to {row.to_address}: it may have been delivered "
                "(the admin decides on the Email history page)")
    return f"{status} (to {row.to_address})" + (f": {row.error}" if row.error else "")


def _outcome(receipt: PaymentReceipt, row: EmailMessage, *, newly_sent: bool, address: str | None = None) -> ReceiptSent:
    return ReceiptSent(
        payment_id=receipt.payment_id, parent_name=receipt.parent_name, to_address=address or row.to_address or "",
        campaign_id=row.campaign_id, status=_shown_status(row), newly_sent=newly_sent, error=row.error,
    )


def _local_time(moment: datetime, time_zone: str) -> str:
    try:
        zone = ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        zone, time_zone = ZoneInfo(DEFAULT_TIME_ZONE), DEFAULT_TIME_ZONE
    local = moment.astimezone(zone)
    return f"{local.strftime('%B %-d, %Y at %H:%M')} ({time_zone})"


def _balance_words(balance_cents: int, money: Callable[[int], str]) -> str:
    if balance_cents > 0:
        return f"What is still owed after this payment: {money(balance_cents)}."
    if balance_cents < 0:
        return f"You now have {money(-balance_cents)} credit with the league, for what you owe next (or a refund)."
    return "Everything is paid: you owe nothing more. Thank you!"

