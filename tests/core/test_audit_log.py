"""The audit log: one row per consequential action with the acting user, filters, and its CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime

from sqlalchemy import func, select

from core.access.leagues import find_tenant
from core.access.permissions import ActingUser, Role
from core.audit import audit_filter_choices, audit_period, list_audit_entries, record_action
from core.models import AuditEntry
from core.reporting.audit_export import AUDIT_LOG_HEADER, audit_log_csv
from core.reporting.balances import BalanceFilter
from core.reporting.export import ExportKind, export_balances_csv
from tests.factories import acting, make_link, make_parent, make_player, make_product, make_tenant


def _rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


def _entry(session, user, action, summary, when):  # type: ignore[no-untyped-def]
    entry = record_action(session, user, action, summary)
    entry.created_at = when
    session.flush()
    return entry


def test_an_export_leaves_one_row_naming_who_exported_what(session):
    league = make_tenant(session)
    product = make_product(session, league, amount_cents=15050)
    for name in ("Ann", "Bob"):
        make_link(session, league, make_player(session, league, make_parent(session, league, name)), product)
    treasurer = ActingUser("tom@league.example", Role.TREASURER, league.id)

    export_balances_csv(session, treasurer, BalanceFilter(), kind=ExportKind.PARENTS)

    (entry,) = list_audit_entries(session, acting(league, Role.ADMIN))
    assert (entry.actor, entry.role, entry.action) == ("tom@league.example", "treasurer", "export")
    assert entry.summary == "Exported 2 line items for 2 families (301.00 USD) as parents"
    assert entry.details["total_cents"] == 30100


def test_filters_narrow_by_action_person_and_whole_days(session):
    league = make_tenant(session)
    ada, tom = ActingUser("ada@x.org", Role.ADMIN, league.id), ActingUser("tom@x.org", Role.TREASURER, league.id)
    _entry(session, ada, "backfill", "minted 3 links", datetime(2026, 3, 1, 9, 0, tzinfo=UTC))
    _entry(session, tom, "export", "first export", datetime(2026, 3, 2, 23, 59, tzinfo=UTC))
    _entry(session, tom, "export", "second export", datetime(2026, 3, 3, 0, 0, tzinfo=UTC))

    def summaries(**filters):  # type: ignore[no-untyped-def]
        return [entry.summary for entry in list_audit_entries(session, ada, **filters)]

    assert summaries() == ["second export", "first export", "minted 3 links"]  # newest first
    assert summaries(action="backfill") == ["minted 3 links"]
    assert summaries(actor="tom@x.org") == ["second export", "first export"]
    since, until = audit_period(date(2026, 3, 2), date(2026, 3, 2))
    assert summaries(since=since, until=until) == ["first export"]
    since, until = audit_period(date(2026, 3, 2), None)
    assert summaries(since=since, until=until) == ["second export", "first export"]
    assert audit_filter_choices(session, ada).actions == ["backfill", "export"]
    assert audit_filter_choices(session, ada).actors == ["ada@x.org", "tom@x.org"]


def test_the_audit_csv_has_every_matching_entry_with_formulas_neutralised(session):
    league = make_tenant(session)
    admin = ActingUser("ada@x.org", Role.ADMIN, league.id)
    _entry(session, admin, "import", "=HYPERLINK(\"http://evil\")", datetime(2026, 3, 1, 9, 0, tzinfo=UTC))
    _entry(session, admin, "export", "Exported 4 line items", datetime(2026, 3, 2, 10, 30, tzinfo=UTC))

    rows = _rows(audit_log_csv(session, admin, action="import"))

    assert rows == [list(AUDIT_LOG_HEADER), ["2026-03-01 09:00:00 UTC", "2026-03-01 09:00:00", "ada@x.org", "admin",
                                             "'=HYPERLINK(\"http://evil\")", "import",
                                             "'=HYPERLINK(\"http://evil\")"]]


def test_exporting_the_audit_log_is_itself_recorded(session):
    league = make_tenant(session)
    admin = ActingUser("ada@x.org", Role.ADMIN, league.id)
    record_action(session, admin, "import", "Imported 12 players")

    audit_log_csv(session, admin)

    newest = list_audit_entries(session, admin)[0]
    assert (newest.action, newest.actor, newest.summary) == ("export", "ada@x.org", "Exported 1 audit log entry as CSV")


def test_each_league_sees_only_its_own_audit_log(session):
    west, east = make_tenant(session), make_tenant(session)
    record_action(session, acting(west), "export", "west export")
    record_action(session, acting(east), "export", "east export")

    assert [e.summary for e in list_audit_entries(session, acting(west))] == ["west export"]
    assert _rows(audit_log_csv(session, acting(east)))[1][4] == "east export"
    assert session.scalar(select(func.count()).select_from(AuditEntry)) == 3  # and the east export itself


def test_a_command_line_export_is_recorded_as_the_operator(engine, database_url, monkeypatch, tmp_path):
    import getpass

    from cli.main import main
    from core.db import unit_of_work

    monkeypatch.setenv("DATABASE_URL", database_url)
    with unit_of_work(engine) as session:
        league = make_tenant(session, "westside")
        make_link(session, league, make_player(session, league, make_parent(session, league)), make_product(session, league))

    assert main(["balances", "--tenant", "westside", "--csv", str(tmp_path / "balances.csv")]) == 0

    with unit_of_work(engine) as session:
        (entry,) = list_audit_entries(session, acting(find_tenant(session, "westside")))
        assert (entry.actor, entry.role, entry.action) == (f"cli:{getpass.getuser()}", "admin", "export")


def test_a_payment_recorded_by_hand_reads_as_a_sentence_on_the_page_and_in_the_csv(session):
    from core.audit_sentences import describe_action
    from core.ledger.entries import record_payment
    from core.models import PaymentMethod
    from tests.factories import make_charge

    league = make_tenant(session)
    family = make_parent(session, league, "García, José")
    make_charge(session, league, family, amount_cents=15000)
    treasurer = ActingUser("tom@x.org", Role.TREASURER, league.id)
    record_payment(session, treasurer, parent_id=family.id, amount_cents=4000, method=PaymentMethod.CASH)

    (entry,) = [e for e in list_audit_entries(session, acting(league, Role.ADMIN)) if e.action == "ledger.payment"]
    sentence = "Recorded a $40.00 cash payment from the García family"
    assert describe_action(entry.action, entry.details, entry.summary) == sentence
    row = next(r for r in csv.DictReader(io.StringIO(audit_log_csv(session, acting(league, Role.ADMIN)).decode("utf-8-sig")))
               if r["action"] == "ledger.payment")
    assert (row["what_happened"], row["action"]) == (sentence, "ledger.payment")


def test_sentences_count_in_words_and_an_entry_without_details_shows_its_summary():
    from core.audit_sentences import describe_action

    assert describe_action("email.campaign_run", {"campaign_id": 4, "sent": 23, "failed": 1},
                           "Campaign #4: 23 sent") == "Sent 23 reminder emails, 1 could not be sent (campaign #4)"
    assert describe_action("email.campaign_run", {"campaign_id": 4, "sent": 1, "failed": 0},
                           "x") == "Sent 1 reminder email (campaign #4)"
    assert describe_action("backfill.commit", {"minted": 1, "replaced": 0, "failed": []}, "x") == (
        "Created 1 payment link")
    assert describe_action("sync", {"full": False, "paid": 2, "complete": True}, "x") == (
        "Checked Stripe for new payments since the last check: 2 payments found")
    # Entries written before their action had a sentence keep what they said.
    assert describe_action("email.campaign_run", {}, "Campaign #1: 3 sent") == "Campaign #1: 3 sent"
    assert describe_action("something.new", None, "Did a new thing") == "Did a new thing"
