"""The one rule that decides whether a family is skipped, when a send is queued and when it is sent.

Pure: no database. Each case is a family and the other reminders to them, and the decision.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.email.skip_reasons import (
    Family,
    OtherReminder,
    QueuedEmail,
    ReminderState,
    Skip,
    SkipReason,
    decide_skip,
    describe_skip,
)

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
R = SkipReason
S = ReminderState


def family(**changes: object) -> Family:
    fields: dict[str, object] = {"owes": True, "opted_out": False, "email": "ana@example.org",
                                 "all_processing": False, "total_cents": 36000, "currency": "usd"}
    fields.update(changes)
    return Family(**fields)  # type: ignore[arg-type]


def other(campaign_id: int, state: ReminderState, *, ago: timedelta | None = None,
          in_progress: bool = False) -> OtherReminder:
    return OtherReminder(campaign_id, state, at=None if ago is None else NOW - ago, campaign_in_progress=in_progress)


def when_queueing(fam: Family, *others: OtherReminder, cooldown_days: int = 3) -> Skip | None:
    return decide_skip(fam, others, now=NOW, cooldown_days=cooldown_days)


QUEUED = QueuedEmail(queued_at=NOW - timedelta(hours=1), amount_cents=36000, currency="usd",
                     to_address="ana@example.org")


def when_sending(fam: Family, *others: OtherReminder, cooldown_days: int = 3,
                 queued: QueuedEmail = QUEUED) -> Skip | None:
    return decide_skip(fam, others, now=NOW, cooldown_days=cooldown_days, queued=queued)


# --- queueing: the family itself ------------------------------------------------------------------

def test_a_family_who_owes_and_has_a_usable_address_is_emailed():
    assert when_queueing(family()) is None


@pytest.mark.parametrize("changes, reason", [
    ({"owes": False}, R.NOTHING_OWED),
    ({"opted_out": True}, R.OPTED_OUT),
    ({"email": None}, R.NO_EMAIL),
    ({"email": "   "}, R.NO_EMAIL),
    ({"email": "fay@@example.org"}, R.INVALID_EMAIL),
    ({"all_processing": True}, R.PAYMENT_PROCESSING),
])
def test_a_family_who_cannot_be_reminded_is_skipped_with_why(changes, reason):
    assert when_queueing(family(**changes)) == Skip(reason)


def test_owing_nothing_comes_before_opting_out_and_opting_out_before_a_missing_address():
    assert when_queueing(family(owes=False, opted_out=True, email=None)) == Skip(R.NOTHING_OWED)
    assert when_queueing(family(opted_out=True, email=None)) == Skip(R.OPTED_OUT)


def test_an_email_type_names_its_own_reason_for_a_family_outside_its_audience():
    skip = decide_skip(family(owes=False), (), now=NOW, cooldown_days=3, not_owed=R.PAYMENT_PROCESSING)
    assert skip == Skip(R.PAYMENT_PROCESSING)


def test_the_familys_own_state_is_named_before_another_reminder_when_queueing():
    assert when_queueing(family(opted_out=True), other(7, S.BEING_SENT, ago=timedelta(seconds=5))) == Skip(R.OPTED_OUT)


# --- queueing: another reminder ---------------------------------------------------------------------

def test_a_family_being_emailed_right_now_is_not_queued_again_whatever_the_cool_down():
    assert when_queueing(family(), other(7, S.BEING_SENT, ago=timedelta(seconds=5)), cooldown_days=0) == Skip(
        R.BEING_EMAILED, 7)


@pytest.mark.parametrize("state", [S.SENT, S.MAY_HAVE_BEEN_SENT])
def test_a_family_emailed_within_the_cool_down_is_skipped(state):
    assert when_queueing(family(), other(7, state, ago=timedelta(days=2))) == Skip(R.EMAILED_WITHIN_COOL_DOWN, 7)


def test_a_reminder_older_than_the_cool_down_does_not_hold_the_family():
    assert when_queueing(family(), other(7, S.SENT, ago=timedelta(days=4))) is None


def test_a_cool_down_of_zero_days_holds_nobody_for_a_recent_email_from_a_finished_send():
    assert when_queueing(family(), other(7, S.SENT, ago=timedelta(hours=1)), cooldown_days=0) is None


def test_a_family_queued_in_another_running_send_is_not_queued_again_whatever_the_cool_down():
    assert when_queueing(family(), other(7, S.QUEUED), cooldown_days=0) == Skip(R.QUEUED_ELSEWHERE, 7)


def test_a_family_emailed_by_a_send_still_in_progress_is_not_emailed_again_with_no_cool_down():
    sent = other(7, S.SENT, ago=timedelta(minutes=1), in_progress=True)
    assert when_queueing(family(), sent, cooldown_days=0) == Skip(R.EMAILED_BY_SEND_IN_PROGRESS, 7)


def test_a_reminder_another_send_got_out_after_this_one_was_asked_for_holds_the_family_with_no_cool_down():
    """Two sends asked for at once: the second waited its turn while the first finished."""
    sent_meanwhile = OtherReminder(7, S.SENT, at=NOW + timedelta(seconds=2), campaign_in_progress=False)
    assert when_queueing(family(), sent_meanwhile, cooldown_days=0) == Skip(R.EMAILED_BY_SEND_IN_PROGRESS, 7)


def test_a_send_that_stopped_long_ago_holds_only_what_it_still_has_queued():
    assert when_queueing(family(), other(7, S.SENT, ago=timedelta(days=10), in_progress=False)) is None


@pytest.mark.parametrize("queueing", [True, False], ids=["when-queueing", "when-sending"])
def test_a_reminder_that_may_have_been_sent_holds_the_family_until_the_admin_decides_whatever_the_cool_down(queueing):
    maybe = other(7, S.MAY_HAVE_BEEN_SENT, ago=timedelta(days=40))
    decide = when_queueing if queueing else when_sending
    assert decide(family(), maybe, cooldown_days=0) == Skip(R.AWAITING_DECISION, 7)
    assert decide(family(), maybe) == Skip(R.AWAITING_DECISION, 7)


def test_the_strongest_hold_is_named_being_sent_then_emailed_then_queued():
    queued, in_progress = other(5, S.QUEUED), other(6, S.SENT, ago=timedelta(days=9), in_progress=True)
    recent, now_sending = other(7, S.SENT, ago=timedelta(days=1)), other(8, S.BEING_SENT, ago=timedelta(seconds=3))
    assert when_queueing(family(), queued, in_progress, recent, now_sending) == Skip(R.BEING_EMAILED, 8)
    assert when_queueing(family(), now_sending, recent, in_progress, queued) == Skip(R.BEING_EMAILED, 8)
    assert when_queueing(family(), queued, recent, in_progress) == Skip(R.EMAILED_WITHIN_COOL_DOWN, 7)
    assert when_queueing(family(), queued, in_progress) == Skip(R.EMAILED_BY_SEND_IN_PROGRESS, 6)


def test_of_two_holds_as_strong_the_later_campaign_is_named():
    assert when_queueing(family(), other(5, S.QUEUED), other(9, S.QUEUED)) == Skip(R.QUEUED_ELSEWHERE, 9)


# --- sending: another reminder got there first --------------------------------------------------------

def test_another_reminder_is_named_before_what_changed_when_sending():
    assert when_sending(family(owes=False), other(7, S.BEING_SENT, ago=timedelta(seconds=5))) == Skip(
        R.BEING_EMAILED, 7)


def test_a_family_queued_in_two_sends_is_sent_by_whichever_claims_it_first():
    """Queued elsewhere holds a family only when queueing: at send time the claim decides."""
    assert when_sending(family(), other(7, S.QUEUED)) is None


@pytest.mark.parametrize("cooldown_days, reason", [(3, R.EMAILED_WITHIN_COOL_DOWN), (0, R.EMAILED_SINCE_QUEUED)])
def test_a_reminder_sent_since_this_one_was_queued_stops_it_whatever_the_cool_down(cooldown_days, reason):
    sent = other(7, S.SENT, ago=timedelta(minutes=30))
    assert when_sending(family(), sent, cooldown_days=cooldown_days) == Skip(reason, 7)


def test_a_reminder_sent_before_this_one_was_queued_and_outside_the_cool_down_does_not_stop_it():
    assert when_sending(family(), other(7, S.SENT, ago=timedelta(days=5))) is None
    assert when_sending(family(), other(7, S.SENT, ago=timedelta(hours=2)), cooldown_days=0) is None


# --- sending: the family's situation changed since it was queued ----------------------------------

@pytest.mark.parametrize("changes, reason", [
    ({"owes": False}, R.PAID_SINCE_QUEUED),
    ({"opted_out": True}, R.OPTED_OUT_SINCE_QUEUED),
    ({"all_processing": True}, R.PROCESSING_SINCE_QUEUED),
    ({"total_cents": 21000}, R.BALANCE_CHANGED),
    ({"currency": "cad"}, R.BALANCE_CHANGED),
    ({"email": "ana.new@example.org"}, R.ADDRESS_CHANGED),
    ({"email": None}, R.ADDRESS_CHANGED),
])
def test_a_queued_email_that_is_no_longer_true_is_not_sent(changes, reason):
    assert when_sending(family(**changes)) == Skip(reason)


def test_a_queued_email_still_true_is_sent_to_the_address_in_the_form_servers_accept():
    assert when_sending(family(email="  ANA@Example.org ")) == Skip(R.ADDRESS_CHANGED)  # the local part kept its case
    assert when_sending(family(email="ana@EXAMPLE.org")) is None


# --- the words -----------------------------------------------------------------------------------

def test_every_reason_has_its_words_and_names_the_other_campaign_and_the_cool_down():
    assert all(describe_skip(reason) for reason in SkipReason)
    assert describe_skip(R.QUEUED_ELSEWHERE, campaign_id=12) == "already queued in another send (campaign #12)"
    assert describe_skip(R.EMAILED_WITHIN_COOL_DOWN, campaign_id=4, cooldown_days=3) == (
        "emailed within the 3-day cool-down (campaign #4)")
    assert describe_skip(R.EMAILED_WITHIN_COOL_DOWN) == "emailed within the cool-down"
    assert Skip(R.NO_EMAIL).words() == "no email address"
