"""Campaigns: the manifest, preview, test send and send to everyone, and what they did.

A send to everyone is: ``build_manifest`` (shown to the admin), ``start_campaign`` (writes the
campaign and one outbox row per parent; the caller commits), and
``core.email.outbox.drain_outbox`` (sends, durable per message). A test send is the same path
with one parent's real email going to a test address, marked as a test and not counted as a
reminder. The workflows that sequence these steps for the command line and the dashboard are
in ``core.email.sending``; who is skipped and why is decided in ``core.email.skip_reasons``.

Sessions: a function here that takes a ``Session`` never commits; ``send_test_email`` and
``run_campaign`` take ``sessions`` (``core.db.Sessions``) and commit in units of work of their own.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage as MimeMessage

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.orm import Session, aliased

from core.access.permissions import ActingUser, Permission, require
from core.audit import record_action
from core.db import Sessions, unit_of_work
from core.email.backends import EmailBackend
from core.email.brand import Brand, brand_for_tenant
from core.email.headers import normalise_recipient
from core.email.outbox import (
    IN_FLIGHT,
    INTERRUPTED,
    STALE_CLAIM_AFTER,
    DrainProgress,
    DrainResult,
    counts_as_reminder_since,
    drain_outbox,
    family_now,
    in_flight_messages,
    interrupt_dead_claims,
    is_in_flight,
    reminder_campaigns,
    reminder_state,
)
from core.email.registry import EmailType
from core.email.rendering import (
    RenderedEmail,
    compose_message,
    mark_as_test,
    message_id_for,
    render_email,
)
from core.email.senders import sender_alive
from core.email.skip_reasons import OtherReminder, Skip, decide_skip, describe_skip
from core.errors import BillingError, InvalidInput, NotFound
from core.models import (
    DEFAULT_EMAIL_PAY_LINKS,
    CampaignStatus,
    EmailCampaign,
    EmailMessage,
    EmailPayLinks,
    MessageStatus,
    Parent,
    Tenant,
    utcnow,
)
from core.money import format_cents
from core.reporting.balances import OutstandingBalance
from core.settings import Settings
from core.words import plural

log = logging.getLogger(__name__)

# The one default cool-down (EMAIL_COOLDOWN_DAYS): callers normally pass the configured value.
DEFAULT_COOLDOWN_DAYS = Settings.email_cooldown_days


class ManifestChanged(BillingError):
    """The send to everyone was refused: who gets what is no longer what the admin reviewed.

    ``manifest`` is the list as it is now, to review again.
    """

    def __init__(self, message: str, *, manifest: Manifest) -> None:
        super().__init__(message)
        self.manifest = manifest


@dataclass(frozen=True)
class ManifestTotals:
    """What an admin reviewed and confirmed: how many emails, for how much in total."""

    count: int
    total_cents: int


@dataclass(frozen=True)
class ManifestEntry:
    """One parent of the league: the email they will get, or why they get none."""

    parent_id: int
    parent_name: str
    email: str | None
    amount_cents: int
    currency: str
    line_items: int
    skip: Skip | None = None
    skip_reason: str | None = None  # ``skip`` in words, as shown
    balance: OutstandingBalance | None = None

    @property
    def amount(self) -> str:
        return format_cents(self.amount_cents, self.currency)


@dataclass(frozen=True)
class Manifest:
    """Who will get what, and who is skipped and why, before anything is sent."""

    email_type: str
    cooldown_days: int
    recipients: tuple[ManifestEntry, ...]
    skipped: tuple[ManifestEntry, ...]
    currency: str

    @property
    def count(self) -> int:
        return len(self.recipients)

    @property
    def total_cents(self) -> int:
        return sum(entry.amount_cents for entry in self.recipients)

    @property
    def total(self) -> str:
        return format_cents(self.total_cents, self.currency)

    @property
    def totals(self) -> ManifestTotals:
        """The figures an admin confirms; ``start_campaign`` checks them against its own manifest."""
        return ManifestTotals(count=self.count, total_cents=self.total_cents)

    @property
    def skip_counts(self) -> dict[str, int]:
        """How many families are skipped for each reason, by the reason's words."""
        return dict(Counter(describe_skip(entry.skip.reason) for entry in self.skipped if entry.skip))


