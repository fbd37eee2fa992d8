"""Two drains, two campaigns, two admins at once: still one email per parent.

On PostgreSQL these exercise the row locks (SKIP LOCKED, the league and parent locks); on SQLite,
the database write lock that the same code takes there.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from core.db import make_engine
from core.email.backends.file import FileBackend
from core.email.campaigns import campaign_messages, start_campaign
from core.email.outbox import drain_outbox
from core.email.registry import OUTSTANDING_BALANCE
from core.models import EmailCampaign, EmailMessage, MessageStatus, Tenant
from tests.core.email.conftest import EMAIL_FROM, recipients, skip_words
from tests.factories import acting, make_link, make_parent, make_player, make_product, make_tenant

PARENTS = 24
# How a parent another send is emailing (or has emailed) is skipped, at queue or at claim time.
ALREADY_REMINDED = ("already queued in another send", "being emailed by another send", "emailed within the",
                    "emailed since this was queued", "emailed by another send still in progress")


class Slow(FileBackend):
    def send(self, message):  # type: ignore[no-untyped-def]
        time.sleep(0.02)
        return super().send(message)


@pytest.fixture
def big_league(session):
    tenant = make_tenant(session, slug="busy")
    product = make_product(session, tenant, "Registration")
    parents = [make_parent(session, tenant, f"Parent {n:02d}", f"p{n:02d}@example.org") for n in range(PARENTS)]
    for parent in parents:
        make_link(session, tenant, make_player(session, tenant, parent), product)
    session.commit()
    return tenant, sorted(p.email for p in parents)


def in_parallel(*jobs):  # type: ignore[no-untyped-def]
    """Run the jobs in threads released together; return their results, re-raising any error."""
    barrier = threading.Barrier(len(jobs))
    results: list[object] = [None] * len(jobs)
    errors: list[BaseException] = []

    def run(index, job):  # type: ignore[no-untyped-def]
        try:
            barrier.wait()
            results[index] = job()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n, job)) for n, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def test_two_workers_draining_one_campaign_send_each_email_once(session, database_url, big_league, tmp_path):
    tenant, emails = big_league
    admin = acting(tenant)
    campaign = start_campaign(session, admin, OUTSTANDING_BALANCE, email_from=EMAIL_FROM)
    session.commit()
    engines = [make_engine(database_url) for _ in range(2)]
    outbox = tmp_path / "outbox"
    try:
        first, second = in_parallel(*(
            (lambda e=e: drain_outbox(e, admin, campaign.id, backend=Slow(outbox), email_from=EMAIL_FROM, workers=3))
            for e in engines
        ))
    finally:
        for e in engines:
            e.dispose()
    assert first.sent + second.sent == PARENTS and first.sent and second.sent
    assert recipients(outbox) == emails


@pytest.mark.parametrize("cooldown_days", [3, 0], ids=["3-day-cool-down", "no-cool-down"])
def test_two_admins_sending_to_everyone_at_once_email_each_parent_once(
    session, database_url, big_league, tmp_path, cooldown_days
):
    """A cool-down of 0 days governs only earlier sends: two sends at once still email each parent once."""
    tenant, emails = big_league
    admin = acting(tenant)
    outbox = tmp_path / "outbox"

    def send_to_everyone() -> EmailCampaign:
        engine = make_engine(database_url)
        try:
            from core.db import session_factory
            with session_factory(engine)() as own:
                campaign = start_campaign(own, admin, OUTSTANDING_BALANCE, email_from=EMAIL_FROM,
                                          cooldown_days=cooldown_days)
                own.commit()
            drain_outbox(engine, admin, campaign.id, backend=Slow(outbox), email_from=EMAIL_FROM, workers=2)
            return campaign
        finally:
            engine.dispose()

    one, two = in_parallel(send_to_everyone, send_to_everyone)
    assert recipients(outbox) == emails
    skipped = [m for c in (one, two) for m in campaign_messages(session, admin, c.id) if m.status is MessageStatus.SKIPPED]
    assert len(skipped) == PARENTS
    assert all(skip_words(m).startswith(ALREADY_REMINDED) for m in skipped), {skip_words(m) for m in skipped}


def test_a_send_started_when_another_is_half_way_emails_nobody_twice_with_no_cool_down(
    session, engine, big_league, tmp_path
):
    """The second admin presses send after the first send has emailed some parents but not all."""
    tenant, emails = big_league
    admin = acting(tenant)
    outbox = tmp_path / "outbox"
    second: list[int] = []

    class StartsAnotherSendHalfWay(FileBackend):
        def send(self, message):  # type: ignore[no-untyped-def]
            provider_id = super().send(message)
            if len(recipients(outbox)) == PARENTS // 2 and not second:
                from core.db import unit_of_work
                with unit_of_work(engine) as other:
                    second.append(start_campaign(other, admin, OUTSTANDING_BALANCE, email_from=EMAIL_FROM,
                                                 cooldown_days=0).id)
            return provider_id

    first = start_campaign(session, admin, OUTSTANDING_BALANCE, email_from=EMAIL_FROM, cooldown_days=0)
    session.commit()
    assert drain_outbox(engine, admin, first.id, backend=StartsAnotherSendHalfWay(outbox), email_from=EMAIL_FROM,
                        workers=1).sent == PARENTS
    later = drain_outbox(engine, admin, second[0], backend=Slow(outbox), email_from=EMAIL_FROM)
    assert (later.sent, later.skipped) == (0, 0)
    assert recipients(outbox) == emails
    reasons = [skip_words(m) for m in campaign_messages(session, admin, second[0])]
    assert len(reasons) == PARENTS and all(r.startswith(ALREADY_REMINDED) for r in reasons), set(reasons)


@pytest.mark.parametrize("cooldown_days", [3, 0], ids=["3-day-cool-down", "no-cool-down"])
def test_two_campaigns_queued_for_the_same_parents_cannot_both_email_one(
    session, database_url, big_league, tmp_path, cooldown_days
):
    """Even when both outboxes hold every parent (e.g. queued before a fix), the claim decides, whatever the cool-down."""
    tenant, emails = big_league
    admin = acting(tenant)
    first = start_campaign(session, admin, OUTSTANDING_BALANCE, email_from=EMAIL_FROM, cooldown_days=cooldown_days)
    session.commit()
    second_id = _copy_of(session, first, cooldown_days=cooldown_days)
    outbox = tmp_path / "outbox"
    engines = [make_engine(database_url) for _ in range(2)]
    try:
        results = in_parallel(*(
            (lambda e=e, c=c: drain_outbox(e, admin, c, backend=Slow(outbox), email_from=EMAIL_FROM, workers=3))
            for e, c in zip(engines, (first.id, second_id), strict=True)
        ))
    finally:
        for e in engines:
            e.dispose()
    assert recipients(outbox) == emails
    assert sum(r.sent for r in results) == PARENTS and sum(r.skipped for r in results) == PARENTS
    # Drained again later, neither campaign sends anything more.
    later = [drain_outbox(session.get_bind(), admin, c, backend=Slow(outbox), email_from=EMAIL_FROM)
             for c in (first.id, second_id)]
    assert [r.sent for r in later] == [0, 0] and recipients(outbox) == emails


def test_a_campaign_queued_before_another_sent_does_not_email_its_parents_again_with_no_cool_down(
    session, engine, big_league, tmp_path
):
    """One after the other: the first campaign sends, then the second (queued earlier) is drained."""
    tenant, emails = big_league
    admin = acting(tenant)
    first = start_campaign(session, admin, OUTSTANDING_BALANCE, email_from=EMAIL_FROM, cooldown_days=0)
    session.commit()
    second_id = _copy_of(session, first, cooldown_days=0)
    outbox = tmp_path / "outbox"
    assert drain_outbox(engine, admin, first.id, backend=Slow(outbox), email_from=EMAIL_FROM).sent == PARENTS
    result = drain_outbox(engine, admin, second_id, backend=Slow(outbox), email_from=EMAIL_FROM)
    assert (result.sent, result.skipped) == (0, PARENTS)
    assert recipients(outbox) == emails
    reasons = {skip_words(m) for m in campaign_messages(session, admin, second_id)}
    assert reasons == {f"emailed since this was queued (campaign #{first.id})"}


def _copy_of(session, campaign: EmailCampaign, *, cooldown_days: int) -> int:  # type: ignore[no-untyped-def]
    """A second running campaign holding the same parents as ``campaign``, all pending."""
    admin = acting(session.get(Tenant, campaign.tenant_id))
    copy = EmailCampaign(tenant_id=campaign.tenant_id, email_type="outstanding_balance",
                         started_by="other@example.org", audience={"cooldown_days": cooldown_days},
                         cooldown_days=cooldown_days)
    session.add(copy)
    session.flush()
    for row in campaign_messages(session, admin, campaign.id):
        session.add(EmailMessage(campaign_id=copy.id, tenant_id=row.tenant_id, parent_id=row.parent_id,
                                 to_address=row.to_address, subject=row.subject, amount_cents=row.amount_cents,
                                 currency=row.currency, status=MessageStatus.PENDING,
                                 message_id_header=row.message_id_header.replace("<c", "<d"),
                                 html_body=row.html_body, text_body=row.text_body))
    session.commit()
    return copy.id


def test_a_resume_that_meets_another_run_claiming_the_last_message_waits_and_succeeds(session, database_url, tmp_path,
                                                                                          monkeypatch):
    """It does not report "still queued" a message another run was claiming at that very moment."""
    from dataclasses import replace

    from core.email.registry import EMAIL_TYPES, everyone_who_owes
    from core.email.sending import resume_campaign

    tenant = make_tenant(session, slug="busy")
    parent = make_parent(session, tenant, "Parent", "p@example.org")
    make_link(session, tenant, make_player(session, tenant, parent), make_product(session, tenant, "Registration"))
    session.commit()
    admin = acting(tenant)
    campaign = start_campaign(session, admin, OUTSTANDING_BALANCE, email_from=EMAIL_FROM)
    session.commit()
    claiming = threading.Event()

    def slow_to_check(session, user, parent_ids=None):  # type: ignore[no-untyped-def]
        if parent_ids:  # the claim re-checks the family's balance, holding the row
            claiming.set()
            time.sleep(0.5)
        return everyone_who_owes(session, user, parent_ids)

    monkeypatch.setitem(EMAIL_TYPES, OUTSTANDING_BALANCE.key, replace(OUTSTANDING_BALANCE, audience=slow_to_check))
    outbox, engines = tmp_path / "outbox", [make_engine(database_url) for _ in range(2)]
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        first = pool.submit(resume_campaign, engines[0], admin, campaign.id, backend=FileBackend(outbox),
                            email_from=EMAIL_FROM)
        assert claiming.wait(10)
        second = resume_campaign(engines[1], admin, campaign.id, backend=FileBackend(outbox), email_from=EMAIL_FROM)
        assert (second.succeeded, second.result.remaining, second.result.sent) == (True, 0, 0)
        assert first.result(timeout=30).result.sent == 1
    finally:
        pool.shutdown()
        for e in engines:
            e.dispose()
    assert recipients(outbox) == ["p@example.org"]


def test_a_send_to_everyone_that_finds_everyone_taken_by_another_send_queues_no_empty_campaign(
    session, engine, big_league, tmp_path
):
    from sqlalchemy import func, select

    from core.email.senders import live_sender
    from core.email.sending import prepare_send_to_everyone, send_prepared

    tenant, _ = big_league
    admin = acting(tenant)
    prepared = prepare_send_to_everyone(engine, admin, OUTSTANDING_BALANCE, cooldown_days=3, gateway=None,
                                        backend_problem=lambda: None)
    assert prepared.manifest.count == PARENTS
    with live_sender(engine) as other_run:  # meanwhile another send queued every family, and is sending
        start_campaign(session, admin, OUTSTANDING_BALANCE, email_from=EMAIL_FROM, sender=other_run)
        session.commit()
        outcome = send_prepared(engine, admin, prepared, reviewed=False, backend=Slow(tmp_path / "outbox"),
                                email_from=EMAIL_FROM, gateway=None)
    assert (outcome.queued, outcome.own, outcome.succeeded) == (None, None, True)
    assert session.scalar(select(func.count()).select_from(EmailCampaign)) == 1
    assert recipients(tmp_path / "outbox") == []
