"""The durable outbox: every recipient is an ``email_messages`` row, sent one committed step at a time.

``drain_outbox`` claims a pending row and commits it as ``sending`` BEFORE the provider is
called, then commits ``sent`` (or ``failed``) AFTER. So a crash, a closed browser tab or a
restart leaves at most the message that was in flight as ``sending``: a later drain never sends
a ``sent`` row again and never re-sends a ``sending`` one on its own (it is reported as
interrupted — it may have been delivered — and only an explicit retry puts it back in the queue).

A ``sending`` row is *in flight* while its run is alive (``core.email.senders``: an advisory
lock on PostgreSQL, the process on SQLite — a killed run is known at once), its claim is younger
than ``STALE_CLAIM_AFTER`` (longer than any backend can take over one message; the only limit
for a run nobody can check) and no worker has reported on it; otherwise it is *interrupted*:
``interrupt_dead_claims`` records that as soon as anyone looks. An interrupted message may have
been delivered: a backend that can search its sent mail (Gmail) settles it; the others leave it
for the admin's decision (``settle_interrupted``: "it was sent" or "send it again"). Only
interrupted rows are reported as such and can be put back in the queue, so a retry never
re-sends a message another worker is sending right now. A worker records its outcome against its own claim (the row's
``attempts``), so a send that finishes late is still recorded, even if the row was re-queued.

Two drains of one campaign (threads, processes, or dashboard replicas) claim rows with
``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL and a conditional ``UPDATE`` on SQLite, so
no row is claimed twice. Two campaigns cannot both email one parent: the claim locks the parent
row and asks the one skip rule (``core.email.skip_reasons.decide_skip``) whether another
reminder to that parent is in flight, or was sent since this message was queued or within the
cool-down, and whether the parent still owes what the queued email says (the one balances
function) and has not opted out since; a skipped row records why (``skip_reason``).

Sessions: the functions here that send take ``sessions`` (``core.db.Sessions``) and commit in
sessions of their own; ``retry_messages``, ``settle_interrupted`` and ``interrupt_dead_claims``
take a ``Session`` and never commit.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Connection, CursorResult, Engine, Update, and_, func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, Permission, require
from core.db import Sessions, as_sessions
from core.email.backends import DeliveryUncertain, EmailBackend, SentMailSearch
from core.email.brand import Brand, brand_for_tenant
from core.email.registry import REMINDER_TYPES, Audience, get_email_type
from core.email.rendering import RenderedEmail, compose_message
from core.email.senders import describe_sender, live_sender, sender_alive
from core.email.skip_reasons import Family, OtherReminder, QueuedEmail, ReminderState, Skip, decide_skip
from core.errors import EmailDeliveryError, InvalidInput, NotFound
from core.models import (
    CampaignStatus,
    EmailCampaign,
    EmailMessage,
    MessageStatus,
    Parent,
    Tenant,
    utcnow,
)
from core.reporting.balances import OutstandingBalance

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted — may have been delivered; retry it only if the parent did not get it"
IN_FLIGHT = "being sent"
NOT_IN_SENT_MAIL = "not found in the sent mail"
# How long a drain waits for rows another run is claiming at that very moment (PostgreSQL skips
# rows locked by a claim in progress) before it reports them as still queued.
CLAIMS_SETTLE_WITHIN = timedelta(seconds=30)
# A claim older than this is no longer in flight: its worker stopped without recording an
# outcome. It must be longer than the longest a backend can spend on one message (Gmail:
# six attempts of at most 60 s each and five back-offs of at most 65 s, about 11.5 minutes;
# SMTP: a few 30 s timeouts), so a slow send is never taken for an abandoned one.
STALE_CLAIM_AFTER = timedelta(minutes=15)


@dataclass(frozen=True)
class DrainProgress:
    """How far a drain has got; handed to the ``progress`` callback after every message."""

    done: int
    total: int
    sent: int
    failed: int
    skipped: int


@dataclass(frozen=True)
class DrainResult:
    """What one drain did.

    ``interrupted`` counts the campaign's rows left ``sending`` that no worker is sending any
    more; ``in_flight`` the ones another worker is sending right now (not this drain's concern).
    """

    campaign_id: int
    sent: int
    failed: int
    skipped: int
    interrupted: int
    remaining: int
    stopped_reason: str | None = None
    in_flight: int = 0

    @property
    def succeeded(self) -> bool:
        return self.failed == 0 and self.interrupted == 0 and self.remaining == 0


@dataclass
class _Tally:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    interrupted: int = 0
    stopped_reason: str | None = None
    errors: list[BaseException] = field(default_factory=list)


def drain_outbox(
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
    """Send the campaign's pending messages, committing each one before and after the provider call.

    A message is skipped at claim time when another reminder to its parent is being sent, or
    was sent since the message was queued or within the campaign's cool-down; and when the
    parent paid, opted out or now owes a different amount since it was queued (the skip reason
    says which).

    Durable per message: this opens its own sessions from ``sessions`` (``core.db.Sessions``; an
    engine is accepted too) and commits after every step. ``workers`` threads send at once (default: what the
    backend allows). ``progress`` is called in the calling thread after every message. Stops
    early, leaving the rest pending, when the provider's daily quota is exhausted.

    ``sender`` is the token of the run this drain is part of (``core.email.senders``); without
    one the drain holds its own. Claims left by runs that died are marked interrupted first,
    and where the backend can search its sent mail (``SentMailSearch``), an interrupted message
    it finds there is recorded as sent; the others wait for the admin's decision
    (``settle_interrupted``). Nothing is ever sent again on its own.
    """
    require(user, Permission.VIEW_LEAGUE)
    make_session = as_sessions(sessions)
    with make_session() as session:
        email_type = get_email_type(_load_campaign(session, user, campaign_id).email_type)
    require(user, email_type.send_permission)  # a reminder: the admin's; a receipt: who records payments too
    with _sender_for(make_session, sender) as token:
        with make_session() as session:
            campaign = _load_campaign(session, user, campaign_id)
            brand = brand_for_tenant(session.get_one(Tenant, user.tenant_id), email_from=email_from)
            is_test = campaign.is_test
            if campaign.cooldown_days is None and not is_test:
                raise InvalidInput(f"Email campaign #{campaign_id} has no cool-down recorded; start a new send.")
            cooldown_days = campaign.cooldown_days or 0  # a test send is never held back
            _mark_dead_claims(session, user, campaign_id=campaign_id)
            total = _count(session, campaign_id, MessageStatus.PENDING)
            if campaign.status is not CampaignStatus.RUNNING and total:
                campaign.status, campaign.finished_at = CampaignStatus.RUNNING, None
            if total:
                campaign.sender = token  # this run drives it now
            session.commit()
        _ask_the_provider(make_session, campaign_id, backend)
        job = _Drain(
            make_session,
            user,
            campaign_id,
            token=token,
            is_test=is_test,
            cooldown_days=cooldown_days,
            backend=backend,
            brand=brand,
            audience=email_type.audience,
            reminder=email_type.reminder,
        )
        tally = job.run(workers or max(1, backend.parallel_sends), total=total, progress=progress)
        _ask_the_provider(make_session, campaign_id, backend)  # what this run left uncertain
        with make_session() as session:
            _mark_dead_claims(session, user, campaign_id=campaign_id)
            now = utcnow()
            interrupted = _count_where(session, campaign_id, interrupted_messages(now))
            in_flight = _count_where(session, campaign_id, in_flight_messages(now))
            remaining = _count(session, campaign_id, MessageStatus.PENDING)
            _settle_campaign(session, campaign_id, unfinished=interrupted + in_flight + remaining, token=token)
            session.commit()
    return DrainResult(
        campaign_id=campaign_id,
        sent=tally.sent,
        failed=tally.failed,
        skipped=tally.skipped,
        interrupted=interrupted,
        remaining=remaining,
        stopped_reason=tally.stopped_reason,
        in_flight=in_flight,
    )


def retry_messages(
    session: Session, user: ActingUser, campaign_id: int, *, failed: bool = True, interrupted: bool = False
) -> int:
    """Put the campaign's failed messages (and, when asked, interrupted ones) back in the queue.

    An interrupted message may already have been delivered; only the admin can decide to send it
    again, so it is retried only with ``interrupted=True``. A message another worker is sending
    right now (claimed less than ``STALE_CLAIM_AFTER`` ago) is never put back. Returns how many
    were queued. The caller commits.
    """
    require(user, Permission.VIEW_LEAGUE)
    campaign = _load_campaign(session, user, campaign_id)
    require(user, get_email_type(campaign.email_type).send_permission)
    which = ([EmailMessage.status == MessageStatus.FAILED] if failed else []) + (
        [interrupted_messages(utcnow())] if interrupted else []
    )
    if not which:
        return 0
    # ``attempts`` is left as it is: it identifies the last claim, so if that worker does
    # finish after all, its outcome is still recorded on this row (see ``_Drain._finish``).
    requeued = _updated(session, (
        update(EmailMessage)
        .where(
            EmailMessage.campaign_id == campaign.id,
            EmailMessage.tenant_id == user.tenant_id,
            or_(*which),
        )
        .values(status=MessageStatus.PENDING, error=None)
    ))
    if requeued:
        campaign.status, campaign.finished_at = CampaignStatus.RUNNING, None
    session.flush()
    return requeued


def settle_interrupted(
    session: Session,
    user: ActingUser,
    campaign_id: int,
    *,
    sent: Collection[str] = (),
    send_again: Collection[str] = (),
) -> tuple[int, int]:
    """The admin's decision on interrupted messages (each named by its number or its Message-ID).

    ``sent``: the admin found it in the sent mail; it is recorded as sent (when it was claimed)
    and never sent again. ``send_again``: the family did not get it; it goes back in the queue.
    Only interrupted messages are settled (``InvalidInput`` names any other). Returns (recorded
    as sent, queued again). The caller commits.
    """
    require(user, Permission.SEND_EMAIL)
    campaign = _load_campaign(session, user, campaign_id)
    now = utcnow()
    chosen = {"sent": _interrupted_ids(session, campaign, sent, now=now),
              "again": _interrupted_ids(session, campaign, send_again, now=now)}
    if chosen["sent"] & chosen["again"]:
        raise InvalidInput("A message cannot be both sent and sent again: choose one for each.")
    marked_sent = _settle(session, chosen["sent"], now=now, status=MessageStatus.SENT, sent_at=EmailMessage.claimed_at)
    queued_again = _settle(session, chosen["again"], now=now, status=MessageStatus.PENDING)
    if queued_again:
        campaign.status, campaign.finished_at = CampaignStatus.RUNNING, None
    session.flush()
    return marked_sent, queued_again


def interrupt_dead_claims(session: Session, user: ActingUser, *, campaign_id: int | None = None) -> int:
    """Mark interrupted, at once, the claims of runs that died (``core.email.senders``).

    A message claimed by a run that is gone cannot be "being sent" any more: it may or may not
    have been delivered, so it waits for the admin's decision like any interrupted message.
    Claims whose run cannot be checked keep the ``STALE_CLAIM_AFTER`` limit. Returns how many
    were marked; the caller commits.
    """
    require(user, Permission.SEND_EMAIL)
    return _mark_dead_claims(session, user, campaign_id=campaign_id)


def _mark_dead_claims(session: Session, user: ActingUser, *, campaign_id: int | None) -> int:
    """``interrupt_dead_claims`` after the caller's own ``require`` (a drain's, by email type)."""
    scope = [
        EmailMessage.tenant_id == user.tenant_id,
        EmailMessage.status == MessageStatus.SENDING,
        EmailMessage.error.is_(None),
        EmailMessage.claimed_by.is_not(None),
    ]
    if campaign_id is not None:
        scope.append(EmailMessage.campaign_id == campaign_id)
    tokens = session.scalars(select(EmailMessage.claimed_by).where(*scope).distinct()).all()
    marked = 0
    for token in tokens:
        if sender_alive(session, token) is False:
            marked += _updated(session, (
                update(EmailMessage)
                .where(*scope, EmailMessage.claimed_by == token)
                .values(error=f"{INTERRUPTED}: its run stopped ({describe_sender(token)})")
            ))
    if marked:
        log.warning("%d messages were claimed by runs that stopped: interrupted", marked)
    session.flush()
    return marked


def in_flight_messages(now: datetime, message: type[EmailMessage] = EmailMessage) -> ColumnElement[bool]:
    """Messages a worker is sending right now: claimed recently, no outcome reported yet.

    ``message`` is the entity to test (``EmailMessage`` or an alias of it).
    """
    return and_(
        message.status == MessageStatus.SENDING,
        message.error.is_(None),
        message.claimed_at >= now - STALE_CLAIM_AFTER,
    )


def interrupted_messages(now: datetime) -> ColumnElement[bool]:
    """Messages left ``sending`` that no worker is sending any more (they may have been delivered).

    Either the worker reported that delivery is uncertain (it recorded an error), or the claim
    is older than ``STALE_CLAIM_AFTER`` (the worker stopped without a word: killed, crashed).
    """
    return and_(
        EmailMessage.status == MessageStatus.SENDING,
        or_(EmailMessage.error.is_not(None), EmailMessage.claimed_at < now - STALE_CLAIM_AFTER),
    )


def is_in_flight(status: MessageStatus, *, error: str | None, claimed_at: datetime | None, now: datetime) -> bool:
    """``in_flight_messages`` for one row already read."""
    return (
        status is MessageStatus.SENDING
        and error is None
        and claimed_at is not None
        and claimed_at >= now - STALE_CLAIM_AFTER
    )


def reminder_state(
    status: MessageStatus, *, error: str | None, claimed_at: datetime | None, now: datetime
) -> ReminderState | None:
    """What a message of another campaign is to the skip rule (``core.email.skip_reasons``).

    Queued, being sent by a live worker, sent, or possibly sent (interrupted in the provider
    call); ``None`` for a message that never reached the family (failed, skipped). The caller
    reads queued messages only from campaigns still running.
    """
    if status is MessageStatus.PENDING:
        return ReminderState.QUEUED
    if status is MessageStatus.SENT:
        return ReminderState.SENT
    if status is MessageStatus.SENDING:
        if is_in_flight(status, error=error, claimed_at=claimed_at, now=now):
            return ReminderState.BEING_SENT
        return ReminderState.MAY_HAVE_BEEN_SENT
    return None


def family_now(balance: OutstandingBalance | None, *, email: str | None, opted_out: bool) -> Family:
    """The family as the skip rule sees it, from their balance (the one balances function)."""
    items = balance.items if balance is not None else ()
    return Family(
        owes=bool(items),
        opted_out=opted_out,
        email=email,
        all_processing=bool(items) and all(item.processing for item in items),
        total_cents=balance.total_cents if balance is not None else 0,
        currency=balance.currency if balance is not None else "",
    )


def reminder_campaigns() -> ColumnElement[bool]:
    """Campaigns that remind families (``EmailType.reminder``), test sends left out: a test, or a
    receipt, never uses up a parent's cool-down and never holds a reminder back."""
    return and_(EmailCampaign.test_address.is_(None), EmailCampaign.email_type.in_(sorted(REMINDER_TYPES)))