@dataclass(frozen=True)
class EmailPreview:
    """The exact message one parent would get, and its parts for display."""

    message: MimeMessage
    rendered: RenderedEmail
    headers: tuple[tuple[str, str], ...]
    parent_email: str | None

    @property
    def raw(self) -> bytes:
        return self.message.as_bytes()


def _league_brand(session: Session, user: ActingUser, *, email_from: str) -> Brand:
    """The acting user's league brand, with ``EMAIL_FROM`` as the sending address."""
    return brand_for_tenant(session.get_one(Tenant, user.tenant_id), email_from=email_from)


def _league_pay_links(session: Session, user: ActingUser) -> EmailPayLinks:
    """What the league's emails offer to pay (League settings; the default: balance and items)."""
    chosen = session.get_one(Tenant, user.tenant_id).email_pay_links
    return EmailPayLinks(chosen) if chosen else DEFAULT_EMAIL_PAY_LINKS


def build_manifest(
    session: Session,
    user: ActingUser,
    email_type: EmailType,
    *,
    cooldown_days: int = DEFAULT_COOLDOWN_DAYS,
    now: datetime | None = None,
) -> Manifest:
    """Every parent of the league: who will get ``email_type`` (and for how much) and who is skipped.

    Who is skipped and why is decided by ``core.email.skip_reasons.decide_skip`` (nothing owed,
    opted out, no usable address, every payment processing, or another reminder: within the
    cool-down, being sent, queued or sent by a send still in progress). Runs a constant number
    of queries.
    """
    require(user, Permission.PREVIEW_EMAIL)
    if cooldown_days < 0:
        raise InvalidInput("The cool-down cannot be negative.")
    now = now or utcnow()
    tenant = session.get_one(Tenant, user.tenant_id)
    balances = {balance.parent_id: balance for balance in email_type.audience(session, user, None)}
    others = _other_reminders(session, user, now=now, cooldown_days=cooldown_days)
    parents = session.execute(
        select(Parent.id, Parent.name, Parent.email, Parent.email_opt_out)
        .where(Parent.tenant_id == user.tenant_id)
        .order_by(Parent.name, Parent.id)
    ).all()
    recipients: list[ManifestEntry] = []
    skipped: list[ManifestEntry] = []
    for parent_id, name, email, opted_out in parents:
        balance = balances.get(parent_id)
        family = family_now(balance, email=email, opted_out=opted_out)
        skip = decide_skip(
            family, others.get(parent_id, ()), now=now, cooldown_days=cooldown_days,
            not_owed=email_type.not_in_audience_reason,
        )
        entry = ManifestEntry(
            parent_id=parent_id,
            parent_name=name,
            email=family.address or email,
            amount_cents=balance.total_cents if balance else 0,
            currency=balance.currency if balance else tenant.currency,
            line_items=len(balance.items) if balance else 0,
            skip=skip,
            skip_reason=skip.words(cooldown_days=cooldown_days) if skip else None,
            balance=balance,
        )
        (skipped if skip else recipients).append(entry)
    return Manifest(
        email_type=email_type.key,
        cooldown_days=cooldown_days,
        recipients=tuple(recipients),
        skipped=tuple(skipped),
        currency=recipients[0].currency if recipients else tenant.currency,
    )


