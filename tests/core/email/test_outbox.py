"""Sending through the durable outbox: one email per parent, crashes, failures, retries, tests."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from core.access.permissions import Role
from core.email.backends import DeliveryUncertain
from core.email.backends.file import FileBackend
from core.email.campaigns import (
    ManifestChanged,
    build_manifest,
    campaign_messages,
    get_message,
    list_campaigns,
    message_rows,
    run_campaign,
    send_test_email,
    start_campaign,
)
from core.email.outbox import STALE_CLAIM_AFTER, drain_outbox, retry_messages
from core.email.registry import OUTSTANDING_BALANCE, EmailType, everyone_who_owes
from core.errors import EmailDeliveryError, InvalidInput, NotFound, PermissionDenied
from core.models import (
    AuditEntry,
    CampaignStatus,
    EmailCampaign,
    EmailMessage,
    LinkStatus,
    MessageStatus,
    PaymentLink,
    Player,
    utcnow,
)
from tests.core.email.conftest import EMAIL_FROM, read_outbox, recipients, skip_words
from tests.factories import acting, make_tenant, pay_link

OWING = ["ana@example.org", "ben@example.org"]


def statuses(session, campaign_id: int) -> dict[str, str]:  # type: ignore[no-untyped-def]
    session.expire_all()
    return {m.parent.name: m.status.value for m in campaign_messages(session, admin_of(session), campaign_id)}


def age_claims(session, campaign_id: int) -> None:  # type: ignore[no-untyped-def]
    """Make the campaign's claims older than the stale-claim limit, as if that much time had passed."""
    session.execute(
        update(EmailMessage)
        .where(EmailMessage.campaign_id == campaign_id, EmailMessage.status == MessageStatus.SENDING)
        .values(claimed_at=utcnow() - STALE_CLAIM_AFTER - timedelta(minutes=1))
    )
    session.commit()


def admin_of(session):  # type: ignore[no-untyped-def]
    from core.models import Tenant
    return acting(session.scalars(select(Tenant).where(Tenant.slug == "westside")).one())


def send_to_everyone(session, engine, backend, **options):  # type: ignore[no-untyped-def]
    admin = admin_of(session)
    campaign = start_campaign(session, admin, OUTSTANDING_BALANCE, email_from=EMAIL_FROM, **options)
    session.commit()
    return campaign, run_campaign(engine, admin, campaign.id, backend=backend, email_from=EMAIL_FROM)


class CrashAfter(FileBackend):
    """Writes ``sends`` files, then the process 'dies' inside the provider call."""

    class Crash(BaseException):
        pass

    def __init__(self, directory: Path, sends: int, *, before_delivery: bool = False) -> None:
        super().__init__(directory)
        self.left, self.before_delivery = sends, before_delivery

    def send(self, message):  # type: ignore[no-untyped-def]
        if self.left == 0:
            if not self.before_delivery:
                super().send(message)
            raise self.Crash()
        self.left -= 1
        return super().send(message)


class FailFor(FileBackend):
    def __init__(self, directory: Path, failing: set[str], error: type[EmailDeliveryError] = EmailDeliveryError):
        super().__init__(directory)
        self.failing, self.error = failing, error

    def send(self, message):  # type: ignore[no-untyped-def]
        if message["To"].addresses[0].addr_spec in self.failing:
            raise self.error("550 mailbox unavailable")
        return super().send(message)


# --- send to everyone ---------------------------------------------------------------------------

def test_each_parent_who_owes_gets_exactly_one_email_with_all_their_children(session, engine, league, outbox_dir):
    campaign, result = send_to_everyone(session, engine, FileBackend(outbox_dir))
    assert (result.sent, result.failed, result.interrupted, result.remaining) == (2, 0, 0, 0)
    assert recipients(outbox_dir) == OWING
    ana = next(m for m in read_outbox(outbox_dir) if m["To"].addresses[0].addr_spec == "ana@example.org")
    text = ana.get_body(("plain",)).get_content()
    assert text.count("Amy O'Neil |") == 2 and text.count("Al O'Neil |") == 1 and "Total: $360.00" in text
    assert statuses(session, campaign.id) == {
        "Ana O'Neil <& Co>": "sent", "Bénédicte Zoë": "sent", "Cat Noemail": "skipped", "Dan Optout": "skipped",
        "Eve Paid": "skipped", "Fay Typo": "skipped", "Gus Withdrawn": "skipped",
    }
    session.expire_all()
    assert session.get(EmailCampaign, campaign.id).status is CampaignStatus.COMPLETED