def counts_as_reminder_since(since: datetime) -> ColumnElement[bool]:
    """Messages (joined to their campaign) that count as a reminder since ``since``.

    Sent or being sent, by a reminder campaign (``reminder_campaigns``).
    """
    return and_(
        reminder_campaigns(),
        or_(
            and_(EmailMessage.status == MessageStatus.SENT, EmailMessage.sent_at >= since),
            and_(EmailMessage.status == MessageStatus.SENDING, EmailMessage.claimed_at >= since),
        ),
    )


class _Drain:
    """One drain of one campaign, by one or more worker threads."""

    def __init__(
        self,
        make_session: Sessions,
        user: ActingUser,
        campaign_id: int,
        *,
        token: str,
        is_test: bool,
        cooldown_days: int,
        backend: EmailBackend,
        brand: Brand,
        audience: Audience,
        reminder: bool = True,
    ) -> None:
        self.make_session = make_session
        self.user = user
        self.campaign_id = campaign_id
        self.token = token
        self.is_test = is_test
        self.cooldown_days = cooldown_days
        self.backend = backend
        self.brand = brand
        self.audience = audience
        self.reminder = reminder
        self.stop = threading.Event()
        self.events: queue.Queue[str] = queue.Queue()
        self.tally = _Tally()
        self.lock = threading.Lock()
        self.settle_deadline: float | None = None

    def run(
        self, workers: int, *, total: int, progress: Callable[[DrainProgress], None] | None
    ) -> _Tally:
        threads = [
            threading.Thread(target=self._work, name=f"outbox-{self.campaign_id}-{n}", daemon=True)
            for n in range(workers)
        ]
        for thread in threads:
            thread.start()
        done = 0
        try:
            while any(thread.is_alive() for thread in threads) or not self.events.empty():
                try:
                    self.events.get(timeout=0.05)
                except queue.Empty:
                    continue
                done += 1
                if progress is not None:
                    with self.lock:
                        snapshot = DrainProgress(
                            done, max(total, done), self.tally.sent, self.tally.failed, self.tally.skipped
                        )
                    progress(snapshot)
        except BaseException:
            # Ctrl-C or a failing progress callback: let the in-flight messages finish and record.
            self.stop.set()
            for thread in threads:
                thread.join()
            raise
        for thread in threads:
            thread.join()
        if self.tally.errors:
            raise self.tally.errors[0]
        return self.tally

    def _work(self) -> None:
        try:
            with self.make_session() as session:
                while not self.stop.is_set():
                    claimed = self._claim_next(session)
                    if claimed is None:
                        return
                    self._send(session, claimed)
        except BaseException as exc:  # a crash: stop the others and re-raise in the caller
            self.stop.set()
            with self.lock:
                self.tally.errors.append(exc)

    def _claim_next(self, session: Session) -> EmailMessage | None:
        """Claim one pending row as ``sending`` and commit; ``None`` when nothing is left.

        Before it is committed, the claim re-checks (for a real send, not a test) that the
        parent is not being or has not been emailed by another campaign, and that the queued
        email is still true: otherwise the row is committed ``skipped`` with the reason.
        """
        postgres = session.get_bind().dialect.name == "postgresql"
        while not self.stop.is_set():
            candidate = select(EmailMessage.id, EmailMessage.parent_id).where(
                EmailMessage.campaign_id == self.campaign_id,
                EmailMessage.tenant_id == self.user.tenant_id,
                EmailMessage.status == MessageStatus.PENDING,
            ).order_by(EmailMessage.id).limit(1)
            if postgres:
                candidate = candidate.with_for_update(skip_locked=True)
            row = session.execute(candidate).first()
            if row is None:
                session.rollback()
                if postgres and self._pending_locked_by_another_claim(session):
                    continue
                return None
            message_id, parent_id = row
            if postgres and not self.is_test:
                # Serialises claims for one parent across campaigns (NO KEY UPDATE: inserts may go on).
                session.execute(select(Parent.id).where(Parent.id == parent_id).with_for_update(key_share=True))
            now = utcnow()
            claimed = _updated(session, (
                update(EmailMessage)
                .where(EmailMessage.id == message_id, EmailMessage.status == MessageStatus.PENDING)
                .values(
                    status=MessageStatus.SENDING, claimed_at=now, claimed_by=self.token,
                    attempts=EmailMessage.attempts + 1, error=None,
                )
            ))
            if not claimed:
                session.rollback()
                continue
            message = session.get_one(EmailMessage, message_id, populate_existing=True)
            skip = self._skip(session, message, now=now) if self.reminder and not self.is_test else None
            if skip is not None:
                session.execute(
                    update(EmailMessage)
                    .where(EmailMessage.id == message_id)
                    .values(status=MessageStatus.SKIPPED, skip_reason=skip.reason, skip_campaign_id=skip.campaign_id)
                    .execution_options(synchronize_session=False)
                )
                session.commit()
                self._record("skipped")
                continue
            session.commit()
            return message
        return None

    def _pending_locked_by_another_claim(self, session: Session) -> bool:
        """Whether pending rows remain that another run is claiming right now (SKIP LOCKED hid
        them): wait for its claim to land, so this drain does not report them still queued."""
        if self.settle_deadline is None:
            self.settle_deadline = time.monotonic() + CLAIMS_SETTLE_WITHIN.total_seconds()
        pending = _count(session, self.campaign_id, MessageStatus.PENDING)
        session.rollback()
        if not pending or time.monotonic() > self.settle_deadline:
            return False
        time.sleep(0.05)
        return True

    def _skip(self, session: Session, message: EmailMessage, *, now: datetime) -> Skip | None:
        """Whether to skip the message after all (``core.email.skip_reasons.decide_skip``)."""
        balances = self.audience(session, self.user, frozenset({message.parent_id}))
        balance = balances[0] if balances else None
        family = family_now(
            balance,
            email=balance.parent_email if balance else None,
            opted_out=balance.email_opt_out if balance else False,
        )
        queued = QueuedEmail(
            queued_at=message.created_at, amount_cents=message.amount_cents, currency=message.currency,
            to_address=message.to_address,
        )
        return decide_skip(
            family, self._other_reminders(session, message, now=now), now=now,
            cooldown_days=self.cooldown_days, queued=queued,
        )

    def _other_reminders(self, session: Session, message: EmailMessage, *, now: datetime) -> Sequence[OtherReminder]:
        """Other campaigns' reminders to this parent that can hold this message back.

        Being sent right now or possibly sent (whenever), or sent since this message was queued
        or within the cool-down; the rule decides which holds it.
        """
        since = min(now - timedelta(days=self.cooldown_days), message.created_at)
        rows = session.execute(
            select(EmailMessage.campaign_id, EmailMessage.status, EmailMessage.error, EmailMessage.claimed_at,
                   EmailMessage.sent_at)
            .join(EmailCampaign, EmailCampaign.id == EmailMessage.campaign_id)
            .where(
                EmailMessage.tenant_id == self.user.tenant_id,
                EmailMessage.parent_id == message.parent_id,
                EmailMessage.id != message.id,
                reminder_campaigns(),
                or_(EmailMessage.status == MessageStatus.SENDING, counts_as_reminder_since(since)),
            )
            .order_by(EmailMessage.id)
        ).all()
        return [
            OtherReminder(campaign_id, state, at=sent_at if status is MessageStatus.SENT else claimed_at)
            for campaign_id, status, error, claimed_at, sent_at in rows
            if (state := reminder_state(status, error=error, claimed_at=claimed_at, now=now)) is not None
        ]

    def _send(self, session: Session, row: EmailMessage) -> None:
        message = compose_message(
            RenderedEmail(subject=row.subject, html=row.html_body or "", text=row.text_body or ""),
            brand=self.brand,
            to_name="" if self.is_test else row.parent.name,
            to_address=row.to_address or "",
            message_id=row.message_id_header,
            date=row.claimed_at,
            unsubscribe=self.reminder,  # a receipt offers none: an opt-out of reminders does not stop it
        )
        claim = row.attempts
        try:
            provider_id = self.backend.send(message)
        except DeliveryUncertain as exc:
            # Left ``sending``: only the admin may decide to send it again.
            self._finish(session, row.id, claim, error=f"{INTERRUPTED}: {exc}", status=MessageStatus.SENDING)
            self._record("interrupted")
            return
        except EmailDeliveryError as exc:
            if exc.quota_exhausted:
                self._finish(session, row.id, claim, error=str(exc), status=MessageStatus.PENDING)
                with self.lock:
                    self.tally.stopped_reason = str(exc)
                self.stop.set()
                return
            log.warning("Message %s to parent %s failed: %s", row.id, row.parent_id, exc)
            self._finish(session, row.id, claim, error=str(exc), status=MessageStatus.FAILED)
            self._record("failed")
            return
        except BaseException as exc:
            # A crash or Ctrl-C inside the provider call: the message may have gone out. Say
            # so on the row at once, so it shows as interrupted rather than in flight.
            session.rollback()
            self._finish(
                session, row.id, claim, status=MessageStatus.SENDING,
                error=f"{INTERRUPTED}: the send stopped ({type(exc).__name__})",
            )
            raise
        self._finish(session, row.id, claim, provider_id=provider_id, status=MessageStatus.SENT)
        self._record("sent")

    def _finish(
        self,
        session: Session,
        message_id: int,
        claim: int,
        *,
        status: MessageStatus,
        provider_id: str | None = None,
        error: str | None = None,
    ) -> None:
        """Record the outcome of this worker's claim (``claim`` is the row's ``attempts`` then).

        Matched on the claim, not on the status: if the row was put back in the queue while
        this send took too long, the outcome is still recorded (a delivered message becomes
        ``sent`` and is not sent again). Only a newer claim of the row wins over it.
        """
        values: dict[str, object] = {"status": status, "error": error}
        if status is MessageStatus.SENT:
            values.update(provider_message_id=provider_id, sent_at=utcnow())
        recorded = _updated(session, (
            update(EmailMessage)
            .where(EmailMessage.id == message_id, EmailMessage.attempts == claim)
            .values(**values)
        ))
        session.commit()
        if not recorded:
            log.warning(
                "Message %s was claimed again before this send finished; its outcome (%s) was not recorded",
                message_id, status.value,
            )

    def _record(self, outcome: str) -> None:
        with self.lock:
            setattr(self.tally, outcome, getattr(self.tally, outcome) + 1)
        self.events.put(outcome)