def start_campaign(
    session: Session,
    user: ActingUser,
    email_type: EmailType,
    *,
    email_from: str,
    cooldown_days: int = DEFAULT_COOLDOWN_DAYS,
    expected: ManifestTotals | None = None,
    sender: str | None = None,
    only_if_any: bool = False,
) -> EmailCampaign | None:
    """Write a send-to-everyone campaign and its outbox rows, rendered and ready to send.

    ``expected`` is what the admin reviewed and confirmed (``Manifest.totals``): when the
    manifest built now differs (a payment synced, a parent added or opted out since),
    ``ManifestChanged`` is raised and nothing is written. ``sender`` is the token of the run
    that will send it (``core.email.senders``). With ``only_if_any``, nothing is written and
    ``None`` returned when nobody is to be emailed (another send got there first).

    The caller commits, before draining (the outbox must be durable before anything is sent).
    The league's row stays locked until then, so two campaigns started at once are built one
    after the other and the second sees the first one's queued messages (and skips them).
    """
    require(user, Permission.SEND_EMAIL)
    asked_at = utcnow()  # before waiting for the lock: what another send gets out meanwhile holds its families
    _lock_league(session, user)
    interrupt_dead_claims(session, user)
    manifest = build_manifest(session, user, email_type, cooldown_days=cooldown_days, now=asked_at)
    if expected is not None and manifest.totals != expected:
        raise ManifestChanged(
            f"The list changed since you reviewed it: review again. It is now {_emails(manifest.count)} for "
            f"{manifest.total}; you confirmed {_emails(expected.count)} for "
            f"{format_cents(expected.total_cents, manifest.currency)}. Nothing was sent.",
            manifest=manifest,
        )
    if only_if_any and not manifest.recipients:
        return None
    brand = _league_brand(session, user, email_from=email_from)
    campaign = EmailCampaign(
        tenant_id=user.tenant_id,
        email_type=email_type.key,
        cooldown_days=cooldown_days,
        recipient_count=manifest.count,
        skipped_count=len(manifest.skipped),
        total_cents=manifest.total_cents,
        sender=sender,
        # For display (and for code before revision 0005): the typed columns are what is read.
        audience={
            "scope": "everyone",
            "cooldown_days": cooldown_days,
            "recipients": manifest.count,
            "skipped": len(manifest.skipped),
            "total_cents": manifest.total_cents,
            "currency": manifest.currency,
        },
        started_by=user.identity,
    )
    session.add(campaign)
    session.flush()
    pay_links = _league_pay_links(session, user)
    rows = [
        _outbox_row(campaign, entry, email_type, brand, pay_links)
        for entry in (*manifest.recipients, *manifest.skipped)
    ]
    if rows:
        session.execute(insert(EmailMessage), rows)
    record_action(
        session,
        user,
        "email.send_to_everyone",
        f"Started campaign #{campaign.id}: {manifest.count} emails for {manifest.total}, "
        f"{len(manifest.skipped)} skipped",
        details={"campaign_id": campaign.id, "emails": manifest.count, "skipped": manifest.skip_counts,
                 "total_cents": manifest.total_cents},
    )
    if not manifest.recipients:
        campaign.status, campaign.finished_at = CampaignStatus.COMPLETED, utcnow()
    session.flush()
    return campaign


def send_test_email(
    sessions: Sessions,
    user: ActingUser,
    *,
    parent_id: int,
    test_address: str,
    email_type: EmailType,
    backend: EmailBackend,
    email_from: str,
) -> DrainResult:
    """Send one parent's real email to ``test_address``, subject marked ``[TEST]``.

    The address is validated before anything is written or sent. A test send is recorded (its
    own campaign and an audit row) but never counts as a reminder to the parent. Commits: the
    campaign in a unit of work of its own from ``sessions``, then the outbox sends it.
    """
    require(user, Permission.SEND_EMAIL)
    address = normalise_recipient(test_address)
    with unit_of_work(sessions) as session:
        balance = _balance_of(session, user, email_type, parent_id)
        brand = _league_brand(session, user, email_from=email_from)
        rendered = render_email(email_type, balance, brand, pay_links=_league_pay_links(session, user))
        campaign = EmailCampaign(
            tenant_id=user.tenant_id,
            email_type=email_type.key,
            cooldown_days=None,  # a test send is never held back and never holds a family back
            recipient_count=1,
            skipped_count=0,
            total_cents=balance.total_cents,
            audience={"scope": "test", "parent_id": parent_id},
            test_address=address,
            started_by=user.identity,
        )
        session.add(campaign)
        session.flush()
        session.add(
            EmailMessage(
                campaign_id=campaign.id,
                tenant_id=user.tenant_id,
                parent_id=parent_id,
                to_address=address,
                subject=mark_as_test(rendered.subject),
                amount_cents=balance.total_cents,
                currency=balance.currency,
                status=MessageStatus.PENDING,
                message_id_header=message_id_for(
                    tenant_id=user.tenant_id, campaign_id=campaign.id, parent_id=parent_id, domain=brand.sender_domain
                ),
                html_body=rendered.html,
                text_body=rendered.text,
            )
        )
        record_action(
            session,
            user,
            "email.test_send",
            f"Test send of {balance.parent_name}'s email to {address}",
            details={"campaign_id": campaign.id, "parent_id": parent_id, "to": address},
        )
        session.flush()
        campaign_id = campaign.id
    return drain_outbox(sessions, user, campaign_id, backend=backend, email_from=email_from, workers=1)


