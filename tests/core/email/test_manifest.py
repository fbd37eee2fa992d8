"""The manifest: who will get what, and who is skipped and why, before anything is sent."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from core.access.permissions import Role
from core.email.campaigns import build_manifest
from core.email.registry import OUTSTANDING_BALANCE
from core.errors import PermissionDenied
from core.models import CampaignStatus, EmailCampaign, EmailMessage, MessageStatus, utcnow
from tests.factories import acting, make_link, make_parent, make_player, mark_processing


def reasons(manifest) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {entry.parent_name: entry.skip_reason for entry in manifest.skipped}


def test_the_manifest_lists_who_gets_what_and_who_is_skipped_and_why(session, league):
    manifest = build_manifest(session, acting(league["tenant"]), OUTSTANDING_BALANCE)
    assert [(e.parent_name, e.email, e.amount) for e in manifest.recipients] == [
        ("Ana O'Neil <& Co>", "ana@example.org", "$360.00"),
        ("Bénédicte Zoë", "ben@example.org", "$150.00"),
    ]
    assert (manifest.count, manifest.total) == (2, "$510.00")
    assert reasons(manifest) == {
        "Cat Noemail": "no email address",
        "Dan Optout": "opted out of email",
        "Eve Paid": "nothing owed",
        "Fay Typo": "email address not valid",
        "Gus Withdrawn": "nothing owed",
    }
    assert manifest.skip_counts == {"no email address": 1, "opted out of email": 1, "nothing owed": 2,
                                    "email address not valid": 1}


def _reminder(session, league, parent, *, sent_ago: timedelta, test: bool = False,
              status: MessageStatus = MessageStatus.SENT,
              campaign_status: CampaignStatus = CampaignStatus.COMPLETED) -> None:  # type: ignore[no-untyped-def]
    tenant = league["tenant"]
    campaign = EmailCampaign(tenant_id=tenant.id, email_type="outstanding_balance", started_by="admin@example.org",
                             test_address="me@example.org" if test else None, status=campaign_status,
                             cooldown_days=None if test else 3)
    session.add(campaign)
    session.flush()
    session.add(EmailMessage(campaign_id=campaign.id, tenant_id=tenant.id, parent_id=parent.id,
                             to_address=parent.email, currency="usd", status=status,
                             message_id_header=f"<x{campaign.id}@example.org>",
                             sent_at=utcnow() - sent_ago, claimed_at=utcnow() - sent_ago))
    session.commit()


def test_a_parent_reminded_within_the_cool_down_is_skipped(session, league):
    _reminder(session, league, league["ana"], sent_ago=timedelta(days=2))
    manifest = build_manifest(session, acting(league["tenant"]), OUTSTANDING_BALANCE, cooldown_days=3)
    assert "within the 3-day cool-down" in reasons(manifest)["Ana O'Neil <& Co>"]
    assert [e.parent_name for e in manifest.recipients] == ["Bénédicte Zoë"]


def test_a_reminder_older_than_the_cool_down_does_not_skip(session, league):
    _reminder(session, league, league["ana"], sent_ago=timedelta(days=4))
    manifest = build_manifest(session, acting(league["tenant"]), OUTSTANDING_BALANCE, cooldown_days=3)
    assert "Ana O'Neil <& Co>" in [e.parent_name for e in manifest.recipients]


def test_a_test_send_and_a_failed_send_do_not_count_as_reminders(session, league):
    _reminder(session, league, league["ana"], sent_ago=timedelta(hours=1), test=True)
    _reminder(session, league, league["ben"], sent_ago=timedelta(hours=1), status=MessageStatus.FAILED)
    manifest = build_manifest(session, acting(league["tenant"]), OUTSTANDING_BALANCE, cooldown_days=3)
    assert manifest.count == 2


def test_a_cool_down_of_zero_days_skips_nobody_for_recent_email(session, league):
    _reminder(session, league, league["ana"], sent_ago=timedelta(hours=1))
    assert build_manifest(session, acting(league["tenant"]), OUTSTANDING_BALANCE, cooldown_days=0).count == 2


@pytest.mark.parametrize("cooldown_days", [3, 0])
def test_a_parent_queued_in_a_running_send_is_not_queued_again_whatever_the_cool_down(session, league, cooldown_days):
    _reminder(session, league, league["ana"], sent_ago=timedelta(days=30), status=MessageStatus.PENDING,
              campaign_status=CampaignStatus.RUNNING)
    manifest = build_manifest(session, acting(league["tenant"]), OUTSTANDING_BALANCE, cooldown_days=cooldown_days)
    assert reasons(manifest)["Ana O'Neil <& Co>"].startswith("already queued in another send (campaign #")
    assert manifest.skip_counts["already queued in another send"] == 1


def test_a_parent_being_emailed_right_now_is_not_queued_again_with_no_cool_down(session, league):
    _reminder(session, league, league["ana"], sent_ago=timedelta(seconds=5), status=MessageStatus.SENDING,
              campaign_status=CampaignStatus.RUNNING)
    manifest = build_manifest(session, acting(league["tenant"]), OUTSTANDING_BALANCE, cooldown_days=0)
    assert reasons(manifest)["Ana O'Neil <& Co>"].startswith("being emailed by another send (campaign #")


def _campaign_part_sent(session, league, *, still_queued: bool,
                        sent_ago: timedelta = timedelta(minutes=1)) -> None:  # type: ignore[no-untyped-def]
    """A running send that has emailed Ana (a minute ago) and, if ``still_queued``, not yet Ben."""
    _reminder(session, league, league["ana"], sent_ago=sent_ago, campaign_status=CampaignStatus.RUNNING)
    campaign = session.scalars(select(EmailCampaign).order_by(EmailCampaign.id.desc())).first()
    status = MessageStatus.PENDING if still_queued else MessageStatus.FAILED
    session.add(EmailMessage(campaign_id=campaign.id, tenant_id=league["tenant"].id, parent_id=league["ben"].id,
                             to_address=league["ben"].email, currency="usd", status=status,
                             message_id_header=f"<y{campaign.id}@example.org>"))
    session.commit()


def test_a_parent_emailed_by_a_send_still_in_progress_is_not_emailed_again_with_no_cool_down(session, league):
    """Two admins press send: the second one's list, built while the first is half-way, emails nobody twice."""
    _campaign_part_sent(session, league, still_queued=True)
    manifest = build_manifest(session, acting(league["tenant"]), OUTSTANDING_BALANCE, cooldown_days=0)
    assert manifest.count == 0
    assert reasons(manifest)["Ana O'Neil <& Co>"].startswith("emailed by another send still in progress (campaign #")
    assert reasons(manifest)["Bénédicte Zoë"].startswith("already queued in another send (campaign #")


