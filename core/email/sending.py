"""Sending the league's email: each workflow sequenced once, for the command line and the dashboard.

The command line (``send-outstanding``) and the Email page only present these steps (print,
draw); neither sequences them itself.

- Send to everyone: ``prepare_send_to_everyone`` (refuses at once if email cannot go out, syncs
  payments, builds the manifest, names the unfinished sends whose families it skips) →
  ``PreparedSend``, shown to the admin → ``send_prepared`` (queues the campaign, only if it is
  what was reviewed and only if anyone is to be emailed, finishes the unfinished sends whose run
  stopped, then drains the outbox with a progress callback) → ``SendToEveryoneOutcome``.
- Test send: ``send_test`` → ``SendOutcome``.
- Both mint the families' "Pay the balance" links (``core.payments.family_links``) right before
  the emails are rendered, when given ``family_links`` (Stripe configured): a family gets a link
  at exactly its balance, and one minted for an older balance is replaced. Minting never stops
  a send: a family Stripe could not mint for gets its email with the items' own links, and
  the outcome carries what failed. The preview mints nothing: it shows the link a family has.
- Resume: ``resume_campaign`` (first the admin's decisions on interrupted messages — "it was
  sent" / "send it again" — and failed messages back in the queue, when asked) → ``SendOutcome``.
- What happened: ``campaign_report`` → ``CampaignReport`` (what failed, what was interrupted and
  awaits the admin's decision, what was skipped at send time and why), the same for both drivers.

A run that stopped (killed, crashed) is known at once (``core.email.senders``): its claims are
interrupted, and a send to everyone run again finishes what it left queued — exactly once, as
the outbox claims each message once — instead of skipping those families for good. A message
that may have been delivered is never sent again on its own: where the provider can say (Gmail
searches its sent mail) the outbox records it; otherwise it is listed, with its Message-ID, for
the admin's decision, and the run does not count as a success until they decide.

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

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, Permission, require
from core.audit import record_action
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
from core.email.outbox import (
    DrainProgress,
    DrainResult,
    interrupt_dead_claims,
    retry_messages,
    send_run,
    settle_interrupted,
)
from core.email.presend import PaymentSync, PresendSync, sync_payments_first
from core.email.registry import EmailType
from core.errors import EmailDeliveryError, InvalidInput
from core.models import utcnow
from core.payments.family_links import FamilyLinkMinting, FamilyLinksResult, refresh_family_links
from core.payments.gateway import PaymentGateway

log = logging.getLogger(__name__)

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

    @property
    def being_sent(self) -> tuple[CampaignSummary, ...]:
        """Unfinished sends a live run is sending right now."""
        return tuple(c for c in self.unfinished if c.sending_now is True)

    @property
    def to_finish(self) -> tuple[CampaignSummary, ...]:
        """Unfinished sends nobody is sending any more (their run stopped): this send finishes them."""
        return tuple(c for c in self.unfinished if c.sending_now is False)

    @property
    def unknown(self) -> tuple[CampaignSummary, ...]:
        """Unfinished sends whose run cannot be checked (another machine): finish them with a resume."""
        return tuple(c for c in self.unfinished if c.sending_now is None)


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
        """Messages left in the provider call by a run that stopped: they may have been delivered,
        and wait for the admin's decision ("it was sent" / "send it again")."""
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
    family_links: FamilyLinksResult | None = None  # the balance links minted before rendering

    @property
    def campaign_id(self) -> int:
        return self.result.campaign_id

    @property
    def succeeded(self) -> bool:
        return self.result.succeeded


