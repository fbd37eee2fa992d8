"""Sending the league's email: each workflow sequenced once, for the command line and the dashboard.

The command line (``send-outstanding``) and the Email page only present these steps (print,
draw); neither sequences them itself.

- Send to everyone: ``prepare_send_to_everyone`` (refuses at once if email cannot go out, syncs
  payments, builds the manifest, names the unfinished sends whose families it skips) →
  ``PreparedSend``, shown to the admin → ``send_prepared`` (queues the campaign, only if it is
  what was reviewed, then drains the outbox with a progress callback) → ``SendOutcome``.
- Test send: ``send_test`` → ``SendOutcome``.
- Resume: ``resume_campaign`` (putting failed or interrupted messages back in the queue first,
  when asked) → ``SendOutcome``.
- What happened: ``campaign_report`` → ``CampaignReport`` (what failed, what was interrupted,
  what was skipped at send time and why), the same for both drivers.

When payments are synced — one rule for both drivers: when the send is prepared, always (with
Stripe configured); and once more when it is sent if, and only if, a person reviewed the list
and then confirmed it. However long they took to read it, a family may have paid meanwhile, so
the list is synced and built again and the campaign is queued only if it is still the one they
saw (``ListChangedSinceReview`` otherwise, carrying the list as it is now, to review). A send
confirmed in advance (``--yes``) is queued straight after its preparation — nobody reviewed
anything in between — so it is not synced twice. A failed sync refuses the send at either
moment (``PaymentsNotSynced``), before anything is queued.

Sessions: the functions that send take ``sessions`` (``core.db.Sessions``) and commit in short
units of work of their own (the sync and the outbox commit per item); ``campaign_report`` takes
a ``Session`` and never commits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, Permission, require
from core.db import Sessions, unit_of_work
from core.email.backends import EmailBackend
from core.email.campaigns import (
    CampaignSummary,
    Manifest,
    ManifestChanged,
    ManifestTotals,
    MessageRow,
    build_manifest,
    message_rows,
    parents_to_email,
    run_campaign,
    send_test_email,
    start_campaign,
    unfinished_campaigns,
)
from core.email.outbox import DrainProgress, DrainResult, retry_messages
from core.email.presend import PaymentSync, PresendSync, sync_payments_first
from core.email.registry import EmailType
from core.errors import EmailDeliveryError, InvalidInput
from core.models import utcnow
from core.payments.gateway import PaymentGateway

# Why email cannot go out now (the backend refuses to be built), or None: ``Services.email_backend_problem``.
BackendCheck = Callable[[], str | None]
Progress = Callable[[DrainProgress], None]


@dataclass(frozen=True)
class PreparedSend:
    """A send to everyone, prepared and not yet queued: what the admin reviews."""

    email_type: EmailType
    cooldown_days: int
    manifest: Manifest
    sync: PresendSync  # whether payments were synced first, in a line
    unfinished: tuple[CampaignSummary, ...]  # sends still queued or sending: their families are skipped
    prepared_at: datetime

    @property
    def totals(self) -> ManifestTotals:
        """What the admin confirms: ``send_prepared`` queues exactly this or nothing."""
        return self.manifest.totals


class ListChangedSinceReview(ManifestChanged):
    """The send was refused: the list changed since it was reviewed. ``prepared`` is the send
    prepared again from the list as it is now (payments just synced), to review."""

    def __init__(self, message: str, *, prepared: PreparedSend) -> None:
        super().__init__(message, manifest=prepared.manifest)
        self.prepared = prepared


@dataclass(frozen=True)
class QueuedCampaign:
    """A send to everyone just queued, before the outbox sends it."""

    campaign_id: int
    recipients: int
    skipped: int


@dataclass(frozen=True)
class CampaignReport:
    """A campaign's messages as both drivers show them, with what needs the admin's attention."""

    campaign_id: int
    rows: tuple[MessageRow, ...]

    def count(self, status: str) -> int:
        """How many messages are in ``status`` as shown (``interrupted`` and ``sending`` apart)."""
        return sum(1 for row in self.rows if row.status == status)

    @property
    def counts(self) -> dict[str, int]:
        """Sent, failed, interrupted, queued (``pending``) and skipped, in that order."""
        return {status: self.count(status) for status in ("sent", "failed", "interrupted", "pending", "skipped")}

    @property
    def being_sent(self) -> int:
        """Messages another run is sending right now."""
        return self.count("sending")

    @property
    def failed(self) -> tuple[MessageRow, ...]:
        return tuple(row for row in self.rows if row.status == "failed")

    @property
    def interrupted(self) -> tuple[MessageRow, ...]:
        """Messages left in the provider call by a run that stopped: they may have been delivered."""
        return tuple(row for row in self.rows if row.status == "interrupted")

    @property
    def skipped_at_send_time(self) -> tuple[MessageRow, ...]:
        """Queued, then skipped when their turn came (``reason`` says why)."""
        return tuple(row for row in self.rows if row.skipped_at_send_time)


@dataclass(frozen=True)
class SendOutcome:
    """What one run did (``result``) and where the campaign stands now (``report``)."""

    result: DrainResult
    report: CampaignReport
    queued: QueuedCampaign | None = None  # a send to everyone: what was queued
    requeued: int | None = None  # a resume with retries: how many were put back in the queue

    @property
    def campaign_id(self) -> int:
        return self.result.campaign_id

    @property
    def succeeded(self) -> bool:
        return self.result.succeeded


def prepare_send_to_everyone(
    sessions: Sessions,
    user: ActingUser,
    email_type: EmailType,
    *,
    cooldown_days: int,
    gateway: PaymentGateway | None,
    backend_problem: BackendCheck,
    sync: PaymentSync | None = None,
) -> PreparedSend:
    """Prepare a send to everyone: the list to review, with payments synced first.

    In this order: refuse (``EmailDeliveryError``) if email cannot go out — before anything is
    synced or queued, since a queued campaign would hold its families; sync payments when
    ``gateway`` is given (``PaymentsNotSynced`` if that fails); then build the manifest and
    name the unfinished sends whose families it skips. Nothing is queued. The sync commits in
    a session of its own from ``sessions``; the rest only reads.
    """
    require(user, Permission.SEND_EMAIL)
    problem = backend_problem()
    if problem:
        raise EmailDeliveryError(problem)
    synced = sync_payments_first(sessions, user, gateway=gateway, sync=sync)
    return _prepared(sessions, user, email_type, cooldown_days=cooldown_days, synced=synced)


def send_prepared(
    sessions: Sessions,
    user: ActingUser,
    prepared: PreparedSend,
    *,
    reviewed: bool,
    backend: EmailBackend,
    email_from: str,
    gateway: PaymentGateway | None,
    sync: PaymentSync | None = None,
    progress: Progress | None = None,
    on_queued: Callable[[QueuedCampaign], None] | None = None,
) -> SendOutcome:
    """Queue the prepared send to everyone and send it through the outbox.

    ``reviewed``: a person reviewed ``prepared`` and confirmed it. Then payments are synced
    again first, and the campaign is queued only if the list is still the one reviewed
    (``ListChangedSinceReview`` otherwise, and nothing is queued). Without a review (confirmed
    in advance) the list is queued as it is now. ``on_queued`` is called once the campaign is
    committed, before sending; ``progress`` after every message. Commits: the campaign in a
    unit of work of its own, then the outbox per message.
    """
    require(user, Permission.SEND_EMAIL)
    synced = sync_payments_first(sessions, user, gateway=gateway, sync=sync) if reviewed else prepared.sync
    try:
        with unit_of_work(sessions) as session:
            campaign = start_campaign(
                session, user, prepared.email_type, email_from=email_from, cooldown_days=prepared.cooldown_days,
                expected=prepared.totals if reviewed else None,
            )
            queued = QueuedCampaign(campaign.id, campaign.recipient_count, campaign.skipped_count)
    except ManifestChanged as changed:
        again = replace(prepared, manifest=changed.manifest, sync=synced, prepared_at=utcnow())
        raise ListChangedSinceReview(str(changed), prepared=again) from None
    if on_queued is not None:
        on_queued(queued)
    result = run_campaign(sessions, user, queued.campaign_id, backend=backend, email_from=email_from,
                          progress=progress)
    return SendOutcome(result, _report(sessions, user, queued.campaign_id), queued=queued)


def send_test(
    sessions: Sessions,
    user: ActingUser,
    *,
    email_type: EmailType,
    test_address: str,
    backend: EmailBackend,
    email_from: str,
    parent_id: int | None = None,
) -> SendOutcome:
    """Send ``parent_id``'s real email (default: the first family who owes) to ``test_address``.

    Marked as a test, never counted as a reminder (``campaigns.send_test_email``). Commits in
    units of work of its own.
    """
    require(user, Permission.SEND_EMAIL)
    if parent_id is None:
        with unit_of_work(sessions) as session:
            owing = parents_to_email(session, user, email_type)
        if not owing:
            raise InvalidInput("Nobody owes anything: there is no email to test.")
        parent_id = owing[0].parent_id
    result = send_test_email(sessions, user, parent_id=parent_id, test_address=test_address,
                             email_type=email_type, backend=backend, email_from=email_from)
    return SendOutcome(result, _report(sessions, user, result.campaign_id))


def resume_campaign(
    sessions: Sessions,
    user: ActingUser,
    campaign_id: int,
    *,
    backend: EmailBackend,
    email_from: str,
    retry_failed: bool = False,
    retry_interrupted: bool = False,
    progress: Progress | None = None,
) -> SendOutcome:
    """Send what a campaign still has queued; first put back in the queue its failed messages
    (``retry_failed``) and those interrupted in the provider call (``retry_interrupted``: they may
    have been delivered, so only an admin who checked asks for it). Commits in units of work of
    its own."""
    require(user, Permission.SEND_EMAIL)
    requeued = None
    if retry_failed or retry_interrupted:
        with unit_of_work(sessions) as session:
            requeued = retry_messages(session, user, campaign_id, failed=retry_failed, interrupted=retry_interrupted)
    result = run_campaign(sessions, user, campaign_id, backend=backend, email_from=email_from, progress=progress)
    return SendOutcome(result, _report(sessions, user, campaign_id), requeued=requeued)


def campaign_report(session: Session, user: ActingUser, campaign_id: int) -> CampaignReport:
    """Where a campaign stands: every message with what happened and why (``message_rows``)."""
    require(user, Permission.PREVIEW_EMAIL)
    return CampaignReport(campaign_id, tuple(message_rows(session, user, campaign_id)))


def _prepared(
    sessions: Sessions, user: ActingUser, email_type: EmailType, *, cooldown_days: int, synced: PresendSync
) -> PreparedSend:
    with unit_of_work(sessions) as session:
        unfinished = tuple(unfinished_campaigns(session, user))
        manifest = build_manifest(session, user, email_type, cooldown_days=cooldown_days)
    return PreparedSend(email_type=email_type, cooldown_days=cooldown_days, manifest=manifest, sync=synced,
                        unfinished=unfinished, prepared_at=utcnow())


def _report(sessions: Sessions, user: ActingUser, campaign_id: int) -> CampaignReport:
    with unit_of_work(sessions) as session:
        return campaign_report(session, user, campaign_id)
