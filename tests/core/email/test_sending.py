"""The send workflows both drivers present: prepare → send, test send, resume, and the report."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import func, select

from core.access.permissions import Role
from core.email.backends.file import FileBackend
from core.email.presend import PaymentsNotSynced
from core.email.registry import OUTSTANDING_BALANCE
from core.email.sending import (
    ListChangedSinceReview,
    prepare_send_to_everyone,
    record_decisions,
    resume_campaign,
    send_prepared,
    send_test,
)
from core.errors import EmailDeliveryError, InvalidInput, PermissionDenied
from core.models import EmailCampaign, PaymentLink, Player, utcnow
from core.payments.sync import SyncResult
from tests.core.email.conftest import EMAIL_FROM, recipients
from tests.factories import acting, make_tenant, pay_link

OWING = ["ana@example.org", "ben@example.org"]
A_GATEWAY = object()  # Stripe configured: the sync below is what runs with it


class RecordingSync:
    """A payment sync that records each run; ``on_run`` (the run's number) may change the league."""

    def __init__(self, on_run: Callable[[int], None] | None = None, *, fails: bool = False) -> None:
        self.runs, self.on_run, self.fails = 0, on_run, fails

    def __call__(self, _session, _user) -> SyncResult:  # type: ignore[no-untyped-def]
        self.runs += 1
        if self.on_run is not None:
            self.on_run(self.runs)
        now = utcnow()
        return SyncResult(full=False, started_at=now, synced_at=None if self.fails else now,
                          errors=["Stripe is down"] if self.fails else [])


class Stopped(BaseException):
    """The process stops (Ctrl-C, a crash) right after the campaign was queued."""


def stop_once_queued(queued) -> None:  # type: ignore[no-untyped-def]
    raise Stopped(queued.campaign_id)


def campaigns(session) -> int:  # type: ignore[no-untyped-def]
    session.expire_all()
    return session.scalar(select(func.count()).select_from(EmailCampaign))


def prepare(engine, league, **options):  # type: ignore[no-untyped-def]
    options.setdefault("backend_problem", lambda: None)
    options.setdefault("gateway", None)
    return prepare_send_to_everyone(engine, acting(league["tenant"]), OUTSTANDING_BALANCE, cooldown_days=3, **options)


def ben_pays(session, league) -> None:  # type: ignore[no-untyped-def]
    kids = select(Player.id).where(Player.parent_id == league["ben"].id)
    for link in session.scalars(select(PaymentLink).where(PaymentLink.player_id.in_(kids))).all():
        pay_link(session, link)
    session.commit()


# --- prepare ------------------------------------------------------------------------------------

def test_a_send_that_cannot_go_out_is_refused_before_payments_are_synced(engine, session, league):
    sync = RecordingSync()
    with pytest.raises(EmailDeliveryError, match="SMTP_HOST is not set"):
        prepare(engine, league, gateway=A_GATEWAY, sync=sync,
                backend_problem=lambda: "EMAIL_BACKEND is smtp but SMTP_HOST is not set.")
    assert sync.runs == 0 and campaigns(session) == 0


def test_preparing_syncs_payments_first_and_lists_who_gets_what(engine, session, league):
    sync = RecordingSync(lambda run: ben_pays(session, league))
    prepared = prepare(engine, league, gateway=A_GATEWAY, sync=sync)
    assert sync.runs == 1 and prepared.sync.ran and prepared.sync.note.startswith("Payments synced from Stripe first")
    assert [e.email for e in prepared.manifest.recipients] == ["ana@example.org"]  # Ben paid: the sync came first
    assert prepared.cooldown_days == 3 and campaigns(session) == 0


def test_a_failed_sync_refuses_the_send_and_queues_nothing(engine, session, league):
    with pytest.raises(PaymentsNotSynced, match="Stripe is down"):
        prepare(engine, league, gateway=A_GATEWAY, sync=RecordingSync(fails=True))
    assert campaigns(session) == 0


def test_without_stripe_nothing_is_synced_and_the_note_says_so(engine, league):
    prepared = prepare(engine, league)
    assert not prepared.sync.ran and "Stripe is not configured" in prepared.sync.note


def test_preparing_names_an_unfinished_send_whose_families_it_skips(engine, session, league, outbox_dir):
    first = prepare(engine, league)
    with pytest.raises(Stopped) as stopped:  # queued, then stopped before anything went out
        send_prepared(engine, acting(league["tenant"]), first, reviewed=False, backend=FileBackend(outbox_dir),
                      email_from=EMAIL_FROM, gateway=None, on_queued=stop_once_queued)
    again = prepare(engine, league)
    assert [c.id for c in again.unfinished] == [stopped.value.args[0]]
    assert again.manifest.count == 0 and again.manifest.skip_counts["already queued in another send"] == 2


# --- send the prepared list -----------------------------------------------------------------------

def test_a_send_confirmed_in_advance_is_not_synced_twice(engine, session, league, outbox_dir):
    sync = RecordingSync()
    prepared = prepare(engine, league, gateway=A_GATEWAY, sync=sync)
    seen = []
    outcome = send_prepared(engine, acting(league["tenant"]), prepared, reviewed=False,
                            backend=FileBackend(outbox_dir), email_from=EMAIL_FROM, gateway=A_GATEWAY, sync=sync,
                            on_queued=lambda queued: seen.append((queued, recipients(outbox_dir))))
    assert sync.runs == 1
    assert (seen[0][0].recipients, seen[0][0].skipped, seen[0][1]) == (2, 5, [])  # reported before sending
    assert outcome.succeeded and outcome.own.result.sent == 2 and recipients(outbox_dir) == OWING
    assert outcome.queued is not None and outcome.queued.campaign_id == outcome.own.campaign_id


def test_a_reviewed_send_syncs_again_and_is_refused_when_a_family_paid_meanwhile(engine, session, league, outbox_dir):
    sync = RecordingSync(lambda run: ben_pays(session, league) if run == 2 else None)
    prepared = prepare(engine, league, gateway=A_GATEWAY, sync=sync)
    with pytest.raises(ListChangedSinceReview, match="The list changed since you reviewed it") as refused:
        send_prepared(engine, acting(league["tenant"]), prepared, reviewed=True, backend=FileBackend(outbox_dir),
                      email_from=EMAIL_FROM, gateway=A_GATEWAY, sync=sync)
    assert sync.runs == 2 and campaigns(session) == 0 and recipients(outbox_dir) == []
    current = refused.value.prepared  # the list as it is now, to review again
    assert [e.email for e in current.manifest.recipients] == ["ana@example.org"]
    outcome = send_prepared(engine, acting(league["tenant"]), current, reviewed=True,
                            backend=FileBackend(outbox_dir), email_from=EMAIL_FROM, gateway=A_GATEWAY, sync=sync)
    assert outcome.own.result.sent == 1 and recipients(outbox_dir) == ["ana@example.org"]


def test_a_send_confirmed_in_advance_queues_the_list_as_it_is_now(engine, session, league, outbox_dir):
    prepared = prepare(engine, league)
    ben_pays(session, league)
    outcome = send_prepared(engine, acting(league["tenant"]), prepared, reviewed=False,
                            backend=FileBackend(outbox_dir), email_from=EMAIL_FROM, gateway=None)
    assert outcome.own.result.sent == 1 and recipients(outbox_dir) == ["ana@example.org"]


# --- the report both drivers show -----------------------------------------------------------------

class RefusesAna(FileBackend):
    def send(self, message):  # type: ignore[no-untyped-def]
        if message["To"].addresses[0].addr_spec == "ana@example.org":
            raise EmailDeliveryError("550 mailbox unavailable")
        return super().send(message)


def test_the_report_says_what_failed_and_what_was_skipped_at_send_time_and_why(engine, session, league, outbox_dir):
    prepared = prepare(engine, league)
    outcome = send_prepared(engine, acting(league["tenant"]), prepared, reviewed=False,
                            backend=RefusesAna(outbox_dir), email_from=EMAIL_FROM, gateway=None).own
    assert not outcome.succeeded
    assert [(r.parent_name, r.reason) for r in outcome.report.failed] == [("Ana O'Neil <& Co>", "550 mailbox unavailable")]
    assert outcome.report.counts == {"sent": 1, "failed": 1, "interrupted": 0, "pending": 0, "skipped": 5}
    assert outcome.report.skipped_at_send_time == ()

    league["ana"].email_opt_out = True  # before the retry, Ana opts out
    session.commit()
    resumed = resume_campaign(engine, acting(league["tenant"]), outcome.campaign_id, backend=FileBackend(outbox_dir),
                              email_from=EMAIL_FROM, retry_failed=True)
    assert resumed.requeued == 1 and resumed.succeeded and resumed.result.skipped == 1
    assert [(r.parent_name, r.reason) for r in resumed.report.skipped_at_send_time] == [
        ("Ana O'Neil <& Co>", "opted out since queued")]
    assert recipients(outbox_dir) == ["ben@example.org"]


def test_a_resume_without_retries_sends_what_is_still_queued(engine, session, league, outbox_dir):
    prepared = prepare(engine, league)
    with pytest.raises(Stopped):
        send_prepared(engine, acting(league["tenant"]), prepared, reviewed=False, backend=FileBackend(outbox_dir),
                      email_from=EMAIL_FROM, gateway=None, on_queued=stop_once_queued)
    campaign_id = session.scalars(select(EmailCampaign.id)).one()
    outcome = resume_campaign(engine, acting(league["tenant"]), campaign_id, backend=FileBackend(outbox_dir),
                              email_from=EMAIL_FROM)
    assert outcome.requeued is None and outcome.result.sent == 2 and recipients(outbox_dir) == OWING


# --- test send ----------------------------------------------------------------------------------------

def test_a_test_send_without_a_family_named_uses_the_first_who_owes(engine, league, outbox_dir):
    outcome = send_test(engine, acting(league["tenant"]), email_type=OUTSTANDING_BALANCE, test_address="me@example.org",
                        backend=FileBackend(outbox_dir), email_from=EMAIL_FROM)
    assert outcome.succeeded and recipients(outbox_dir) == ["me@example.org"]
    (row,) = outcome.report.rows
    assert (row.parent_name, row.amount, row.to_address, row.status) == ("Ana O'Neil <& Co>", "$360.00",
                                                                        "me@example.org", "sent")


def test_a_test_send_when_nobody_owes_is_refused(engine, session, outbox_dir):
    tenant = make_tenant(session)
    session.commit()
    with pytest.raises(InvalidInput, match="Nobody owes anything"):
        send_test(engine, acting(tenant), email_type=OUTSTANDING_BALANCE, test_address="me@example.org",
                  backend=FileBackend(outbox_dir), email_from=EMAIL_FROM)


# --- who may ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("role", [Role.COACH, Role.TREASURER, None])
def test_only_an_admin_may_run_a_send_workflow(engine, session, league, outbox_dir, role):
    prepared = prepare(engine, league)
    user = acting(league["tenant"], role) if role else None
    backend = FileBackend(outbox_dir)
    attempts = [
        lambda: prepare_send_to_everyone(engine, user, OUTSTANDING_BALANCE, cooldown_days=3, gateway=None,
                                         backend_problem=lambda: None),
        lambda: send_prepared(engine, user, prepared, reviewed=False, backend=backend, email_from=EMAIL_FROM,
                              gateway=None),
        lambda: send_test(engine, user, email_type=OUTSTANDING_BALANCE, test_address="me@example.org",
                          backend=backend, email_from=EMAIL_FROM),
        lambda: resume_campaign(engine, user, 1, backend=backend, email_from=EMAIL_FROM, retry_failed=True),
        lambda: record_decisions(engine, user, 1, was_sent=["1"]),
    ]
    for attempt in attempts:
        with pytest.raises(PermissionDenied):
            attempt()
    assert campaigns(session) == 0 and recipients(outbox_dir) == []


def test_the_cool_down_a_send_was_prepared_with_is_the_one_it_is_queued_with(engine, session, league, outbox_dir):
    prepared = prepare_send_to_everyone(engine, acting(league["tenant"]), OUTSTANDING_BALANCE, cooldown_days=0,
                                        gateway=None, backend_problem=lambda: None)
    outcome = send_prepared(engine, acting(league["tenant"]), prepared, reviewed=False,
                            backend=FileBackend(outbox_dir), email_from=EMAIL_FROM, gateway=None).own
    session.expire_all()
    assert session.get(EmailCampaign, outcome.campaign_id).cooldown_days == 0
