"""Times in the league's time zone: the same stored instant reads differently in Los Angeles and
in UTC, across a change of the clocks, on the audit CSV, the statement and in an email."""

from __future__ import annotations

import csv
import email
import email.policy
import io
from datetime import UTC, date, datetime

from sqlalchemy import select

from core.access.permissions import Role
from core.audit import audit_period, record_action
from core.email.brand import brand_for_tenant
from core.email.registry import OUTSTANDING_BALANCE
from core.email.rendering import compose_message, render_email
from core.reporting.audit_export import audit_log_csv
from core.reporting.balances import LineItem, OutstandingBalance
from core.timezones import format_local, league_zone, local_date
from tests.factories import acting, make_tenant

BEFORE_THE_CHANGE = datetime(2026, 3, 8, 9, 30, tzinfo=UTC)  # 01:30 in Los Angeles, standard time
AFTER_THE_CHANGE = datetime(2026, 3, 8, 10, 30, tzinfo=UTC)  # an hour later: 03:30, daylight time


def test_one_instant_reads_on_each_league_clock_with_its_zone():
    assert format_local(BEFORE_THE_CHANGE, "America/Los_Angeles") == "2026-03-08 01:30 PST"
    assert format_local(AFTER_THE_CHANGE, "America/Los_Angeles") == "2026-03-08 03:30 PDT"
    assert format_local(BEFORE_THE_CHANGE, "UTC") == "2026-03-08 09:30 UTC"
    assert format_local(AFTER_THE_CHANGE, "UTC", seconds=True) == "2026-03-08 10:30:00 UTC"
    # A zone without letters of its own is named, not shown as "+04".
    assert format_local(BEFORE_THE_CHANGE, "Asia/Dubai") == "2026-03-08 13:30 Asia/Dubai"
    assert format_local(None, "UTC", missing="never") == "never"


def test_a_late_evening_is_still_that_day_in_the_league():
    evening = datetime(2026, 11, 3, 4, 0, tzinfo=UTC)  # 8 pm on 2 November in Los Angeles
    assert local_date(evening, "America/Los_Angeles") == date(2026, 11, 2)
    assert local_date(evening, "UTC") == date(2026, 11, 3)


def test_a_league_without_a_valid_zone_reads_utc(session):
    assert league_zone(make_tenant(session)) == "UTC"
    assert league_zone(make_tenant(session, time_zone="Not/AZone")) == "UTC"
    assert league_zone(make_tenant(session, time_zone="America/Los_Angeles")) == "America/Los_Angeles"


def test_the_days_of_a_filter_are_the_league_days_including_the_short_one():
    since, until = audit_period(date(2026, 3, 8), date(2026, 3, 8), "America/Los_Angeles")
    assert (since, until) == (datetime(2026, 3, 8, 8, 0, tzinfo=UTC), datetime(2026, 3, 9, 7, 0, tzinfo=UTC))
    assert audit_period(date(2026, 3, 8), None, "UTC")[0] == datetime(2026, 3, 8, tzinfo=UTC)


def _audit_rows(session, zone: str | None) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    league = make_tenant(session, time_zone=zone)
    admin = acting(league, Role.ADMIN)
    for when in (BEFORE_THE_CHANGE, AFTER_THE_CHANGE):
        entry = record_action(session, admin, "email.campaign_run", "Campaign #3: 2 sent",
                              details={"campaign_id": 3, "sent": 2, "failed": 0})
        entry.created_at = when
    session.flush()
    return list(csv.DictReader(io.StringIO(audit_log_csv(session, admin).decode("utf-8-sig"))))


def test_the_audit_csv_shows_the_league_clock_and_keeps_the_utc_instant(session):
    los_angeles = _audit_rows(session, "America/Los_Angeles")
    utc = _audit_rows(session, None)
    assert [row["when"] for row in los_angeles] == ["2026-03-08 03:30:00 PDT", "2026-03-08 01:30:00 PST"]
    assert [row["when"] for row in utc] == ["2026-03-08 10:30:00 UTC", "2026-03-08 09:30:00 UTC"]
    assert [row["when_utc"] for row in los_angeles] == [row["when_utc"] for row in utc] == [
        "2026-03-08 10:30:00", "2026-03-08 09:30:00"]
    assert los_angeles[0]["what_happened"] == "Sent 2 reminder emails (campaign #3)"
    assert los_angeles[0]["action"] == "email.campaign_run"


def test_the_email_says_when_its_balance_was_taken_on_the_league_clock(session):
    los_angeles = brand_for_tenant(make_tenant(session, time_zone="America/Los_Angeles"),
                                   email_from="treasurer@league.example")
    utc = brand_for_tenant(make_tenant(session), email_from="treasurer@league.example")
    item = LineItem(link_id=1, player_id=1, player_name="Amy", team_name="Red", product_id=1,
                    product_name="Registration", amount_cents=15000, currency="usd", pay_url="https://pay.example/1")
    balance = OutstandingBalance(parent_id=1, parent_name="Ana", parent_email="ana@example.org",
                                 email_opt_out=False, items=(item,))

    there = render_email(OUTSTANDING_BALANCE, balance, los_angeles, as_of=AFTER_THE_CHANGE)
    here = render_email(OUTSTANDING_BALANCE, balance, utc, as_of=AFTER_THE_CHANGE)

    assert "Balance as of 2026-03-08 03:30 PDT." in there.text
    assert "Balance as of 2026-03-08 03:30 PDT." in there.html
    assert "Balance as of 2026-03-08 10:30 UTC." in here.text
    message = compose_message(there, brand=los_angeles, to_name="Ana", to_address="ana@example.org",
                              message_id="<m1@league.example>", date=BEFORE_THE_CHANGE)
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert parsed["Date"] == "Sun, 08 Mar 2026 01:30:00 -0800"
    assert parsed["Date"].datetime == BEFORE_THE_CHANGE  # the same instant, written on the league's clock


def _stripe_payment_day(session, zone: str | None) -> date:  # type: ignore[no-untyped-def]
    from core.ledger.stripe_payments import follow_stripe_link
    from core.models import LinkStatus, Payment
    from tests.factories import make_link, make_parent, make_player, make_product

    league = make_tenant(session, time_zone=zone)
    player = make_player(session, league, make_parent(session, league, "Okafor, Ngozi"))
    link = make_link(session, league, player, make_product(session, league, amount_cents=15000))
    link.status, link.checkout_session_id = LinkStatus.PAID, f"cs_test_evening_{league.id}"
    link.paid_at, link.paid_amount_cents = datetime(2026, 11, 3, 4, 0, tzinfo=UTC), 15000  # 8 pm on 2 Nov in LA
    session.flush()
    follow_stripe_link(session, acting(league, Role.TREASURER), link, [])
    return session.scalars(select(Payment.received_on).where(
        Payment.tenant_id == league.id, Payment.reference == link.checkout_session_id)).one()


def test_a_stripe_payment_is_received_on_the_league_day_it_was_paid(session):
    assert _stripe_payment_day(session, "America/Los_Angeles") == date(2026, 11, 2)
    assert _stripe_payment_day(session, None) == date(2026, 11, 3)
