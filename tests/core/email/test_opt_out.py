"""Opting out is real: an admin stops or resumes a family's reminders, audited; the family stays in
the balances and is listed as skipped by a send."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.access.permissions import Role
from core.email.campaigns import build_manifest
from core.email.opt_out import set_email_opt_out
from core.email.registry import OUTSTANDING_BALANCE
from core.errors import NotFound, PermissionDenied
from core.models import AuditEntry, Parent
from core.reporting.balances import outstanding_balances
from tests.factories import acting, make_tenant


def _skipped(session, admin) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {entry.parent_name: entry.skip_reason or "" for entry in build_manifest(session, admin, OUTSTANDING_BALANCE).skipped}


def test_an_admin_opts_a_family_out_and_they_stay_in_the_balances_but_are_skipped(session, league):
    admin, ana = acting(league["tenant"]), league["ana"]
    change = set_email_opt_out(session, admin, ana.id, opted_out=True)
    session.commit()
    assert change.changed and change.opted_out
    assert ana.id in {balance.parent_id for balance in outstanding_balances(session, admin)}
    assert "opted out" in _skipped(session, admin)[ana.name]
    entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "email_opt_out")).one()
    assert entry.summary == f"Stopped reminder emails to {ana.name}" and entry.actor == admin.identity


def test_opting_back_in_puts_the_family_back_among_the_recipients_and_is_audited(session, league):
    admin, dan = acting(league["tenant"]), league["dan"]  # opted out in the fixture
    assert set_email_opt_out(session, admin, dan.id, opted_out=False).changed
    session.commit()
    assert dan.name not in _skipped(session, admin)
    assert [entry.summary for entry in session.scalars(select(AuditEntry))] == [f"Resumed reminder emails to {dan.name}"]


def test_setting_the_choice_a_family_already_has_records_nothing(session, league):
    admin = acting(league["tenant"])
    assert not set_email_opt_out(session, admin, league["dan"].id, opted_out=True).changed
    assert session.scalars(select(AuditEntry)).all() == []


@pytest.mark.parametrize("role", [Role.COACH, Role.TREASURER])
def test_a_coach_or_treasurer_may_not_change_a_familys_choice(session, league, role):
    with pytest.raises(PermissionDenied, match=f"A {role.value} may not change whether a family gets reminder"):
        set_email_opt_out(session, acting(league["tenant"], role), league["ana"].id, opted_out=True)
    session.rollback()
    assert session.get(Parent, league["ana"].id).email_opt_out is False


def test_a_family_of_another_league_is_not_found(session, league):
    other = make_tenant(session)
    with pytest.raises(NotFound):
        set_email_opt_out(session, acting(other), league["ana"].id, opted_out=True)