def _load_campaign(session: Session, user: ActingUser, campaign_id: int) -> EmailCampaign:
    campaign = session.scalars(
        select(EmailCampaign).where(EmailCampaign.id == campaign_id, EmailCampaign.tenant_id == user.tenant_id)
    ).one_or_none()
    if campaign is None:
        raise NotFound(f"No email campaign #{campaign_id} in this league.")
    return campaign


def _count(session: Session, campaign_id: int, status: MessageStatus) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(EmailMessage)
            .where(EmailMessage.campaign_id == campaign_id, EmailMessage.status == status)
        )
        or 0
    )


def _count_where(session: Session, campaign_id: int, condition: ColumnElement[bool]) -> int:
    return int(
        session.scalar(
            select(func.count()).select_from(EmailMessage).where(EmailMessage.campaign_id == campaign_id, condition)
        )
        or 0
    )


def _settle_campaign(session: Session, campaign_id: int, *, unfinished: int, token: str) -> None:
    campaign = session.get_one(EmailCampaign, campaign_id)
    if campaign.sender == token:
        campaign.sender = None  # this run no longer drives it
    if unfinished:
        campaign.status, campaign.finished_at = CampaignStatus.RUNNING, None
        return
    failed = _count(session, campaign_id, MessageStatus.FAILED)
    campaign.status = CampaignStatus.FAILED if failed else CampaignStatus.COMPLETED
    campaign.finished_at = utcnow()