def test_the_outbox_keeps_what_was_sent_for_history(session, engine, league, outbox_dir):
    campaign, _ = send_to_everyone(session, engine, FileBackend(outbox_dir))
    admin = admin_of(session)
    sent = [m for m in campaign_messages(session, admin, campaign.id) if m.status is MessageStatus.SENT]
    for row in sent:
        assert row.provider_message_id and (outbox_dir / row.provider_message_id).exists()
        assert row.sent_at is not None and row.attempts == 1
        eml = (outbox_dir / row.provider_message_id).read_bytes().decode()
        assert row.message_id_header in eml
        assert get_message(session, admin, row.id).html_body.startswith("<!DOCTYPE html>")
    assert [c.id for c in list_campaigns(session, admin)] == [campaign.id]


def test_running_the_campaign_again_sends_nothing_more(session, engine, league, outbox_dir):
    campaign, _ = send_to_everyone(session, engine, FileBackend(outbox_dir))
    again = drain_outbox(engine, admin_of(session), campaign.id, backend=FileBackend(outbox_dir), email_from=EMAIL_FROM)
    assert (again.sent, again.failed) == (0, 0)
    assert recipients(outbox_dir) == OWING


def test_a_second_send_to_everyone_within_the_cool_down_emails_nobody(session, engine, league, outbox_dir):
    send_to_everyone(session, engine, FileBackend(outbox_dir))
    second, result = send_to_everyone(session, engine, FileBackend(outbox_dir))
    assert result.sent == 0 and recipients(outbox_dir) == OWING
    assert "cool-down" in next(
        skip_words(m) for m in campaign_messages(session, admin_of(session), second.id) if m.parent.name == "Bénédicte Zoë"
    )


def test_an_empty_audience_sends_nothing_and_completes(session, engine, outbox_dir):
    tenant = make_tenant(session, slug="westside")
    session.commit()
    campaign, result = send_to_everyone(session, engine, FileBackend(outbox_dir))
    assert (result.sent, result.failed) == (0, 0) and read_outbox(outbox_dir) == []
    assert campaign.status is CampaignStatus.COMPLETED and tenant.id == campaign.tenant_id


def test_a_parent_without_an_email_address_is_skipped_not_failed(session, engine, league, outbox_dir):
    campaign, result = send_to_everyone(session, engine, FileBackend(outbox_dir))
    cat = next(m for m in campaign_messages(session, admin_of(session), campaign.id) if m.parent.name == "Cat Noemail")
    assert (cat.status, skip_words(cat), cat.to_address) == (MessageStatus.SKIPPED, "no email address", None)
    assert result.failed == 0


def test_starting_and_running_a_campaign_are_in_the_audit_log(session, engine, league, outbox_dir):
    campaign, _ = send_to_everyone(session, engine, FileBackend(outbox_dir))
    session.expire_all()
    actions = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    assert [a.action for a in actions] == ["email.send_to_everyone", "email.campaign_run"]
    assert "2 emails for $510.00, 5 skipped" in actions[0].summary
    assert actions[0].details["campaign_id"] == campaign.id and actions[0].actor == "admin@example.org"
    # The five skipped when queued are not counted again (as "0 skipped") when it runs.
    assert "2 sent, 0 failed, 0 skipped at send time" in actions[1].summary


# --- a provider failure and retries -------------------------------------------------------------