def run_campaign(
    sessions: Sessions,
    user: ActingUser,
    campaign_id: int,
    *,
    backend: EmailBackend,
    email_from: str,
    workers: int | None = None,
    progress: Callable[[DrainProgress], None] | None = None,
    sender: str | None = None,
) -> DrainResult:
    """Send (or resume) a campaign through the outbox and record the outcome in the audit log.

    ``sender``: the token of the run this is part of (``core.email.senders``). Commits: the
    outbox's own steps, then the audit row in a unit of work of its own.
    """
    result = drain_outbox(
        sessions, user, campaign_id, backend=backend, email_from=email_from, workers=workers, progress=progress,
        sender=sender,
    )
    with unit_of_work(sessions) as session:
        record_action(
            session,
            user,
            "email.campaign_run",
            # Skips decided when the campaign was queued are in its email.send_to_everyone entry.
            f"Campaign #{campaign_id}: {result.sent} sent, {result.failed} failed, "
            f"{result.skipped} skipped at send time, {result.interrupted} interrupted, "
            f"{result.remaining} still queued",
            details={"campaign_id": campaign_id, "stopped_reason": result.stopped_reason, "sent": result.sent,
                     "failed": result.failed, "skipped_at_send_time": result.skipped},
        )
    return result


def preview_email(
    session: Session,
    user: ActingUser,
    *,
    parent_id: int,
    email_type: EmailType,
    email_from: str,
) -> EmailPreview:
    """The exact message ``parent_id`` would get (headers, plain text, HTML), built as a send builds it.

    Only the Message-ID and Date differ from a real send: they are assigned when the campaign is.
    """
    require(user, Permission.PREVIEW_EMAIL)
    balance = _balance_of(session, user, email_type, parent_id)
    brand = _league_brand(session, user, email_from=email_from)
    rendered = render_email(email_type, balance, brand, pay_links=_league_pay_links(session, user))
    message = compose_message(
        rendered,
        brand=brand,
        to_name=balance.parent_name,
        to_address=balance.parent_email or "no-address@invalid",
        message_id=message_id_for(tenant_id=user.tenant_id, campaign_id=0, parent_id=parent_id, domain=brand.sender_domain),
    )
    return EmailPreview(
        message=message,
        rendered=rendered,
        headers=tuple((key, str(value)) for key, value in message.items()),
        parent_email=balance.parent_email,
    )


@dataclass(frozen=True)
class ParentChoice:
    """A parent who would get ``email_type``, for a preview or test-send picker."""

    parent_id: int
    label: str


@dataclass(frozen=True)
class CampaignSummary:
    """One campaign with how many of its messages are in each state."""

    id: int
    email_type: str
    started_at: datetime
    started_by: str
    test_address: str | None
    status: str
    total_cents: int
    currency: str
    counts: dict[str, int]
    # For an unfinished campaign: is a live run sending it? (None: nobody can tell.)
    sending_now: bool | None = None

    @property
    def is_test(self) -> bool:
        return self.test_address is not None

    @property
    def unfinished(self) -> bool:
        return _unfinished(self.counts)


@dataclass(frozen=True)
class MessageRow:
    """One outbox row as a result table shows it.

    ``status`` is as shown: ``sending`` while a worker has it, ``interrupted`` after. ``reason``
    is in words: why it was skipped, the error, or that it may have been delivered.
    """

    id: int
    parent_id: int
    parent_name: str
    to_address: str | None
    subject: str
    amount: str
    status: str
    reason: str | None
    sent_at: datetime | None
    provider_message_id: str | None
    has_body: bool
    message_id_header: str = ""
    # Queued, then skipped when its turn came: the family's situation changed since.
    skipped_at_send_time: bool = False