@dataclass(frozen=True)
class SendToEveryoneOutcome:
    """A send to everyone: what it queued and sent, and the stopped sends it finished first."""

    queued: QueuedCampaign | None  # None: nobody new to email (another send got there first)
    own: SendOutcome | None
    finished: tuple[SendOutcome, ...] = ()
    family_links: FamilyLinksResult | None = None  # the balance links minted before rendering

    @property
    def runs(self) -> tuple[SendOutcome, ...]:
        return (*self.finished, *((self.own,) if self.own is not None else ()))

    @property
    def succeeded(self) -> bool:
        """Nothing failed, nothing is left queued and no message awaits the admin's decision."""
        return all(run.succeeded for run in self.runs)


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
    family_links: FamilyLinkMinting | None = None,
) -> SendToEveryoneOutcome:
    """Queue the prepared send to everyone, finish the stopped sends, and send through the outbox.

    ``reviewed``: a person reviewed ``prepared`` and confirmed it. Then payments are synced
    again first, and the campaign is queued only if the list is still the one reviewed
    (``ListChangedSinceReview`` otherwise, and nothing is queued). Without a review (confirmed
    in advance) the list is queued as it is now. No campaign is written when nobody is left to
    email. Then the unfinished sends of ``prepared.to_finish`` (their run stopped; their
    families were skipped here) are finished, and this one is sent. ``on_queued`` is called once
    the campaign is committed, before sending; ``progress`` after every message. The whole run
    holds one sender token. Commits: the campaign in a unit of work of its own, then the outbox
    per message.
    """
    require(user, Permission.SEND_EMAIL)
    with send_run(sessions) as token:
        synced = sync_payments_first(sessions, user, gateway=gateway, sync=sync) if reviewed else prepared.sync
        minted = _mint_family_links(sessions, user, family_links,
                                    [entry.parent_id for entry in prepared.manifest.recipients])
        try:
            with unit_of_work(sessions) as session:
                campaign = start_campaign(
                    session, user, prepared.email_type, email_from=email_from,
                    cooldown_days=prepared.cooldown_days, expected=prepared.totals if reviewed else None,
                    sender=token, only_if_any=True,
                )
                queued = (QueuedCampaign(campaign.id, campaign.recipient_count, campaign.skipped_count)
                          if campaign is not None else None)
        except ManifestChanged as changed:
            again = replace(prepared, manifest=changed.manifest, sync=synced, prepared_at=utcnow())
            raise ListChangedSinceReview(str(changed), prepared=again) from None
        if queued is not None and on_queued is not None:
            on_queued(queued)
        # The stopped sends first: their families were queued before this send's.
        finished = tuple(
            _run(sessions, user, stopped.id, backend=backend, email_from=email_from, progress=progress, token=token)
            for stopped in prepared.to_finish
        )
        own = None if queued is None else _run(
            sessions, user, queued.campaign_id, backend=backend, email_from=email_from, progress=progress,
            token=token,
        )
    return SendToEveryoneOutcome(queued=queued, own=own, finished=finished, family_links=minted)