@pytest.mark.parametrize("cooldown_days", [3, 0])
def test_a_send_that_stopped_days_ago_holds_only_what_it_still_has_queued(session, league, cooldown_days):
    """Stopped by the daily quota or a crash and never resumed: Ana, emailed 10 days ago, is due again."""
    _campaign_part_sent(session, league, still_queued=True, sent_ago=timedelta(days=10))
    manifest = build_manifest(session, acting(league["tenant"]), OUTSTANDING_BALANCE, cooldown_days=cooldown_days)
    assert [e.parent_name for e in manifest.recipients] == ["Ana O'Neil <& Co>"]
    assert reasons(manifest)["Bénédicte Zoë"].startswith("already queued in another send (campaign #")


def test_a_send_with_nothing_left_to_send_no_longer_holds_its_parents(session, league):
    """Left running only by a failure to deal with, it does not stop a 0-day cool-down send reaching Ana."""
    _campaign_part_sent(session, league, still_queued=False)
    manifest = build_manifest(session, acting(league["tenant"]), OUTSTANDING_BALANCE, cooldown_days=0)
    assert manifest.count == 2


def test_a_parent_whose_every_payment_is_processing_is_not_reminded(session, league):
    from sqlalchemy import select

    from core.models import PaymentLink, Player
    ben_kids = session.scalars(select(Player.id).where(Player.parent_id == league["ben"].id)).all()
    for link in session.scalars(select(PaymentLink).where(PaymentLink.player_id.in_(ben_kids))):
        mark_processing(session, link)
    session.commit()
    manifest = build_manifest(session, acting(league["tenant"]), OUTSTANDING_BALANCE)
    assert reasons(manifest)["Bénédicte Zoë"] == "payment processing"


def test_an_empty_league_has_an_empty_manifest(session):
    from tests.factories import make_tenant
    tenant = make_tenant(session)
    session.commit()
    manifest = build_manifest(session, acting(tenant), OUTSTANDING_BALANCE)
    assert (manifest.count, manifest.total_cents, manifest.skipped) == (0, 0, ())


def test_another_leagues_parents_are_not_in_the_manifest(session, league):
    from tests.factories import make_product, make_tenant
    other = make_tenant(session)
    stranger = make_parent(session, other, "Stranger", "stranger@example.org")
    make_link(session, other, make_player(session, other, stranger), make_product(session, other))
    session.commit()
    manifest = build_manifest(session, acting(league["tenant"]), OUTSTANDING_BALANCE)
    names = [e.parent_name for e in (*manifest.recipients, *manifest.skipped)]
    assert "Stranger" not in names


@pytest.mark.parametrize("role", [Role.COACH, Role.TREASURER])
def test_only_an_admin_sees_the_manifest(session, league, role):
    with pytest.raises(PermissionDenied):
        build_manifest(session, acting(league["tenant"], role), OUTSTANDING_BALANCE)