@contextmanager
def send_run(sessions: Sessions) -> Iterator[str]:
    """One run that sends: its sender token (``core.email.senders``), alive until the block ends.

    When it ends, however it ends, the campaigns the run still drives are let go, so none is
    shown as being sent by a run that is over (on SQLite its process may well live on).
    """
    make_session = as_sessions(sessions)
    with live_sender(engine_of(make_session)) as token:
        try:
            yield token
        finally:
            _let_go(make_session, token)


@contextmanager
def _sender_for(sessions: Sessions, token: str | None) -> Iterator[str]:
    if token is not None:
        yield token
        return
    with send_run(sessions) as own:
        yield own


def engine_of(sessions: Sessions) -> Engine:
    """The engine behind a session factory (also when it is bound to a connection)."""
    bind = as_sessions(sessions).kw.get("bind")
    if isinstance(bind, Connection):
        return bind.engine
    if isinstance(bind, Engine):
        return bind
    raise TypeError("the session factory is not bound to a database")


def _interrupted_ids(session: Session, campaign: EmailCampaign, references: Collection[str], *, now: datetime) -> set[int]:
    """The ids of the campaign's interrupted messages named by number or Message-ID."""
    if not references:
        return set()
    rows = session.execute(
        select(EmailMessage.id, EmailMessage.message_id_header)
        .where(EmailMessage.campaign_id == campaign.id, interrupted_messages(now))
    ).all()
    by_reference = {str(id_): id_ for id_, _ in rows} | {header.strip("<>"): id_ for id_, header in rows}
    unknown = [ref for ref in references if str(ref).strip().strip("<>") not in by_reference]
    if unknown:
        raise InvalidInput(
            f"Campaign #{campaign.id} has no interrupted message {', '.join(map(str, unknown))}: "
            "name each by the number or the Message-ID listed."
        )
    return {by_reference[str(ref).strip().strip("<>")] for ref in references}


