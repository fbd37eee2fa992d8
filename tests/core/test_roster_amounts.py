"""Amounts in a roster file are read one way only, never with a changed magnitude.

A decimal-comma file (``150,00``) used to import at a hundred times the amount, because every
comma was deleted. Now the file's decimal mark is decided once for the whole file, an amount
that does not fit it or could mean two things is refused with its line and the reason, and an
amount above the sanity bound is imported only once confirmed.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.errors import InvalidInput
from core.models import AuditEntry, Order, PriceTier, Product
from core.money import (
    DECIMAL_POINT,
    LARGE_AMOUNT_CENTS,
    DecimalMark,
    MoneyNotation,
    file_notation,
    parse_money,
)
from core.roster.importing import ImportResult, import_roster
from tests.factories import acting, make_parent, make_player, make_product, make_tenant

DECIMAL_COMMA = MoneyNotation(DecimalMark.COMMA, "line 2 writes '150,00', so this file's amounts have a decimal comma")
UNKNOWN = MoneyNotation(None, "no amount in this file shows whether it has a decimal point or a decimal comma")


# Reading one amount


@pytest.mark.parametrize(
    "text, cents",
    [("150", 15000), ("150.5", 15050), ("150.00", 15000), ("$150.00", 15000), ("$ 45", 4500),
     ("1,000.00", 100000), ("1,000", 100000), ("1,234,567.89", 123456789), (" 60 ", 6000)],
)
def test_a_decimal_point_amount_reads_as_it_always_did(text, cents):
    assert parse_money(text, DECIMAL_POINT) == cents


@pytest.mark.parametrize(
    "text, cents",
    [("150", 15000), ("150,00", 15000), ("12,5", 1250), ("12,50", 1250), ("1.500", 150000),
     ("1.500,00", 150000), ("1.234.567,89", 123456789)],
)
def test_a_decimal_comma_amount_reads_with_the_point_as_thousands_separator(text, cents):
    assert parse_money(text, DECIMAL_COMMA) == cents


@pytest.mark.parametrize(
    "text, notation, reason",
    [
        ("150,00", DECIMAL_POINT, "has a decimal comma, but amounts have a decimal point"),
        ("12,50", DECIMAL_POINT, "(here 12.50)"),
        ("1.500", DECIMAL_POINT, "has 3 digits after the decimal point, but an amount has at most two"),
        ("1.500", DECIMAL_POINT, "write it as 1500 or 1.50"),
        ("45.999", DECIMAL_POINT, "has 3 digits after the decimal point"),
        ("1,0,0", DECIMAL_POINT, "has a decimal comma"),
        ("10,00,000.00", DECIMAL_POINT, "between groups of three digits"),
        ("1.000.00", DECIMAL_POINT, "between groups of three digits"),
        ("150.00", DECIMAL_COMMA, "has a decimal point, but line 2 writes '150,00'"),
        ("1,500", DECIMAL_COMMA, "has 3 digits after the decimal comma"),
        ("1.50.000", DECIMAL_COMMA, "between groups of three digits"),
        ("1.500", UNKNOWN, "is ambiguous: its point may separate thousands or be a decimal mark"),
        ("1,500", UNKNOWN, "is ambiguous: its comma may separate thousands"),
        ("sixty", DECIMAL_POINT, "is not an amount of money"),
        ("-5", DECIMAL_POINT, "is not an amount of money"),
        ("0,00", DECIMAL_COMMA, "must be more than zero"),
        ("12345678", DECIMAL_POINT, "is not an amount of money"),
    ],
)
def test_an_amount_that_does_not_fit_or_could_mean_two_things_is_refused_with_the_reason(text, notation, reason):
    with pytest.raises(InvalidInput) as refusal:
        parse_money(text, notation)
    assert reason in str(refusal.value)


# Deciding a file's decimal mark


def test_a_comma_separated_file_has_a_decimal_point_whatever_its_amounts_say():
    notation = file_notation(comma_separated=True, amounts=[(2, "12,50")])
    assert notation.decimal_mark is DecimalMark.POINT


@pytest.mark.parametrize(
    "amounts, mark, line",
    [
        ([(2, "150"), (3, "1.500"), (4, "150,00"), (5, "60.00")], DecimalMark.COMMA, 4),
        ([(2, "150"), (3, "60.00"), (4, "150,00")], DecimalMark.POINT, 3),
        ([(2, "150"), (3, "1.500")], None, None),
    ],
)
def test_a_semicolon_file_takes_the_decimal_mark_of_its_first_amount_that_shows_one(amounts, mark, line):
    notation = file_notation(comma_separated=False, amounts=amounts)
    assert notation.decimal_mark is mark
    if line is not None:
        assert notation.reason.startswith(f"line {line} writes ")


# Importing


@pytest.fixture
def league(session):
    tenant = make_tenant(session, "westside", name="Westside Hoops")
    session.commit()
    return tenant


def run(session, tenant, text: str, **options) -> ImportResult:  # type: ignore[no-untyped-def]
    result = import_roster(session, acting(tenant), text.encode("utf-8"), file_name="roster.csv", **options)
    session.commit()
    return result


def amounts(session) -> dict[str, int]:  # type: ignore[no-untyped-def]
    session.expire_all()
    rows = session.execute(
        select(Product.name, PriceTier.amount_cents).join(PriceTier).where(PriceTier.is_default)
    ).all()
    return dict(rows)  # type: ignore[arg-type]


def test_a_semicolon_file_with_decimal_commas_imports_the_amounts_as_written(session, league):
    text = (
        "product;kind;required;amount\n"
        "Registration;one_time;yes;150,00\n"
        "Dues;monthly;yes;60\n"
        "Uniform;one_time;no;\"12,50\"\n"
        "Camp;one_time;no;1.250,00\n"
    )
    result = run(session, league, text, commit=True)
    assert result.committed, [str(e) for e in result.errors]
    assert amounts(session) == {"Registration": 15000, "Dues": 6000, "Uniform": 1250, "Camp": 125000}


def test_a_point_read_as_a_thousands_separator_needs_the_file_to_show_a_decimal_comma(session, league):
    # "1.500" means 1500,00 only where another amount shows the comma is the decimal mark.
    shown = run(session, league, "product;kind;required;amount\nCamp;one_time;no;1.500\nDues;monthly;yes;60,00\n",
                commit=True)
    assert shown.committed and amounts(session)["Camp"] == 150000
    alone = run(session, league, "product;kind;required;amount\nTrip;one_time;no;1.500\nDues;monthly;yes;60\n",
                commit=True)
    assert not alone.committed
    [error] = alone.errors
    assert (error.line, error.column) == (2, "amount")
    assert "'1.500' is ambiguous" in error.message
    assert "Trip" not in amounts(session)


def test_a_decimal_comma_in_a_comma_separated_file_is_refused_not_multiplied(session, league):
    text = 'product,kind,required,amount\nRegistration,one_time,yes,"150,00"\nUniform,one_time,no,"12,50"\n'
    result = run(session, league, text, commit=True)
    assert not result.committed
    assert [(e.line, e.column) for e in result.errors] == [(2, "amount"), (3, "amount")]
    assert "'150,00' has a decimal comma, but a comma-separated file has amounts with a decimal point" in (
        result.errors[0].message
    )
    assert amounts(session) == {}


def test_a_file_that_writes_amounts_both_ways_is_refused_naming_the_line_that_decided(session, league):
    text = (
        "order_ref;player_ref;product;amount;status\n"
        "O1;K1;Uniform;45,00;pending\n"
        "O2;K1;Uniform;45.00;pending\n"
        "O3;K1;Uniform;45;pending\n"
    )
    make_player(session, league, make_parent(session, league), external_ref="K1")
    make_product(session, league, "Uniform")
    session.commit()
    result = run(session, league, text, commit=True)
    assert not result.committed
    [error] = result.errors
    assert (error.line, error.column) == (3, "amount")
    assert "'45.00' has a decimal point, but line 2 writes '45,00'" in error.message
    assert session.scalars(select(Order)).all() == []


def test_an_amount_above_the_bound_is_listed_and_imported_only_once_confirmed(session, league):
    text = "product,kind,required,amount\nRegistration,one_time,yes,150\nSponsorship,one_time,no,\"12,000\"\n"
    preview = run(session, league, text)
    assert preview.ok
    assert [(large.line, large.column, large.amount_cents) for large in preview.large_amounts] == [
        (3, "amount", 1_200_000)
    ]
    assert preview.large_amounts[0].describe("usd") == "line 3, column amount: $12,000.00 (written '12,000')"
    refused = run(session, league, text, commit=True)
    assert refused.ok and refused.unconfirmed and not refused.committed
    assert amounts(session) == {} and session.scalars(select(AuditEntry)).all() == []
    confirmed = run(session, league, text, commit=True, confirm_large_amounts=True)
    assert confirmed.committed
    assert amounts(session) == {"Registration": 15000, "Sponsorship": 1_200_000}
    entry = session.scalars(select(AuditEntry)).one()
    assert entry.details["confirmed_large_amounts"] == [{"line": 3, "column": "amount", "amount_cents": 1_200_000}]


def test_the_bound_itself_needs_no_confirmation(session, league):
    exactly = f"{LARGE_AMOUNT_CENTS // 100}.00"
    result = run(session, league, f"product,kind,required,amount\nCamp,one_time,no,{exactly}\n", commit=True)
    assert result.committed and result.large_amounts == []
    above = run(session, league, f"order_ref,player_ref,product,amount,status\nO1,K1,Camp,{exactly[:-1]}1,pending\n")
    assert [large.line for large in above.large_amounts] == [2]


def test_a_decimal_comma_file_read_the_old_way_would_have_needed_confirmation(session, league):
    # What the trial saw: 150,00 became $15,000.00. Read as written it is $150.00, below the bound.
    result = run(session, league, "product;kind;required;amount\nRegistration;one_time;yes;150,00\n", commit=True)
    assert result.committed and result.large_amounts == []
    assert amounts(session) == {"Registration": 15000}