def test_a_provider_failure_is_recorded_the_rest_are_sent_and_a_retry_sends_it(session, engine, league, outbox_dir):
    campaign, result = send_to_everyone(session, engine, FailFor(outbox_dir, {"ana@example.org"}))
    assert (result.sent, result.failed, result.succeeded) == (1, 1, False)
    ana = next(m for m in campaign_messages(session, admin_of(session), campaign.id) if m.to_address == "ana@example.org")
    assert ana.status is MessageStatus.FAILED and "550 mailbox unavailable" in ana.error
    session.expire_all()
    assert session.get(EmailCampaign, campaign.id).status is CampaignStatus.FAILED
    assert retry_messages(session, admin_of(session), campaign.id) == 1
    session.commit()
    again = drain_outbox(engine, admin_of(session), campaign.id, backend=FileBackend(outbox_dir), email_from=EMAIL_FROM)
    assert (again.sent, again.failed, again.succeeded) == (1, 0, True)
    assert recipients(outbox_dir) == OWING
    session.expire_all()
    assert session.get(EmailCampaign, campaign.id).status is CampaignStatus.COMPLETED


def test_an_uncertain_delivery_is_left_interrupted_and_only_an_explicit_retry_resends_it(
    session, engine, league, outbox_dir
):
    campaign, result = send_to_everyone(session, engine, FailFor(outbox_dir, {"ana@example.org"}, DeliveryUncertain))
    assert (result.sent, result.failed, result.interrupted) == (1, 0, 1)
    assert retry_messages(session, admin_of(session), campaign.id) == 0  # failed only: nothing
    session.commit()  # as a caller does (an open write would hold SQLite's lock through the drain)
    resumed = drain_outbox(engine, admin_of(session), campaign.id, backend=FileBackend(outbox_dir), email_from=EMAIL_FROM)
    assert (resumed.sent, resumed.interrupted) == (0, 1)
    assert retry_messages(session, admin_of(session), campaign.id, interrupted=True) == 1
    session.commit()
    final = drain_outbox(engine, admin_of(session), campaign.id, backend=FileBackend(outbox_dir), email_from=EMAIL_FROM)
    assert (final.sent, final.interrupted) == (1, 0)


def test_an_exhausted_daily_quota_stops_the_run_and_a_later_run_finishes_it(session, engine, league, outbox_dir):
    class QuotaAfterOne(FileBackend):
        sent = 0

        def send(self, message):  # type: ignore[no-untyped-def]
            if self.sent:
                raise EmailDeliveryError("Daily limit", quota_exhausted=True)
            self.sent += 1
            return super().send(message)

    campaign, result = send_to_everyone(session, engine, QuotaAfterOne(outbox_dir))
    assert (result.sent, result.failed, result.remaining) == (1, 0, 1)
    assert result.stopped_reason == "Daily limit"
    later = drain_outbox(engine, admin_of(session), campaign.id, backend=FileBackend(outbox_dir), email_from=EMAIL_FROM)
    assert (later.sent, later.remaining) == (1, 0)
    assert recipients(outbox_dir) == OWING


# --- crash half-way and resume ------------------------------------------------------------------

@pytest.mark.parametrize("before_delivery", [False, True], ids=["delivered-then-crash", "crash-before-delivery"])
def test_a_crash_half_way_then_a_resume_never_sends_a_second_copy(session, engine, league, outbox_dir, before_delivery):
    admin = admin_of(session)
    campaign = start_campaign(session, admin, OUTSTANDING_BALANCE, email_from=EMAIL_FROM)
    session.commit()
    with pytest.raises(CrashAfter.Crash):
        drain_outbox(engine, admin, campaign.id, backend=CrashAfter(outbox_dir, 1, before_delivery=before_delivery),
                     email_from=EMAIL_FROM)
    assert sorted(statuses(session, campaign.id).values()).count("sending") == 1
    resumed = drain_outbox(engine, admin, campaign.id, backend=FileBackend(outbox_dir), email_from=EMAIL_FROM)
    assert (resumed.sent, resumed.interrupted) == (0, 1)  # the one in flight is reported, not re-sent
    delivered = recipients(outbox_dir)
    assert len(delivered) == len(set(delivered)) == (1 if before_delivery else 2)
    if before_delivery:  # the admin knows it never went out, and sends it
        retry_messages(session, admin, campaign.id, interrupted=True)
        session.commit()
        drain_outbox(engine, admin, campaign.id, backend=FileBackend(outbox_dir), email_from=EMAIL_FROM)
    assert recipients(outbox_dir) == OWING


