"""The admin's Audit log page: entries newest first, filters, and the CSV download."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from core.access.leagues import find_tenant
from core.access.permissions import ActingUser, Role
from core.audit import record_action
from core.db import unit_of_work


@pytest.fixture
def logged_actions(bare_demo_league, engine) -> None:
    with unit_of_work(engine) as session:
        tenant = find_tenant(session, "demo")
        ada = ActingUser("ada@westside.example", Role.ADMIN, tenant.id)
        tom = ActingUser("tom@westside.example", Role.TREASURER, tenant.id)
        for user, action, summary, day in (
            (ada, "backfill", "Minted 212 payment links ($18,450.00)", 1),
            (tom, "export", "Exported 180 line items for 95 families", 2),
            (ada, "send", "Sent 93 outstanding-balance emails, skipped 7", 3),
        ):
            entry = record_action(session, user, action, summary)
            entry.created_at = datetime(2026, 3, day, 18, 0, tzinfo=UTC)


def _table(at):  # type: ignore[no-untyped-def]
    return at.dataframe[0].value


def test_the_admin_sees_every_entry_newest_first_with_who_and_what(logged_actions, open_app):
    at = open_app("admin", page="audit_log")
    assert not at.exception
    table = _table(at)
    assert list(table.columns) == ["When", "Who", "Role", "What happened", "Details"]
    assert table["Details"].tolist() == ["Sent 93 outstanding-balance emails, skipped 7",
                                         "Exported 180 line items for 95 families", "Minted 212 payment links ($18,450.00)"]
    assert table.iloc[1].tolist() == [
        "2026-03-02 18:00 UTC", "tom@westside.example", "treasurer", "Exported 180 line items for 95 families",
        "Exported 180 line items for 95 families",
    ]
    assert [button.label for button in at.get("download_button")] == ["Download as CSV"]


def test_filters_narrow_the_list_by_action_person_and_days(logged_actions, open_app):
    at = open_app("admin", page="audit_log")
    at.selectbox(key="audit_action").set_value("export").run()
    assert not at.exception
    assert _table(at)["Who"].tolist() == ["tom@westside.example"]

    at.selectbox(key="audit_action").set_value(None)
    at.selectbox(key="audit_actor").set_value("ada@westside.example").run()
    assert _table(at)["Details"].tolist() == ["Sent 93 outstanding-balance emails, skipped 7",
                                              "Minted 212 payment links ($18,450.00)"]

    at.date_input(key="audit_from").set_value(date(2026, 3, 2))
    at.date_input(key="audit_to").set_value(date(2026, 3, 3)).run()
    assert not at.exception
    assert _table(at)["Details"].tolist() == ["Sent 93 outstanding-balance emails, skipped 7"]


def test_an_empty_result_says_so(logged_actions, open_app):
    at = open_app("admin", page="audit_log")
    at.date_input(key="audit_from").set_value(date(2026, 4, 1)).run()
    assert not at.exception
    assert not at.dataframe
    assert [info.value for info in at.info] == ["No audit entries match these filters."]


def test_a_league_with_no_recorded_action_says_what_will_appear(bare_demo_league, open_app):
    at = open_app("admin", page="audit_log")
    assert not at.exception
    assert at.info[0].value.startswith("Nothing has been recorded yet.")


def test_times_are_on_the_league_clock_and_actions_read_as_sentences(bare_demo_league, engine, open_app):
    with unit_of_work(engine) as session:
        tenant = find_tenant(session, "demo")
        tenant.time_zone = "America/Los_Angeles"
        ada = ActingUser("ada@westside.example", Role.ADMIN, tenant.id)
        for when, sent in ((datetime(2026, 3, 8, 9, 30, tzinfo=UTC), 23),   # 01:30 PST, before the clocks change
                           (datetime(2026, 3, 8, 10, 30, tzinfo=UTC), 1)):  # 03:30 PDT, an hour later
            entry = record_action(session, ada, "email.campaign_run", f"Campaign #7: {sent} sent",
                                  details={"campaign_id": 7, "sent": sent, "failed": 0})
            entry.created_at = when

    at = open_app("admin", page="audit_log")
    assert not at.exception
    table = _table(at)
    assert table["When"].tolist() == ["2026-03-08 03:30 PDT", "2026-03-08 01:30 PST"]
    assert table["What happened"].tolist() == ["Sent 1 reminder email (campaign #7)",
                                               "Sent 23 reminder emails (campaign #7)"]
    assert "times in America/Los_Angeles" in at.caption[0].value
    action_filter = at.selectbox(key="audit_action")
    assert action_filter.format_func("email.campaign_run") == "Reminder emails sent"

    # The days of the filter are the league's days: 7 March in Los Angeles ends at 08:00 UTC on the 8th.
    at.date_input(key="audit_to").set_value(date(2026, 3, 7)).run()
    assert [info.value for info in at.info] == ["No audit entries match these filters."]
    at.date_input(key="audit_from").set_value(date(2026, 3, 8))
    at.date_input(key="audit_to").set_value(date(2026, 3, 8)).run()
    assert len(_table(at)) == 2
