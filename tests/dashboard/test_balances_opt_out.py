"""The Balances page: an admin stops or resumes a family's reminder emails from the family's row."""

from __future__ import annotations

from sqlalchemy import select

from core.models import AuditEntry, Parent


def test_an_admin_stops_a_familys_reminders_from_their_row_and_back(demo_league, open_app, session):
    at = open_app("admin")
    stop = next(b for b in at.button if b.label == "Stop reminder emails to this family")
    parent_id = int(stop.key.removeprefix("opt_out_"))
    stop.click().run()
    assert not at.exception
    session.expire_all()
    parent = session.get(Parent, parent_id)
    assert parent.email_opt_out is True
    assert any("will get no more reminder emails" in s.value for s in at.success)
    assert any("opted out" in e.label for e in at.expander)
    at.button(key=f"opt_out_{parent_id}").click().run()
    session.expire_all()
    assert session.get(Parent, parent_id).email_opt_out is False
    opt_outs = select(AuditEntry).where(AuditEntry.action.like("email_opt_%")).order_by(AuditEntry.id)
    assert [e.action for e in session.scalars(opt_outs)] == ["email_opt_out", "email_opt_in"]


def test_a_treasurer_sees_who_opted_out_but_has_no_button(demo_league, open_app):
    at = open_app("treasurer")
    assert not at.exception
    assert not [b for b in at.button if b.key and b.key.startswith("opt_out_")]
