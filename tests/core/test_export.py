"""The treasurer's CSV: totals equal the page's, formulas are neutralised, names survive."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from core.access.permissions import Role
from core.errors import PermissionDenied
from core.models import AuditEntry
from core.reporting.balances import outstanding_balances, summarise
from core.reporting.export import ExportKind, export_balances_csv, export_file_name, neutralise_formula, render_csv
from tests.factories import (
    acting,
    make_link,
    make_parent,
    make_player,
    make_product,
    make_team,
    make_tenant,
    mark_processing,
)


def _rows(data: bytes) -> list[dict[str, str]]:
    assert data.startswith(b"\xef\xbb\xbf"), "UTF-8 byte-order mark for spreadsheets"
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))


@pytest.fixture
def league(session):
    tenant = make_tenant(session)
    team = make_team(session, tenant, "U12 Hawks")
    registration = make_product(session, tenant, "Registration", amount_cents=15050)
    uniform = make_product(session, tenant, "=HYPERLINK(\"http://evil\")", amount_cents=4599)
    sneaky = make_parent(session, tenant, "@SUM(A1:A9)", "sneaky@example.org")
    accented = make_parent(session, tenant, "Zoë Núñez-O'Brien", "zoe@example.org")
    for parent, first in ((sneaky, "+cmd"), (accented, "Léa")):
        kid = make_player(session, tenant, parent, team, first_name=first)
        make_link(session, tenant, kid, registration)
        make_link(session, tenant, kid, uniform)
    session.commit()
    return tenant


def test_line_item_totals_equal_the_balances_to_the_cent(session, league):
    user = acting(league, Role.TREASURER)
    rows = _rows(export_balances_csv(session, user, kind=ExportKind.LINE_ITEMS))
    expected = summarise(outstanding_balances(session, user)).total_cents
    assert sum(int(r["amount"].replace(".", "")) for r in rows) == expected == 2 * (15050 + 4599)
    per_parent = _rows(export_balances_csv(session, user, kind=ExportKind.PARENTS))
    assert sum(int(r["total"].replace(".", "")) for r in per_parent) == expected
    assert {r["players"] for r in per_parent} == {"'+cmd Player", "Léa Player"}


def test_cells_that_look_like_formulas_are_neutralised(session, league):
    rows = _rows(export_balances_csv(session, acting(league)))
    cells = [value for row in rows for value in row.values()]
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in cells)
    assert "'@SUM(A1:A9)" in cells and "'+cmd Player" in cells
    assert neutralise_formula("-5") == "'-5" and neutralise_formula("\tx") == "'\tx"
    assert neutralise_formula("Ana") == "Ana"


def test_accented_names_survive_the_round_trip(session, league):
    rows = _rows(export_balances_csv(session, acting(league)))
    assert "Zoë Núñez-O'Brien" in {r["parent"] for r in rows}


def test_export_is_recorded_in_the_audit_log(session, league):
    export_balances_csv(session, acting(league, Role.TREASURER))
    session.commit()
    entry = session.scalars(select(AuditEntry)).one()
    assert entry.action == "export" and entry.actor == "treasurer@example.org"
    assert "2 families" in entry.summary


def test_a_coach_cannot_export(session, league):
    with pytest.raises(PermissionDenied):
        export_balances_csv(session, acting(league, Role.COACH))


def test_processing_payments_are_marked_and_left_out_of_the_owed_total(session, league):
    from core.models import PaymentLink

    link = session.scalars(select(PaymentLink).order_by(PaymentLink.id)).first()
    mark_processing(session, link)
    session.commit()
    user = acting(league, Role.TREASURER)
    rows = _rows(export_balances_csv(session, user))
    # The whole amount column adds up to the page's total: a treasurer sums it without filtering.
    owed = sum(int(r["amount"].replace(".", "")) for r in rows)
    assert [r["status"] for r in rows].count("processing") == 1
    assert owed == summarise(outstanding_balances(session, user)).total_cents
    assert sum(int(r["processing"].replace(".", "")) for r in rows) == link.amount_cents
    per_parent = _rows(export_balances_csv(session, user, kind=ExportKind.PARENTS))
    assert sum(int(r["total"].replace(".", "")) for r in per_parent) == owed
    assert sum(int(r["processing"].replace(".", "")) for r in per_parent) == link.amount_cents


def test_the_files_are_named_by_the_leagues_date_not_the_servers():
    evening_in_los_angeles = datetime(2026, 12, 1, 3, 30, tzinfo=UTC)  # Nov 30, 7:30 pm there
    assert export_file_name(ExportKind.PARENTS, "America/Los_Angeles", evening_in_los_angeles) == \
        "balances-per-family-2026-11-30.csv"
    assert export_file_name(ExportKind.LINE_ITEMS, "Europe/Berlin", evening_in_los_angeles) == \
        "balances-line-items-2026-12-01.csv"


def test_the_line_items_the_database_writes_are_the_bytes_python_writes(session):
    """The line-item file is written by the database; every cell a spreadsheet or the CSV format
    treats specially (a formula's first character, commas, quotes, line breaks, tabs) comes out
    as Python's ``csv`` writes it (``render_csv``), with payments processing among the items."""
    tenant = make_tenant(session)
    team = make_team(session, tenant, 'U12 "Hawks", East')
    awkward = ["=1+2", "-minus", "+plus", "@at", "\ttab", "\rreturn", 'say "hi"', "a,b", "two\nlines",
               "cr\rin", "Zoë Núñez-O'Brien", " spaced ", "é", "'quoted", "plain"]
    products = [make_product(session, tenant, name, amount_cents=100 * (index + 1) + index)
                for index, name in enumerate(["Reg, fall", '"Uniform"', "=SUM(A1)", "line\nbreak"])]
    for index, name in enumerate(awkward):
        parent = make_parent(session, tenant, name, f"{index},x@example.org" if index % 2 else f"p{index}@example.org")
        kid = make_player(session, tenant, parent, team, first_name=awkward[-1 - index], last_name=name)
        for product in products[: 1 + index % len(products)]:
            link = make_link(session, tenant, kid, product)
            if index % 5 == 0:
                mark_processing(session, link)
    session.commit()
    treasurer = acting(tenant, Role.TREASURER)
    balances = outstanding_balances(session, treasurer)
    assert len(balances) == len(awkward)
    written = export_balances_csv(session, treasurer)
    assert written == render_csv(balances, ExportKind.LINE_ITEMS)
    assert len(_rows(written)) == sum(len(balance.items) for balance in balances)
    assert {row["parent"] for row in _rows(written)} >= {"'=1+2", "'\ttab", "two\nlines", 'say "hi"', "a,b"}