def parents_to_email(session: Session, user: ActingUser, email_type: EmailType) -> list[ParentChoice]:
    """Everyone ``email_type`` could be rendered for (from its audience), labelled with address and total."""
    require(user, Permission.PREVIEW_EMAIL)
    return [
        ParentChoice(
            balance.parent_id,
            f"{balance.parent_name} <{balance.parent_email}> — {format_cents(balance.total_cents, balance.currency)}"
            if balance.parent_email
            else f"{balance.parent_name} (no email) — {format_cents(balance.total_cents, balance.currency)}",
        )
        for balance in email_type.audience(session, user, None)
        if balance.items
    ]


def campaign_summaries(session: Session, user: ActingUser, *, limit: int = 200) -> list[CampaignSummary]:
    """The league's campaigns, newest first, with message counts by status (three queries)."""
    return _summaries(session, user, list_campaigns(session, user, limit=limit))


def _summaries(session: Session, user: ActingUser, campaigns: list[EmailCampaign]) -> list[CampaignSummary]:
    currency = session.get_one(Tenant, user.tenant_id).currency
    counts: dict[int, dict[str, int]] = {campaign.id: {} for campaign in campaigns}
    if campaigns:
        rows = session.execute(
            select(EmailMessage.campaign_id, EmailMessage.status, func.count())
            .where(EmailMessage.campaign_id.in_(list(counts)), EmailMessage.tenant_id == user.tenant_id)
            .group_by(EmailMessage.campaign_id, EmailMessage.status)
        )
        for campaign_id, status, count in rows:
            counts[campaign_id][status.value] = int(count)
    return [
        CampaignSummary(
            id=campaign.id,
            email_type=campaign.email_type,
            started_at=campaign.started_at,
            started_by=campaign.started_by,
            test_address=campaign.test_address,
            status=campaign.status.value,
            total_cents=campaign.total_cents,
            currency=currency,
            counts=counts[campaign.id],
            sending_now=_sending_now(session, campaign.sender) if _unfinished(counts[campaign.id]) else None,
        )
        for campaign in campaigns
    ]


def message_rows(session: Session, user: ActingUser, campaign_id: int) -> list[MessageRow]:
    """The campaign's result table: every parent with what happened and why."""
    require(user, Permission.PREVIEW_EMAIL)
    now = utcnow()
    rows = session.execute(
        select(
            EmailMessage.id, EmailMessage.parent_id, Parent.name, EmailMessage.to_address, EmailMessage.subject,
            EmailMessage.amount_cents, EmailMessage.currency, EmailMessage.status, EmailMessage.skip_reason,
            EmailMessage.skip_campaign_id, EmailCampaign.cooldown_days, EmailMessage.error, EmailMessage.sent_at,
            EmailMessage.provider_message_id, EmailMessage.html_body.is_not(None), EmailMessage.claimed_at,
            EmailMessage.message_id_header, EmailMessage.attempts,
        )
        .join(Parent, Parent.id == EmailMessage.parent_id)
        .join(EmailCampaign, EmailCampaign.id == EmailMessage.campaign_id)
        .where(EmailMessage.campaign_id == campaign_id, EmailMessage.tenant_id == user.tenant_id)
        .order_by(Parent.name, EmailMessage.id)
    )
    result = [
        MessageRow(
            id=id_, parent_id=parent_id, parent_name=name, to_address=to, subject=subject,
            amount=format_cents(amount, currency),
            status=shown,
            reason=(
                describe_skip(skip_reason, campaign_id=skip_campaign_id, cooldown_days=cooldown_days)
                if skip_reason is not None
                else {"sending": IN_FLIGHT, "interrupted": error or INTERRUPTED}.get(shown, error)
            ),
            sent_at=sent_at, provider_message_id=provider_id, has_body=bool(has_body),
            message_id_header=message_id_header,
            skipped_at_send_time=status is MessageStatus.SKIPPED and attempts > 0,
        )
        for (id_, parent_id, name, to, subject, amount, currency, status, skip_reason, skip_campaign_id,
             cooldown_days, error, sent_at, provider_id, has_body, claimed_at, message_id_header, attempts) in rows
        for shown in (_shown_status(status, error=error, claimed_at=claimed_at, now=now),)
    ]
    # What needs the admin's attention first: failures, then interrupted, being sent, queued, sent, skipped.
    rank = {"failed": 0, "interrupted": 1, "sending": 2, "pending": 3, "sent": 4, "skipped": 5}
    return sorted(result, key=lambda row: rank[row.status])