def send_test(
    sessions: Sessions,
    user: ActingUser,
    *,
    email_type: EmailType,
    test_address: str,
    backend: EmailBackend,
    email_from: str,
    parent_id: int | None = None,
    family_links: FamilyLinkMinting | None = None,
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
    minted = _mint_family_links(sessions, user, family_links, [parent_id])
    result = send_test_email(sessions, user, parent_id=parent_id, test_address=test_address,
                             email_type=email_type, backend=backend, email_from=email_from)
    return SendOutcome(result, _report(sessions, user, result.campaign_id), family_links=minted)


def resume_campaign(
    sessions: Sessions,
    user: ActingUser,
    campaign_id: int,
    *,
    backend: EmailBackend,
    email_from: str,
    retry_failed: bool = False,
    retry_interrupted: bool = False,
    was_sent: Collection[str] = (),
    send_again: Collection[str] = (),
    progress: Progress | None = None,
) -> SendOutcome:
    """Send what a campaign still has queued, after the admin's decisions.

    First: interrupted messages the admin found in the sent mail (``was_sent``, each named by
    its number or Message-ID) are recorded as sent; those they want sent again (``send_again``,
    or all of them with ``retry_interrupted``: they may have been delivered, so only an admin
    who checked asks for it) and the failed ones (``retry_failed``) go back in the queue.
    Commits in units of work of its own; the decisions are in the audit log.
    """
    require(user, Permission.SEND_EMAIL)
    requeued = None
    with send_run(sessions) as token:
        if was_sent or send_again or retry_failed or retry_interrupted:
            with unit_of_work(sessions) as session:
                again = _decide(session, user, campaign_id, was_sent=was_sent, send_again=send_again)
                requeued = again + (retry_messages(session, user, campaign_id, failed=retry_failed,
                                                   interrupted=retry_interrupted)
                                    if retry_failed or retry_interrupted else 0)
        outcome = _run(sessions, user, campaign_id, backend=backend, email_from=email_from, progress=progress,
                       token=token)
    return replace(outcome, requeued=requeued)


def record_decisions(
    sessions: Sessions, user: ActingUser, campaign_id: int, *, was_sent: Collection[str] = (),
    send_again: Collection[str] = (),
) -> CampaignReport:
    """The admin's decisions on interrupted messages, without sending anything now: those found
    in the sent mail are recorded as sent, the others go back in the queue for the next resume.
    Commits in a unit of work of its own; the decisions are in the audit log."""
    require(user, Permission.SEND_EMAIL)
    with unit_of_work(sessions) as session:
        _decide(session, user, campaign_id, was_sent=was_sent, send_again=send_again)
    return _report(sessions, user, campaign_id)


def campaign_report(session: Session, user: ActingUser, campaign_id: int) -> CampaignReport:
    """Where a campaign stands: every message with what happened and why (``message_rows``).

    Claims of runs that died are marked interrupted first (the caller commits).
    """
    require(user, Permission.SEND_EMAIL)
    interrupt_dead_claims(session, user, campaign_id=campaign_id)
    return CampaignReport(campaign_id, tuple(message_rows(session, user, campaign_id)))


def _decide(
    session: Session, user: ActingUser, campaign_id: int, *, was_sent: Collection[str], send_again: Collection[str]
) -> int:
    """Record the admin's decisions (audited); how many messages go back in the queue."""
    marked, again = settle_interrupted(session, user, campaign_id, sent=was_sent, send_again=send_again)
    if marked or again:
        record_action(
            session, user, "email.interrupted_decided",
            f"Campaign #{campaign_id}: {marked} interrupted recorded as sent, {again} to send again",
            details={"campaign_id": campaign_id, "was_sent": list(was_sent), "send_again": list(send_again)},
        )
    return again


def _mint_family_links(sessions: Sessions, user: ActingUser, minting: FamilyLinkMinting | None,
                       parent_ids: list[int]) -> FamilyLinksResult | None:
    """The families' balance links at their balance, before their emails are rendered (commits)."""
    if minting is None or not parent_ids:
        return None
    result = refresh_family_links(sessions, user, minting, parent_ids=parent_ids)
    for error in result.errors:
        log.warning("Balance link not minted (the email keeps the items' links): %s", error)
    return result


def _run(
    sessions: Sessions, user: ActingUser, campaign_id: int, *, backend: EmailBackend, email_from: str,
    progress: Progress | None, token: str,
) -> SendOutcome:
    result = run_campaign(sessions, user, campaign_id, backend=backend, email_from=email_from, progress=progress,
                          sender=token)
    return SendOutcome(result, _report(sessions, user, campaign_id))


def _prepared(
    sessions: Sessions, user: ActingUser, email_type: EmailType, *, cooldown_days: int, synced: PresendSync
) -> PreparedSend:
    with unit_of_work(sessions) as session:
        interrupt_dead_claims(session, user)
        unfinished = tuple(unfinished_campaigns(session, user))
        manifest = build_manifest(session, user, email_type, cooldown_days=cooldown_days)
    return PreparedSend(email_type=email_type, cooldown_days=cooldown_days, manifest=manifest, sync=synced,
                        unfinished=unfinished, prepared_at=utcnow())


def _report(sessions: Sessions, user: ActingUser, campaign_id: int) -> CampaignReport:
    with unit_of_work(sessions) as session:
        return campaign_report(session, user, campaign_id)