def _ask_the_provider(make_session: Sessions, campaign_id: int, backend: EmailBackend) -> None:
    """Record as sent each interrupted message the provider's sent mail holds (Gmail can tell).

    One it does not hold stays interrupted, with a note, for the admin: the provider's search is
    not proof enough to send a second copy on its own.
    """
    if not isinstance(backend, SentMailSearch):
        return
    with make_session() as session:
        rows = session.execute(
            select(EmailMessage.id, EmailMessage.attempts, EmailMessage.message_id_header, EmailMessage.error)
            .where(EmailMessage.campaign_id == campaign_id, interrupted_messages(utcnow()))
        ).all()
        session.rollback()
        for message_id, claim, header, error in rows:
            try:
                found = backend.find_sent(header)
            except EmailDeliveryError as exc:
                log.warning("Could not ask the provider whether message %s went out: %s", message_id, exc)
                continue
            if found is not None:
                values: dict[str, object] = {"status": MessageStatus.SENT, "provider_message_id": found,
                                             "sent_at": EmailMessage.claimed_at, "error": None}
            elif NOT_IN_SENT_MAIL in (error or ""):
                continue
            else:
                values = {"error": f"{error or INTERRUPTED} — {NOT_IN_SENT_MAIL}"}
            session.execute(
                update(EmailMessage)
                .where(EmailMessage.id == message_id, EmailMessage.attempts == claim,
                       EmailMessage.status == MessageStatus.SENDING)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            session.commit()


def _settle(session: Session, ids: set[int], *, now: datetime, **values: object) -> int:
    if not ids:
        return 0
    return _updated(session, (
        update(EmailMessage).where(EmailMessage.id.in_(ids), interrupted_messages(now)).values(error=None, **values)
    ))


def _updated(session: Session, statement: Update) -> int:
    """Run an UPDATE (without syncing the session's objects); how many rows it changed."""
    result = session.execute(statement.execution_options(synchronize_session=False))
    return int(cast(CursorResult[Any], result).rowcount or 0)


def _let_go(make_session: Sessions, token: str) -> None:
    """A run that ends no longer drives any campaign (what it recorded stays)."""
    try:
        with make_session() as session:
            session.execute(
                update(EmailCampaign).where(EmailCampaign.sender == token)
                .values(sender=None).execution_options(synchronize_session=False)
            )
            session.commit()
    except SQLAlchemyError as exc:  # the database itself may be why the run stopped
        log.warning("Could not record that the campaigns of run %s are no longer being sent: %s", token, exc)