def unfinished_campaigns(session: Session, user: ActingUser) -> list[CampaignSummary]:
    """Sends to everyone (not tests) that still have messages queued, being sent or interrupted,
    oldest first: a new send skips their families until they are finished."""
    require(user, Permission.PREVIEW_EMAIL)
    unfinished = select(EmailMessage.campaign_id).where(
        EmailMessage.tenant_id == user.tenant_id,
        EmailMessage.status.in_([MessageStatus.PENDING, MessageStatus.SENDING]),
    )
    campaigns = list(session.scalars(
        select(EmailCampaign)
        .where(EmailCampaign.tenant_id == user.tenant_id, reminder_campaigns(),
               EmailCampaign.id.in_(unfinished))
        .order_by(EmailCampaign.id)
    ))
    return _summaries(session, user, campaigns)


def list_campaigns(session: Session, user: ActingUser, *, limit: int = 200) -> list[EmailCampaign]:
    """The league's campaigns, newest first."""
    require(user, Permission.PREVIEW_EMAIL)
    return list(
        session.scalars(
            select(EmailCampaign)
            .where(EmailCampaign.tenant_id == user.tenant_id)
            .order_by(EmailCampaign.started_at.desc(), EmailCampaign.id.desc())
            .limit(limit)
        )
    )


def campaign_messages(session: Session, user: ActingUser, campaign_id: int) -> list[EmailMessage]:
    """Every outbox row of one campaign (with its parent), by parent name."""
    require(user, Permission.PREVIEW_EMAIL)
    return list(
        session.scalars(
            select(EmailMessage)
            .join(Parent, Parent.id == EmailMessage.parent_id)
            .where(EmailMessage.campaign_id == campaign_id, EmailMessage.tenant_id == user.tenant_id)
            .order_by(Parent.name, EmailMessage.id)
        )
    )


def get_message(session: Session, user: ActingUser, message_id: int) -> EmailMessage:
    """One sent (or queued) message of the league, with the exact HTML and text it carried."""
    require(user, Permission.PREVIEW_EMAIL)
    message = session.scalars(
        select(EmailMessage).where(EmailMessage.id == message_id, EmailMessage.tenant_id == user.tenant_id)
    ).one_or_none()
    if message is None:
        raise NotFound(f"No email message #{message_id} in this league.")
    return message


def _unfinished(counts: dict[str, int]) -> bool:
    return bool(counts.get("pending") or counts.get("sending"))


def _sending_now(session: Session, sender: str | None) -> bool | None:
    """Whether the run driving a campaign is alive: False when none is (it stopped, or ended)."""
    return False if sender is None else sender_alive(session, sender)


def _emails(count: int) -> str:
    return plural(count, "email")


def _shown_status(status: MessageStatus, *, error: str | None, claimed_at: datetime | None, now: datetime) -> str:
    """A ``sending`` row is shown as ``sending`` while a worker has it, ``interrupted`` after."""
    if status is MessageStatus.SENDING:
        return "sending" if is_in_flight(status, error=error, claimed_at=claimed_at, now=now) else "interrupted"
    return status.value


