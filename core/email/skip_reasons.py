"""Why a family gets no reminder: the reasons, the one rule that decides them, and their words.

A family is looked at twice, by the same rule (``decide_skip``):

- when a send to everyone is queued (``campaigns.build_manifest``). Skipped: the family owes
  nothing (is not in the email's audience), opted out, has no address or one the sender
  cannot use, or every payment of theirs is still processing; or another reminder holds them —
  one being sent right now, one sent within the cool-down, one that may have been sent and
  awaits the admin's decision, one queued in another send still running, or one sent by a send
  still in progress. Two sends started at once thus email a family once, whatever the
  cool-down (even 0 days);
- when the outbox is about to send a queued message (``outbox.drain_outbox``). Skipped:
  another reminder got there first — being sent right now, sent within the cool-down, sent
  since this one was queued, or possibly sent and awaiting the admin's decision — or the
  family's situation changed since it was queued: paid, opted out, every payment processing,
  a different balance or a different address.

A test send is never skipped and never holds a family back.

The reason is stored as a ``SkipReason`` in ``email_messages.skip_reason``, with the campaign
of the other reminder in ``skip_campaign_id``; ``describe_skip`` is the one place that turns
them into the words the command line, the pages and the audit log show.

Pure: no database. The caller reads the family (``Family``) and the other reminders to them
(``OtherReminder``, in the state the outbox gives them) and hands them in; the rules are
tested directly in ``tests/core/email/test_skip_reasons.py``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property

from core.email.headers import normalise_recipient
from core.errors import InvalidInput


class SkipReason(str, enum.Enum):
    """Why a family was not sent a reminder (stored in ``email_messages.skip_reason``)."""

    # The family, when the send is queued.
    NOTHING_OWED = "nothing_owed"
    OPTED_OUT = "opted_out"
    NO_EMAIL = "no_email"
    INVALID_EMAIL = "invalid_email"
    PAYMENT_PROCESSING = "payment_processing"
    # Another reminder to the family (its campaign is in ``skip_campaign_id``).
    BEING_EMAILED = "being_emailed"
    EMAILED_WITHIN_COOL_DOWN = "emailed_within_cool_down"
    EMAILED_BY_SEND_IN_PROGRESS = "emailed_by_send_in_progress"
    QUEUED_ELSEWHERE = "queued_elsewhere"
    EMAILED_SINCE_QUEUED = "emailed_since_queued"
    AWAITING_DECISION = "awaiting_decision"
    # The family's situation changed between queueing and sending.
    PAID_SINCE_QUEUED = "paid_since_queued"
    OPTED_OUT_SINCE_QUEUED = "opted_out_since_queued"
    PROCESSING_SINCE_QUEUED = "processing_since_queued"
    BALANCE_CHANGED = "balance_changed"
    ADDRESS_CHANGED = "address_changed"


_WORDS: dict[SkipReason, str] = {
    SkipReason.NOTHING_OWED: "nothing owed",
    SkipReason.OPTED_OUT: "opted out of email",
    SkipReason.NO_EMAIL: "no email address",
    SkipReason.INVALID_EMAIL: "email address not valid",
    SkipReason.PAYMENT_PROCESSING: "payment processing",
    SkipReason.BEING_EMAILED: "being emailed by another send",
    SkipReason.EMAILED_WITHIN_COOL_DOWN: "emailed within the cool-down",
    SkipReason.EMAILED_BY_SEND_IN_PROGRESS: "emailed by another send still in progress",
    SkipReason.QUEUED_ELSEWHERE: "already queued in another send",
    SkipReason.EMAILED_SINCE_QUEUED: "emailed since this was queued",
    SkipReason.AWAITING_DECISION: "may have been emailed by another send: awaiting your decision",
    SkipReason.PAID_SINCE_QUEUED: "paid since queued",
    SkipReason.OPTED_OUT_SINCE_QUEUED: "opted out since queued",
    SkipReason.PROCESSING_SINCE_QUEUED: "payment processing since queued",
    SkipReason.BALANCE_CHANGED: "balance changed since queued — start a new send",
    SkipReason.ADDRESS_CHANGED: "email address changed since queued — start a new send",
}

# One reason per family, the strongest: being emailed now, then emailed, then queued elsewhere.
_STRENGTH: dict[SkipReason, int] = {
    SkipReason.BEING_EMAILED: 0,
    SkipReason.EMAILED_WITHIN_COOL_DOWN: 1,
    SkipReason.EMAILED_SINCE_QUEUED: 2,
    SkipReason.AWAITING_DECISION: 2,
    SkipReason.EMAILED_BY_SEND_IN_PROGRESS: 2,
    SkipReason.QUEUED_ELSEWHERE: 3,
}


def describe_skip(reason: SkipReason, *, campaign_id: int | None = None, cooldown_days: int | None = None) -> str:
    """The words for ``reason``: ``"already queued in another send (campaign #12)"``.

    ``campaign_id`` is the other reminder's campaign (for the reasons that have one);
    ``cooldown_days``, when known, names the cool-down's length.
    """
    words = _WORDS[reason]
    if reason is SkipReason.EMAILED_WITHIN_COOL_DOWN and cooldown_days is not None:
        words = f"emailed within the {cooldown_days}-day cool-down"
    return words if campaign_id is None else f"{words} (campaign #{campaign_id})"


class ReminderState(enum.Enum):
    """Another reminder to the family, as the outbox sees it (``outbox.reminder_state``)."""

    QUEUED = "queued"  # waiting in a campaign that is still running
    BEING_SENT = "being sent"  # a live sender has it and has not reported yet
    SENT = "sent"
    MAY_HAVE_BEEN_SENT = "may have been sent"  # interrupted in the provider call


@dataclass(frozen=True)
class OtherReminder:
    """A reminder to the same family in another campaign (never a test send).

    ``at``: when it was sent (or, for one that may have been, when it was claimed).
    ``campaign_in_progress``: its campaign is still running and still sending (messages queued
    or being sent, one claimed recently).
    """

    campaign_id: int
    state: ReminderState
    at: datetime | None = None
    campaign_in_progress: bool = False


@dataclass(frozen=True)
class Family:
    """What the rule needs to know of a family now."""

    owes: bool  # in the email's audience, with something on their balance
    opted_out: bool
    email: str | None  # as recorded
    all_processing: bool = False  # every item's payment is processing: nothing to pay now
    total_cents: int = 0
    currency: str = ""

    @cached_property
    def address(self) -> str | None:
        """The address a message goes to (validated, in the form servers accept); None if unusable."""
        try:
            return normalise_recipient(self.email)
        except InvalidInput:
            return None


@dataclass(frozen=True)
class QueuedEmail:
    """The message already queued for the family, when the rule runs at send time."""

    queued_at: datetime
    amount_cents: int
    currency: str
    to_address: str | None


@dataclass(frozen=True)
class Skip:
    """A decision to skip: why, and the campaign of the other reminder when that is why."""

    reason: SkipReason
    campaign_id: int | None = None

    def words(self, *, cooldown_days: int | None = None) -> str:
        return describe_skip(self.reason, campaign_id=self.campaign_id, cooldown_days=cooldown_days)


def decide_skip(
    family: Family,
    others: Iterable[OtherReminder],
    *,
    now: datetime,
    cooldown_days: int,
    queued: QueuedEmail | None = None,
    not_owed: SkipReason = SkipReason.NOTHING_OWED,
) -> Skip | None:
    """Whether to skip ``family``, and why; ``None``: email them.

    ``queued`` is None when deciding whether to queue a message (a send to everyone is being
    started: ``now`` is when it was asked for, so a reminder another send got out while this one
    waited its turn holds the family too), and the queued message when deciding whether to send
    it. ``others`` are the
    other reminders to the family; ``not_owed`` is the email type's reason for a family
    outside its audience.

    Queueing: the family's own state comes first (nothing owed, opted out, no or unusable
    address, all processing), then other reminders. Sending: other reminders come first (one
    may be on its way right now), then what changed since the message was queued.
    """
    if queued is None:
        return _cannot_be_emailed(family, not_owed) or _held_by(
            others, now=now, cooldown_days=cooldown_days, queued_at=None
        )
    return _held_by(others, now=now, cooldown_days=cooldown_days, queued_at=queued.queued_at) or _changed_since(
        family, queued
    )


def _cannot_be_emailed(family: Family, not_owed: SkipReason) -> Skip | None:
    if not family.owes:
        return Skip(not_owed)
    if family.opted_out:
        return Skip(SkipReason.OPTED_OUT)
    if not family.email or not family.email.strip():
        return Skip(SkipReason.NO_EMAIL)
    if family.address is None:
        return Skip(SkipReason.INVALID_EMAIL)
    if family.all_processing:
        return Skip(SkipReason.PAYMENT_PROCESSING)
    return None


def _changed_since(family: Family, queued: QueuedEmail) -> Skip | None:
    if not family.owes:
        return Skip(SkipReason.PAID_SINCE_QUEUED)
    if family.opted_out:
        return Skip(SkipReason.OPTED_OUT_SINCE_QUEUED)
    if family.all_processing:
        return Skip(SkipReason.PROCESSING_SINCE_QUEUED)
    if (family.total_cents, family.currency) != (queued.amount_cents, queued.currency):
        return Skip(SkipReason.BALANCE_CHANGED)
    if family.address != queued.to_address:
        return Skip(SkipReason.ADDRESS_CHANGED)
    return None


def _held_by(
    others: Iterable[OtherReminder], *, now: datetime, cooldown_days: int, queued_at: datetime | None
) -> Skip | None:
    """The strongest hold another reminder has on the family (the later one when two are as strong)."""
    cool_down_start = now - timedelta(days=cooldown_days)
    held: Skip | None = None
    for other in others:
        reason = _hold(other, cool_down_start=cool_down_start if cooldown_days else None, queued_at=queued_at, now=now)
        if reason is not None and (held is None or _STRENGTH[reason] <= _STRENGTH[held.reason]):
            held = Skip(reason, other.campaign_id)
    return held


def _hold(
    other: OtherReminder, *, cool_down_start: datetime | None, queued_at: datetime | None, now: datetime
) -> SkipReason | None:
    """How one other reminder holds the family back, if it does.

    Whatever the cool-down: one being sent right now; one that may have been sent (its run
    stopped in the provider call) until the admin decides whether it went; when queueing, one
    queued in a send still running or sent by a send still in progress; when sending, one sent
    since this was queued. Within the cool-down: one sent, or that may have been.
    """
    if other.state is ReminderState.BEING_SENT:
        return SkipReason.BEING_EMAILED
    if other.state is ReminderState.QUEUED:
        return SkipReason.QUEUED_ELSEWHERE if queued_at is None else None
    if cool_down_start is not None and other.at is not None and other.at >= cool_down_start:
        return SkipReason.EMAILED_WITHIN_COOL_DOWN
    if queued_at is not None and other.at is not None and other.at >= queued_at:
        return SkipReason.EMAILED_SINCE_QUEUED
    if other.state is ReminderState.MAY_HAVE_BEEN_SENT:
        return SkipReason.AWAITING_DECISION  # until the admin says whether it went
    if queued_at is None and other.state is ReminderState.SENT and (
        other.campaign_in_progress or (other.at is not None and other.at >= now)
    ):
        return SkipReason.EMAILED_BY_SEND_IN_PROGRESS  # in progress when this send was asked for
    return None