KILLABLE_DRAIN = textwrap.dedent("""
    import sys, time
    from core.db import make_engine
    from core.email.backends.file import FileBackend
    from core.email.outbox import drain_outbox
    from tests.factories import acting
    from core.models import Tenant

    class Slow(FileBackend):
        def send(self, message):
            time.sleep(0.3)
            return super().send(message)

    url, outbox, tenant_id, campaign_id, email_from = sys.argv[1:]
    from core.access.permissions import ActingUser, Role
    admin = ActingUser("admin@example.org", Role.ADMIN, int(tenant_id))
    drain_outbox(make_engine(url), admin, int(campaign_id), backend=Slow(outbox), email_from=email_from)
""")


def test_a_killed_send_process_resumes_where_it_stopped(session, engine, database_url, outbox_dir):
    from tests.factories import make_link, make_parent, make_player, make_product
    tenant = make_tenant(session, slug="westside")
    product = make_product(session, tenant, "Registration")
    parents = [make_parent(session, tenant, f"Parent {n:02d}", f"p{n:02d}@example.org") for n in range(12)]
    for parent in parents:
        make_link(session, tenant, make_player(session, tenant, parent), product)
    session.commit()
    admin = acting(tenant)
    campaign = start_campaign(session, admin, OUTSTANDING_BALANCE, email_from=EMAIL_FROM)
    session.commit()
    worker = subprocess.Popen(
        [sys.executable, "-c", KILLABLE_DRAIN, database_url, str(outbox_dir), str(tenant.id), str(campaign.id), EMAIL_FROM],
        cwd=Path(__file__).resolve().parents[3],
    )
    deadline = time.monotonic() + 30
    while len(list(outbox_dir.glob("*.eml"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    killed_at = len(list(outbox_dir.glob("*.eml")))
    assert 3 <= killed_at < 12
    resumed = drain_outbox(engine, admin, campaign.id, backend=FileBackend(outbox_dir), email_from=EMAIL_FROM)
    # The killed worker's run is known to be gone (its process, or on PostgreSQL its lock): a
    # message it had in the provider call is interrupted at once, not held as being sent.
    assert resumed.in_flight == 0 and resumed.interrupted <= 1
    delivered = recipients(outbox_dir)
    assert len(delivered) == len(set(delivered))  # nobody got two
    if resumed.interrupted:
        later = drain_outbox(engine, admin, campaign.id, backend=FileBackend(outbox_dir), email_from=EMAIL_FROM)
        assert (later.interrupted, later.in_flight, later.sent) == (1, 0, 0)  # never sent again on its own
        interrupted = next(m for m in campaign_messages(session, admin, campaign.id) if m.status is MessageStatus.SENDING)
        if interrupted.to_address not in delivered:
            assert retry_messages(session, admin, campaign.id, interrupted=True) == 1
            session.commit()
            drain_outbox(engine, admin, campaign.id, backend=FileBackend(outbox_dir), email_from=EMAIL_FROM)
    assert recipients(outbox_dir) == sorted(p.email for p in parents)


# --- a send already running: in flight, stale, late -----------------------------------------------

class Held(FileBackend):
    """Holds the message to ``address`` inside the provider call until the test releases it."""

    def __init__(self, directory: Path, address: str) -> None:
        super().__init__(directory)
        self.address = address
        self.entered, self.release = threading.Event(), threading.Event()

    def send(self, message):  # type: ignore[no-untyped-def]
        if message["To"].addresses[0].addr_spec == self.address:
            self.entered.set()
            assert self.release.wait(30), "the test never released the send"
        return super().send(message)


def drain_in_background(engine, admin, campaign_id: int, backend):  # type: ignore[no-untyped-def]
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(drain_outbox, engine, admin, campaign_id, backend=backend, email_from=EMAIL_FROM, workers=1)
    pool.shutdown(wait=False)
    return future


def test_retrying_interrupted_messages_leaves_alone_one_another_worker_is_sending(session, engine, league, outbox_dir):
    admin = admin_of(session)
    campaign = start_campaign(session, admin, OUTSTANDING_BALANCE, email_from=EMAIL_FROM)
    session.commit()
    held = Held(outbox_dir, "ana@example.org")
    worker = drain_in_background(engine, admin, campaign.id, held)
    try:
        assert held.entered.wait(10)
        assert retry_messages(session, admin, campaign.id, interrupted=True) == 0
        session.commit()
        other = drain_outbox(engine, admin, campaign.id, backend=FileBackend(outbox_dir), email_from=EMAIL_FROM)
        assert (other.sent, other.interrupted, other.in_flight) == (1, 0, 1)  # Ben; Ana is someone else's
        assert statuses(session, campaign.id)["Ana O'Neil <& Co>"] == "sending"
        shown = {row.parent_name: row.status for row in message_rows(session, admin, campaign.id)}
        assert shown["Ana O'Neil <& Co>"] == "sending"
    finally:
        held.release.set()
    assert worker.result(timeout=30).sent == 1
    assert recipients(outbox_dir) == OWING
    session.expire_all()
    assert session.get(EmailCampaign, campaign.id).status is CampaignStatus.COMPLETED


def test_a_send_that_finishes_after_its_stale_claim_was_requeued_is_recorded_and_not_sent_again(
    session, engine, league, outbox_dir
):
    admin = admin_of(session)
    campaign = start_campaign(session, admin, OUTSTANDING_BALANCE, email_from=EMAIL_FROM)
    session.commit()
    held = Held(outbox_dir, "ana@example.org")
    worker = drain_in_background(engine, admin, campaign.id, held)
    try:
        assert held.entered.wait(10)
        age_claims(session, campaign.id)  # the send takes longer than the stale-claim limit...
        assert retry_messages(session, admin, campaign.id, interrupted=True) == 1  # ...so the admin re-queues it
        session.commit()
    finally:
        held.release.set()  # ...and then it does go out
    assert worker.result(timeout=30).sent == 2
    assert statuses(session, campaign.id)["Ana O'Neil <& Co>"] == "sent"
    again = drain_outbox(engine, admin, campaign.id, backend=FileBackend(outbox_dir), email_from=EMAIL_FROM)
    assert again.sent == 0
    assert recipients(outbox_dir) == OWING


# --- the family's situation changed since the send was queued -----------------------------------

def links_of(session, parent):  # type: ignore[no-untyped-def]
    return session.scalars(
        select(PaymentLink).join(Player, Player.id == PaymentLink.player_id)
        .where(Player.parent_id == parent.id, PaymentLink.status == LinkStatus.ACTIVE)
        .order_by(PaymentLink.id)
    ).all()


def test_a_resumed_send_does_not_email_a_family_who_paid_or_opted_out_since_it_was_queued(
    session, engine, league, outbox_dir
):
    admin = admin_of(session)
    campaign = start_campaign(session, admin, OUTSTANDING_BALANCE, email_from=EMAIL_FROM)
    session.commit()
    for link in links_of(session, league["ben"]):
        pay_link(session, link)
    league["ana"].email_opt_out = True
    session.commit()

    result = drain_outbox(engine, admin, campaign.id, backend=FileBackend(outbox_dir), email_from=EMAIL_FROM)

    assert (result.sent, result.skipped, result.succeeded) == (0, 2, True)
    assert read_outbox(outbox_dir) == []
    reasons = {m.parent.name: skip_words(m) for m in campaign_messages(session, admin, campaign.id)}
    assert reasons["Bénédicte Zoë"] == "paid since queued"
    assert reasons["Ana O'Neil <& Co>"] == "opted out since queued"


def test_a_family_whose_balance_changed_since_the_send_was_queued_is_not_sent_the_old_amount(
    session, engine, league, outbox_dir
):
    admin = admin_of(session)
    campaign = start_campaign(session, admin, OUTSTANDING_BALANCE, email_from=EMAIL_FROM)
    session.commit()
    pay_link(session, links_of(session, league["ana"])[0])  # $360.00 queued, $210.00 owed now
    session.commit()

    result = drain_outbox(engine, admin, campaign.id, backend=FileBackend(outbox_dir), email_from=EMAIL_FROM)

    assert (result.sent, result.skipped) == (1, 1)
    assert recipients(outbox_dir) == ["ben@example.org"]
    ana = next(row for row in message_rows(session, admin, campaign.id) if row.parent_name == "Ana O'Neil <& Co>")
    assert (ana.status, ana.reason) == ("skipped", "balance changed since queued — start a new send")


# --- what the admin confirmed is what is queued ---------------------------------------------------

def test_a_send_whose_list_changed_since_the_admin_reviewed_it_is_refused_and_writes_nothing(
    session, engine, league, outbox_dir
):
    admin = admin_of(session)
    reviewed = build_manifest(session, admin, OUTSTANDING_BALANCE).totals
    session.rollback()
    for link in links_of(session, league["ben"]):
        pay_link(session, link)
    session.commit()

    with pytest.raises(ManifestChanged, match="The list changed since you reviewed it: review again") as refused:
        start_campaign(session, admin, OUTSTANDING_BALANCE, email_from=EMAIL_FROM, expected=reviewed)
    session.rollback()

    assert "now 1 email for $360.00; you confirmed 2 emails for $510.00" in str(refused.value)
    assert session.scalars(select(EmailCampaign)).all() == []
    current = build_manifest(session, admin, OUTSTANDING_BALANCE).totals
    session.rollback()
    assert start_campaign(session, admin, OUTSTANDING_BALANCE, email_from=EMAIL_FROM, expected=current).id


# --- test send ----------------------------------------------------------------------------------

def test_a_test_send_delivers_the_parents_real_email_to_the_test_address(session, engine, league, outbox_dir):
    admin = admin_of(session)
    result = send_test_email(engine, admin, parent_id=league["ana"].id, test_address="Coach.Me@Example.org",
                             email_type=OUTSTANDING_BALANCE, backend=FileBackend(outbox_dir), email_from=EMAIL_FROM)
    assert result.sent == 1
    (message,) = read_outbox(outbox_dir)
    assert message["To"].addresses[0].addr_spec == "Coach.Me@example.org"
    # (a long Subject may be folded right after "Subject:"; clients unfold and trim it)
    assert message["Subject"].strip().startswith("[TEST] Westside Hoops: $360.00 outstanding")
    assert "Total: $360.00" in message.get_body(("plain",)).get_content()
    audit = session.scalars(select(AuditEntry)).one()
    assert audit.action == "email.test_send" and "Coach.Me@example.org" in audit.summary


def test_a_test_send_does_not_count_as_a_reminder(session, engine, league, outbox_dir):
    admin = admin_of(session)
    send_test_email(engine, admin, parent_id=league["ana"].id, test_address="me@example.org",
                    email_type=OUTSTANDING_BALANCE, backend=FileBackend(outbox_dir), email_from=EMAIL_FROM)
    _, result = send_to_everyone(session, engine, FileBackend(outbox_dir))
    assert result.sent == 2
    assert recipients(outbox_dir) == ["ana@example.org", "ben@example.org", "me@example.org"]


def test_a_parent_without_email_or_opted_out_can_still_be_test_sent(session, engine, league, outbox_dir):
    admin = admin_of(session)
    for parent in (league["cat"], league["dan"]):
        send_test_email(engine, admin, parent_id=parent.id, test_address="me@example.org",
                        email_type=OUTSTANDING_BALANCE, backend=FileBackend(outbox_dir), email_from=EMAIL_FROM)
    assert recipients(outbox_dir) == ["me@example.org", "me@example.org"]


@pytest.mark.parametrize("address", ["not-an-address", "me@localhost", "me@example.org\r\nBcc: x@example.org", ""])
def test_an_invalid_test_address_is_refused_before_anything_is_written(session, engine, league, outbox_dir, address):
    with pytest.raises(InvalidInput):
        send_test_email(engine, admin_of(session), parent_id=league["ana"].id, test_address=address,
                        email_type=OUTSTANDING_BALANCE, backend=FileBackend(outbox_dir), email_from=EMAIL_FROM)
    assert session.scalars(select(EmailCampaign)).all() == [] and read_outbox(outbox_dir) == []


def test_a_test_send_for_a_parent_who_owes_nothing_is_refused(session, engine, league, outbox_dir):
    with pytest.raises(InvalidInput, match="owes nothing"):
        send_test_email(engine, admin_of(session), parent_id=league["eve"].id, test_address="me@example.org",
                        email_type=OUTSTANDING_BALANCE, backend=FileBackend(outbox_dir), email_from=EMAIL_FROM)


# --- who may send, and where --------------------------------------------------------------------

@pytest.mark.parametrize("role", [Role.COACH, Role.TREASURER, None])
def test_only_an_admin_may_send(session, engine, league, outbox_dir, role):
    campaign = start_campaign(session, admin_of(session), OUTSTANDING_BALANCE, email_from=EMAIL_FROM)
    session.commit()
    user = acting(league["tenant"], role) if role else None
    backend = FileBackend(outbox_dir)
    attempts = [
        lambda: start_campaign(session, user, OUTSTANDING_BALANCE, email_from=EMAIL_FROM),
        lambda: send_test_email(engine, user, parent_id=league["ana"].id, test_address="me@example.org",
                                email_type=OUTSTANDING_BALANCE, backend=backend, email_from=EMAIL_FROM),
        lambda: drain_outbox(engine, user, campaign.id, backend=backend, email_from=EMAIL_FROM),
        lambda: run_campaign(engine, user, campaign.id, backend=backend, email_from=EMAIL_FROM),
        lambda: retry_messages(session, user, campaign.id),
    ]
    for attempt in attempts:
        with pytest.raises(PermissionDenied):
            attempt()
    assert read_outbox(outbox_dir) == []
    assert sorted(set(statuses(session, campaign.id).values())) == ["pending", "skipped"]


def test_another_leagues_campaign_cannot_be_run_or_read(session, engine, league, outbox_dir):
    campaign = start_campaign(session, admin_of(session), OUTSTANDING_BALANCE, email_from=EMAIL_FROM)
    session.commit()
    other_admin = acting(make_tenant(session))
    session.commit()
    with pytest.raises(NotFound):
        drain_outbox(engine, other_admin, campaign.id, backend=FileBackend(outbox_dir), email_from=EMAIL_FROM)
    assert campaign_messages(session, other_admin, campaign.id) == []
    first = session.scalars(select(EmailMessage.id)).first()
    with pytest.raises(NotFound):
        get_message(session, other_admin, first)
    assert read_outbox(outbox_dir) == []


# --- a second kind of email is one registry entry -----------------------------------------------

def test_a_second_kind_of_reminder_is_one_registry_entry(session, engine, league, outbox_dir, monkeypatch):
    from core.email.registry import EMAIL_TYPES
    from core.reporting.balances import BalanceFilter, outstanding_balances

    dues_id = league["dues"].id

    def owing_dues(session, user, parent_ids=None):  # type: ignore[no-untyped-def]
        return outstanding_balances(session, user, BalanceFilter(product_ids=frozenset({dues_id}),
                                                                 parent_ids=parent_ids or frozenset()))

    dues_reminder = EmailType(key="dues_reminder", title="Monthly dues reminder", audience=owing_dues,
                              html_template="outstanding_balance.html", text_template="outstanding_balance.txt",
                              subject_template="{{ brand.league_name }}: monthly dues of {{ total }}")
    monkeypatch.setitem(EMAIL_TYPES, dues_reminder.key, dues_reminder)
    admin = admin_of(session)
    campaign = start_campaign(session, admin, dues_reminder, email_from=EMAIL_FROM)
    session.commit()
    run_campaign(engine, admin, campaign.id, backend=FileBackend(outbox_dir), email_from=EMAIL_FROM)
    (message,) = read_outbox(outbox_dir)
    assert message["Subject"].strip() == "Westside Hoops: monthly dues of $60.00"
    assert everyone_who_owes is OUTSTANDING_BALANCE.audience