def _other_reminders(
    session: Session, user: ActingUser, *, now: datetime, cooldown_days: int
) -> dict[int, list[OtherReminder]]:
    """The reminders that can hold each parent back from a new send (parent id -> reminders).

    Within the cool-down: one sent (or possibly sent) that was not a test. Whatever the
    cool-down: one being sent right now, one that may have been sent (awaiting the admin's
    decision), one queued in a campaign still running, and one sent by a campaign still sending (messages queued or in flight, and one claimed within
    ``STALE_CLAIM_AFTER``). ``core.email.skip_reasons`` decides which one holds the parent and
    how. A send that stopped (the daily quota, a crash) holds only what it still has queued,
    not every parent it ever emailed.
    """
    since = now - timedelta(days=cooldown_days)
    unfinished, claimed = aliased(EmailMessage), aliased(EmailMessage)
    in_progress = and_(
        EmailCampaign.status == CampaignStatus.RUNNING,
        select(unfinished.id).where(
            unfinished.campaign_id == EmailMessage.campaign_id,
            or_(unfinished.status == MessageStatus.PENDING, in_flight_messages(now, unfinished)),
        ).exists(),
        select(claimed.id).where(
            claimed.campaign_id == EmailMessage.campaign_id, claimed.claimed_at >= now - STALE_CLAIM_AFTER,
        ).exists(),
    )
    rows = session.execute(
        select(
            EmailMessage.parent_id, EmailMessage.campaign_id, EmailMessage.status, EmailMessage.error,
            EmailMessage.claimed_at, EmailMessage.sent_at, in_progress,
        )
        .join(EmailCampaign, EmailCampaign.id == EmailMessage.campaign_id)
        .where(
            EmailMessage.tenant_id == user.tenant_id,
            reminder_campaigns(),
            counts_as_reminder_since(since)
            | in_flight_messages(now)
            | (
                (EmailCampaign.status == CampaignStatus.RUNNING)
                & EmailMessage.status.in_([MessageStatus.PENDING, MessageStatus.SENT, MessageStatus.SENDING])
            ),
        )
        .order_by(EmailMessage.id)
    ).all()
    others: dict[int, list[OtherReminder]] = {}
    for parent_id, campaign_id, status, error, claimed_at, sent_at, campaign_in_progress in rows:
        state = reminder_state(status, error=error, claimed_at=claimed_at, now=now)
        if state is not None:
            others.setdefault(parent_id, []).append(OtherReminder(
                campaign_id, state, at=sent_at if status is MessageStatus.SENT else claimed_at,
                campaign_in_progress=bool(campaign_in_progress),
            ))
    return others


def _outbox_row(campaign: EmailCampaign, entry: ManifestEntry, email_type: EmailType, brand: Brand,
                pay_links: EmailPayLinks) -> dict[str, object]:
    row: dict[str, object] = {
        "campaign_id": campaign.id,
        "tenant_id": campaign.tenant_id,
        "parent_id": entry.parent_id,
        "to_address": entry.email,
        "amount_cents": entry.amount_cents,
        "currency": entry.currency,
        "message_id_header": message_id_for(
            tenant_id=campaign.tenant_id, campaign_id=campaign.id, parent_id=entry.parent_id, domain=brand.sender_domain
        ),
        "status": MessageStatus.SKIPPED if entry.skip else MessageStatus.PENDING,
        "skip_reason": entry.skip.reason if entry.skip else None,
        "skip_campaign_id": entry.skip.campaign_id if entry.skip else None,
        "subject": "",
        "html_body": None,
        "text_body": None,
        "attempts": 0,
        "created_at": utcnow(),
    }
    if entry.skip is None and entry.balance is not None:
        rendered = render_email(email_type, entry.balance, brand, pay_links=pay_links)
        row.update(subject=rendered.subject, html_body=rendered.html, text_body=rendered.text)
    return row


def _balance_of(session: Session, user: ActingUser, email_type: EmailType, parent_id: int) -> OutstandingBalance:
    parent = session.scalars(
        select(Parent).where(Parent.id == parent_id, Parent.tenant_id == user.tenant_id)
    ).one_or_none()
    if parent is None:
        raise NotFound(f"No parent #{parent_id} in this league.")
    balances = email_type.audience(session, user, frozenset({parent_id}))
    if not balances or not balances[0].items:
        raise InvalidInput(f"{parent.name} owes nothing: there is no email to send.")
    return balances[0]


def _lock_league(session: Session, user: ActingUser) -> None:
    """Serialise campaign starts in one league until the caller commits.

    PostgreSQL: ``SELECT ... FOR UPDATE`` on the tenant row. SQLite: a no-op ``UPDATE`` that
    takes the database's write lock before the manifest is read.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(Tenant.id).where(Tenant.id == user.tenant_id).with_for_update())
    else:
        session.execute(update(Tenant).where(Tenant.id == user.tenant_id).values(slug=Tenant.slug))

