"""The Balances page: an admin stops or resumes a family's reminder emails from the family's row."""

from __future__ import annotations

from sqlalchemy import select

from core.access.leagues import find_tenant
from core.access.permissions import Role
from core.models import AuditEntry, Parent
from core.reporting.balances import FamilyOrder, family_ranking
from tests.factories import acting


def first_family(session, role: Role) -> int:
    """The first family on the page (by last name, as the page lists them)."""
    user = acting(find_tenant(session, "demo"), role)
    return family_ranking(session, user, order=FamilyOrder.LAST_NAME).parent_ids[0]


def test_an_admin_stops_a_familys_reminders_from_their_row_and_back(demo_league, open_app, session):
    at = open_app("admin")
    parent_id = first_family(session, Role.ADMIN)
    assert not [b for b in at.button if b.key == f"opt_out_{parent_id}"], "a closed row shows only its figures"
    at.session_state[f"family_{parent_id}"] = True  # the row opened
    at.run()
    stop = at.button(key=f"opt_out_{parent_id}")
    assert stop.label == "Stop reminder emails to this family"
    stop.click().run()
    assert not at.exception
    session.expire_all()
    parent = session.get(Parent, parent_id)
    assert parent.email_opt_out is True
    assert any("will get no more reminder emails" in s.value for s in at.success)
    assert any("opted out" in e.label for e in at.expander)
    resume = at.button(key=f"opt_out_{parent_id}")  # the row stays open, its label changed
    assert resume.label == "Send reminder emails again"
    resume.click().run()
    session.expire_all()
    assert session.get(Parent, parent_id).email_opt_out is False
    opt_outs = select(AuditEntry).where(AuditEntry.action.like("email_opt_%")).order_by(AuditEntry.id)
    assert [e.action for e in session.scalars(opt_outs)] == ["email_opt_out", "email_opt_in"]


def test_a_treasurer_sees_who_opted_out_but_has_no_button(demo_league, open_app, session):
    at = open_app("treasurer")
    at.session_state[f"family_{first_family(session, Role.TREASURER)}"] = True
    at.run()
    assert not at.exception
    assert at.dataframe, "the opened row shows the family's items"
    assert not [b for b in at.button if b.key and b.key.startswith("opt_out_")]
