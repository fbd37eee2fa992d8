"""Roster import: recognising files, validating rows, all-or-nothing, idempotent re-import."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.access.permissions import Role
from core.email.headers import normalise_recipient
from core.errors import InvalidInput, PermissionDenied
from core.models import (
    AuditEntry,
    LinkStatus,
    Order,
    OrderStatus,
    Parent,
    PaymentLink,
    Player,
    PlayerStatus,
    PriceTier,
    Product,
    ProductKind,
    Team,
)
from core.roster.importing import ImportResult, import_roster
from tests.factories import acting, make_link, make_parent, make_player, make_product, make_tenant

PLAYERS_HEADER = "player_ref,first_name,last_name,status,team,parent_ref,parent_name,parent_email"
PLAYERS = f"""{PLAYERS_HEADER}
K1,Maya,Okafor,signed,U10 Comets,P1,Ngozi Okafor,ngozi@example.org
K2,Daniel,Okafor,signed,U12 Rockets,P1,Ngozi Okafor,ngozi@example.org
K3,Zoë,O'Brien-Lefèvre,prospect,,P2,Amélie Lefèvre,
K4,Ava,Chen,withdrawn,U10 Comets,P3,Wei Chen,wei@example.org
"""
PRODUCTS = """product,kind,required,amount
Registration,one_time,yes,150.00
Monthly dues,monthly,yes,60
Uniform,one_time,no,45
"""


def csv_bytes(text: str) -> bytes:
    return text.encode("utf-8")


def run(session: Session, tenant, text: str | bytes, *, commit: bool = False, role: Role = Role.ADMIN) -> ImportResult:
    data = text if isinstance(text, bytes) else csv_bytes(text)
    result = import_roster(session, acting(tenant, role), data, commit=commit, file_name="roster.csv")
    session.commit()
    return result


def counts(result: ImportResult, entity: str) -> tuple[int, int, int]:
    c = result.counts[entity]
    return c.created, c.updated, c.unchanged


def messages(result: ImportResult) -> list[str]:
    return [str(error) for error in result.errors]


def count_rows(session: Session, model) -> int:  # type: ignore[no-untyped-def]
    return session.scalar(select(func.count()).select_from(model))


@pytest.fixture
def league(session):
    tenant = make_tenant(session, "westside", name="Westside Hoops")
    session.commit()
    return tenant


# Recognising the file


def test_a_players_file_previews_what_it_would_create_and_changes_nothing(session, league):
    result = run(session, league, PLAYERS)
    assert result.ok and not result.committed
    assert result.entities == ("teams", "parents", "players")
    assert counts(result, "players") == (4, 0, 0)
    assert counts(result, "parents") == (3, 0, 0)
    assert counts(result, "teams") == (2, 0, 0)
    assert count_rows(session, Player) == count_rows(session, Parent) == count_rows(session, Team) == 0
    assert count_rows(session, AuditEntry) == 0


def test_committing_creates_siblings_under_one_parent_and_keeps_names_as_written(session, league):
    result = run(session, league, PLAYERS, commit=True)
    assert result.committed
    players = {p.external_ref: p for p in session.scalars(select(Player))}
    assert players["K1"].parent_id == players["K2"].parent_id
    assert players["K1"].team.name == "U10 Comets" and players["K2"].team.name == "U12 Rockets"
    assert players["K3"].full_name == "Zoë O'Brien-Lefèvre"
    assert players["K3"].team_id is None
    assert players["K3"].parent.email is None and players["K3"].parent.name == "Amélie Lefèvre"
    assert players["K4"].status is PlayerStatus.WITHDRAWN
    assert {p.tenant_id for p in players.values()} == {league.id}


def test_columns_may_come_in_any_order_with_extra_columns_and_loose_header_names(session, league):
    text = (
        "Notes, Parent Email ,PARENT_NAME,parent-ref,Team,Status,Last Name,First Name,Player Ref\n"
        "likes defence,ana@example.org,Ana Ruiz,P9,Red,Signed,Ruiz,Leo,K9\n"
    )
    result = run(session, league, text, commit=True)
    assert result.ok, messages(result)
    player = session.scalars(select(Player)).one()
    assert (player.first_name, player.last_name, player.status) == ("Leo", "Ruiz", PlayerStatus.SIGNED)
    assert player.parent.email == "ana@example.org" and player.team.name == "Red"


def test_a_header_matching_no_kind_names_the_kinds_and_columns_expected(session, league):
    result = run(session, league, "name,email\nAna,ana@example.org\n")
    assert result.kind is None
    [error] = result.errors
    assert error.line == 1
    for expected in ("players: player_ref", "products: product, kind, required, amount", "orders: order_ref"):
        assert expected in error.message


def test_a_header_close_to_one_kind_says_which_columns_are_missing(session, league):
    result = run(session, league, "product,kind,amount\nUniform,one_time,45\n")
    assert "products file missing: required" in result.errors[0].message


def test_an_empty_file_is_refused(session, league):
    for text in ("", "\n\n  \n"):
        result = run(session, league, text)
        assert not result.ok
        assert "empty" in result.errors[0].message


def test_a_header_without_rows_is_refused(session, league):
    result = run(session, league, PLAYERS_HEADER + "\n")
    assert messages(result) == ["The file has a header but no rows to import."]


def test_a_byte_order_mark_and_windows_line_endings_are_accepted(session, league):
    data = b"\xef\xbb\xbf" + PLAYERS.replace("\n", "\r\n").encode("utf-8")
    result = run(session, league, data, commit=True)
    assert result.ok, messages(result)
    assert counts(result, "players") == (4, 0, 0)
    assert session.scalars(select(Player.external_ref).order_by(Player.external_ref)).all() == [
        "K1", "K2", "K3", "K4"
    ]
    assert session.scalars(select(Parent.email).where(Parent.external_ref == "P3")).one() == "wei@example.org"


def test_a_semicolon_separated_export_is_accepted(session, league):
    result = run(session, league, PRODUCTS.replace(",", ";"), commit=True)
    assert result.ok, messages(result)
    assert counts(result, "products") == (3, 0, 0)


def test_a_file_that_is_not_utf8_is_refused_with_its_line_and_changes_nothing(session, league):
    data = (PLAYERS_HEADER + "\nK1,Maya,Okafor,signed,Red,P1,Ngozi Okafor,\n").encode() + (
        "K2,Zoë,Lefèvre,signed,Red,P2,Amélie Lefèvre,\n".encode("latin-1")
    )
    result = run(session, league, data, commit=True)
    assert not result.committed
    [error] = result.errors
    assert error.line == 3
    assert "not UTF-8" in error.message and "CSV UTF-8" in error.message
    assert count_rows(session, Player) == 0


def test_line_numbers_count_blank_lines_and_quoted_line_breaks(session, league):
    text = (
        f"{PLAYERS_HEADER}\n"
        "\n"
        'K1,Maya,Okafor,signed,"U10\nComets",P1,Ngozi Okafor,\n'
        "K2,Dan,Okafor,signed,Red,P1,Ngozi Okafor,not-an-email\n"
    )
    result = run(session, league, text)
    assert [(e.line, e.column) for e in result.errors] == [(5, "parent_email")]


def test_broken_csv_quoting_is_reported_with_its_line(session, league):
    text = f'{PLAYERS_HEADER}\nK1,Maya,Okafor,signed,"Red"x,P1,Ngozi Okafor,\n'
    result = run(session, league, text)
    assert result.errors[0].line == 2 and "not valid CSV" in result.errors[0].message


def test_a_row_with_a_field_missing_is_refused_and_keeps_the_parents_email(session, league):
    run(session, league, (
        f"{PLAYERS_HEADER}\n"
        "PL-1003,Hugo,Lefèvre,signed,U10 Comets,PA-503,Amélie Lefèvre,amelie@example.org\n"
    ), commit=True)
    text = (
        f"{PLAYERS_HEADER}\n"
        "PL-1003,Hugo,Lefèvre,signed,U10 Comets,PA-503,Amélie Lefèvre,amelie@example.org\n"
        "\n"
        "PL-1004,Zoë,Lefèvre,signed,U10 Comets,PA-503,Amélie Lefèvre\n"
    )
    result = run(session, league, text, commit=True)
    assert not result.committed
    assert messages(result) == [
        "line 4: the row has 7 fields but the header has 8; check it for a missing or extra comma "
        "(a value that contains a comma needs quotes)"
    ]
    session.expire_all()
    assert session.scalars(select(Parent.email)).all() == ["amelie@example.org"]
    assert session.scalars(select(Player.external_ref)).all() == ["PL-1003"]


def test_a_row_with_an_extra_field_is_refused(session, league):
    # An unquoted comma in a name shifts every later value one column to the right.
    text = f"{PLAYERS_HEADER}\nK1,Maya,Okafor, Jr.,signed,,P1,Ngozi Okafor,ngozi@example.org\n"
    [error] = run(session, league, text, commit=True).errors
    assert (error.line, error.column) == (2, None)
    assert error.message.startswith("the row has 9 fields but the header has 8;")
    assert count_rows(session, Player) == 0


def test_a_semicolon_file_with_a_missing_field_names_the_semicolon(session, league):
    text = "product;kind;required;amount\nUniform;one_time;45\nCamp;one_time;no;80\n"
    result = run(session, league, text)
    assert messages(result) == [
        "line 2: the row has 3 fields but the header has 4; check it for a missing or extra semicolon "
        "(a value that contains a semicolon needs quotes)"
    ]


def test_blank_lines_and_lines_of_bare_separators_are_still_skipped(session, league):
    text = PRODUCTS + "\n,,,\n,,\n"
    result = run(session, league, text, commit=True)
    assert result.ok, messages(result)
    assert counts(result, "products") == (3, 0, 0)


# Row validation: every message names the line and the column


def test_missing_required_fields_are_named_by_line_and_column(session, league):
    text = f"{PLAYERS_HEADER}\nK1,,Okafor,signed,,P1,,\n"
    result = run(session, league, text)
    assert [(e.line, e.column) for e in result.errors] == [(2, "first_name"), (2, "parent_name")]
    assert "is empty" in result.errors[0].message


def test_a_bad_email_address_is_refused(session, league):
    text = f"{PLAYERS_HEADER}\nK1,Maya,Okafor,signed,,P1,Ngozi Okafor,ngozi.example.org\n"
    [error] = run(session, league, text).errors
    assert (error.line, error.column) == (2, "parent_email")
    assert "'ngozi.example.org' is not a valid email address" in error.message


def test_an_unknown_player_status_lists_the_known_ones(session, league):
    text = f"{PLAYERS_HEADER}\nK1,Maya,Okafor,active,,P1,Ngozi Okafor,\n"
    [error] = run(session, league, text).errors
    assert (error.line, error.column) == (2, "status")
    assert error.message == "'active' is not a known status; use prospect, signed or withdrawn"


def test_status_and_kind_ignore_case_and_spaces(session, league):
    result = run(session, league, "product,kind,required,amount\nUniform, One Time ,YES,45\n", commit=True)
    assert result.ok, messages(result)
    product = session.scalars(select(Product)).one()
    assert (product.kind, product.required) == (ProductKind.ONE_TIME, True)


def test_a_player_ref_repeated_in_one_file_names_the_first_line(session, league):
    text = (
        f"{PLAYERS_HEADER}\nK1,Maya,Okafor,signed,,P1,Ngozi Okafor,\n"
        "K2,Dan,Okafor,signed,,P1,Ngozi Okafor,\nK1,Maya,Okafor,signed,,P1,Ngozi Okafor,\n"
    )
    [error] = run(session, league, text).errors
    assert (error.line, error.column) == (4, "player_ref")
    assert "already used on line 2" in error.message


def test_siblings_whose_parent_details_disagree_are_refused(session, league):
    text = (
        f"{PLAYERS_HEADER}\nK1,Maya,Okafor,signed,,P1,Ngozi Okafor,ngozi@example.org\n"
        "K2,Dan,Okafor,signed,,P1,Ngozi Okafor-Bello,ngozi.bello@example.org\n"
    )
    result = run(session, league, text)
    assert [(e.line, e.column) for e in result.errors] == [(3, "parent_name"), (3, "parent_email")]
    assert "on line 2" in result.errors[0].message


def test_a_value_longer_than_the_database_holds_is_refused(session, league):
    text = f"{PLAYERS_HEADER}\nK1,{'M' * 101},Okafor,signed,,P1,Ngozi Okafor,\n"
    [error] = run(session, league, text).errors
    assert (error.column, error.message) == ("first_name", "is 101 characters long; the most is 100")


@pytest.mark.parametrize(
    "text, line, column",
    [
        (f"{PLAYERS_HEADER}\nK1,Maya,Okafor,signed,,P1,Ngozi Okafor,\nK2,Dan,Oka\x00for,signed,,P1,Ngozi Okafor,\n",
         3, "last_name"),
        (f"{PLAYERS_HEADER}\nK1,Maya,Okafor,signed,Red\x00,P1,Ngozi\x00 Okafor,\n", 2, "team"),
        ("product,kind,required,amount\nRegistration,one_time,yes,150\nDues\x00,monthly,yes,60\n", 3, "product"),
        ("order_ref,player_ref,product,amount,status\n\"O\x001\",K1,Uniform,45,pending\n", 2, "order_ref"),
    ],
)
def test_a_nul_character_is_refused_in_the_preview_naming_its_line_and_column(session, league, text, line, column):
    # PostgreSQL cannot store a NUL in text: the commit would fail with no line number.
    parent = make_parent(session, league)
    make_player(session, league, parent, external_ref="K1")
    make_product(session, league, "Uniform")
    session.commit()
    preview = run(session, league, text)
    assert (preview.errors[0].line, preview.errors[0].column) == (line, column)
    assert "NUL character" in preview.errors[0].message
    result = run(session, league, text, commit=True)
    assert not result.committed and not result.ok
    assert count_rows(session, Player) == 1 and count_rows(session, Product) == 1
    assert count_rows(session, Order) == 0 and count_rows(session, AuditEntry) == 0


def test_product_kind_required_and_amount_are_checked(session, league):
    text = (
        "product,kind,required,amount\n"
        "Registration,yearly,yes,150\n"
        "Uniform,one_time,maybe,45\n"
        "Dues,monthly,yes,sixty\n"
        "Camp,one_time,no,-5\n"
        "Uniform,one_time,no,45\n"
    )
    result = run(session, league, text)
    assert [(e.line, e.column) for e in result.errors] == [
        (2, "kind"), (3, "required"), (4, "amount"), (5, "amount"), (6, "product")
    ]
    assert "use one_time or monthly" in result.errors[0].message
    assert "use yes or no" in result.errors[1].message
    assert "not an amount of money" in result.errors[2].message


def test_an_order_for_an_unknown_player_or_product_is_refused(session, league):
    parent = make_parent(session, league)
    make_player(session, league, parent, external_ref="K1")
    make_product(session, league, "Uniform")
    other = make_tenant(session)
    make_player(session, other, make_parent(session, other), external_ref="K2")
    session.commit()
    text = (
        "order_ref,player_ref,product,amount,status\n"
        "O1,K1,Uniform,45,pending\n"
        "O2,K2,Uniform,45,pending\n"
        "O3,K1,Jersey,45,pending\n"
    )
    result = run(session, league, text, commit=True)
    assert [(e.line, e.column) for e in result.errors] == [(3, "player_ref"), (4, "product")]
    assert "no player 'K2' in this league" in result.errors[0].message
    assert count_rows(session, Order) == 0


def test_order_amount_status_and_repeated_refs_are_checked(session, league):
    text = (
        "order_ref,player_ref,product,amount,status\n"
        "O1,K1,Uniform,45.999,pending\n"
        "O2,K1,Uniform,45,refunded\n"
        "O1,K1,Uniform,45,paid\n"
    )
    result = run(session, league, text)
    by_line = {(e.line, e.column) for e in result.errors}
    assert {(2, "amount"), (3, "status"), (4, "order_ref")} <= by_line


def test_only_the_first_two_hundred_errors_are_listed_but_all_are_counted(session, league):
    rows = "".join(f"K{n},Kid,Okafor,bogus,,P{n},Parent {n},\n" for n in range(250))
    result = run(session, league, f"{PLAYERS_HEADER}\n{rows}")
    assert result.error_count == 250
    assert len(result.errors) == 200 and result.errors_not_shown == 50


# All or nothing


def test_a_bad_row_at_the_end_leaves_the_database_as_it_was(session, league):
    run(session, league, PLAYERS, commit=True)
    before = [(p.external_ref, p.team_id, p.status) for p in session.scalars(select(Player).order_by(Player.id))]
    changed = PLAYERS.replace("K1,Maya,Okafor,signed,U10 Comets", "K1,Maya,Okafor,signed,U14 Thunder")
    rows = "".join(f"K{n},Kid,New,signed,Red,P{n},Parent {n},\n" for n in range(10, 500))
    result = run(session, league, changed + rows + "K999,Last,Row,signed,Red,P999,Parent,broken@\n", commit=True)
    assert not result.committed and result.error_count == 1
    assert result.errors[0].line == 5 + 490 + 1
    session.expire_all()
    after = [(p.external_ref, p.team_id, p.status) for p in session.scalars(select(Player).order_by(Player.id))]
    assert after == before
    assert session.scalars(select(Team.name).order_by(Team.name)).all() == ["U10 Comets", "U12 Rockets"]
    assert count_rows(session, AuditEntry) == 1  # the first import only


# Re-import and updates


def test_importing_the_same_file_twice_changes_nothing_the_second_time(session, league):
    run(session, league, PLAYERS, commit=True)
    run(session, league, PRODUCTS, commit=True)
    again = run(session, league, PLAYERS, commit=True)
    assert counts(again, "players") == (0, 0, 4)
    assert counts(again, "parents") == (0, 0, 3)
    assert counts(again, "teams") == (0, 0, 2)
    assert counts(run(session, league, PRODUCTS, commit=True), "products") == (0, 0, 3)
    assert (count_rows(session, Player), count_rows(session, Parent), count_rows(session, Team)) == (4, 3, 2)
    assert (count_rows(session, Product), count_rows(session, PriceTier)) == (3, 3)


def test_a_player_who_changes_team_and_a_parent_who_changes_email_are_updated(session, league):
    run(session, league, PLAYERS, commit=True)
    updated = PLAYERS.replace("K1,Maya,Okafor,signed,U10 Comets", "K1,Maya,Okafor,signed,U14 Thunder").replace(
        "wei@example.org", "wei.chen@example.org"
    )
    result = run(session, league, updated, commit=True)
    assert counts(result, "players") == (0, 1, 3)
    assert counts(result, "parents") == (0, 1, 2)
    assert counts(result, "teams") == (1, 0, 2)
    maya = session.scalars(select(Player).where(Player.external_ref == "K1")).one()
    assert maya.team.name == "U14 Thunder"
    assert session.scalars(select(Parent.email).where(Parent.external_ref == "P3")).one() == "wei.chen@example.org"
    assert count_rows(session, Player) == 4


def test_a_player_can_move_to_another_parent_and_lose_their_team(session, league):
    run(session, league, PLAYERS, commit=True)
    moved = PLAYERS.replace(
        "K2,Daniel,Okafor,signed,U12 Rockets,P1,Ngozi Okafor,ngozi@example.org",
        "K2,Daniel,Okafor,signed,,P7,Emeka Okafor,emeka@example.org",
    )
    result = run(session, league, moved, commit=True)
    assert counts(result, "players") == (0, 1, 3)
    assert counts(result, "parents") == (1, 0, 3)
    daniel = session.scalars(select(Player).where(Player.external_ref == "K2")).one()
    assert (daniel.parent.external_ref, daniel.team_id) == ("P7", None)


def test_a_withdrawn_player_is_kept_and_their_links_are_left_for_the_payment_sync(session, league):
    parent = make_parent(session, league, "Ngozi Okafor", "ngozi@example.org", external_ref="P1")
    maya = make_player(session, league, parent, first_name="Maya", last_name="Okafor", external_ref="K1")
    link = make_link(session, league, maya, make_product(session, league, "Registration"))
    session.commit()
    text = f"{PLAYERS_HEADER}\nK1,Maya,Okafor,withdrawn,,P1,Ngozi Okafor,ngozi@example.org\n"
    result = run(session, league, text, commit=True)
    assert counts(result, "players") == (0, 1, 0)
    session.expire_all()
    assert session.get(Player, maya.id).status is PlayerStatus.WITHDRAWN
    assert session.get(PaymentLink, link.id).status is LinkStatus.ACTIVE


def test_refs_of_another_league_are_never_matched(session, league):
    other = make_tenant(session)
    theirs = make_player(session, other, make_parent(session, other, external_ref="P1"), external_ref="K1")
    session.commit()
    result = run(session, league, PLAYERS, commit=True)
    assert counts(result, "players") == (4, 0, 0)
    session.expire_all()
    assert session.get(Player, theirs.id).tenant_id == other.id
    assert session.get(Player, theirs.id).first_name != "Maya"


# Products and their default price


def test_a_product_gets_a_default_price_in_the_leagues_currency(session):
    tenant = make_tenant(session, currency="cad")
    session.commit()
    run(session, tenant, PRODUCTS, commit=True)
    dues = session.scalars(select(Product).where(Product.name == "Monthly dues")).one()
    [tier] = dues.price_tiers
    assert (dues.kind, dues.required) == (ProductKind.MONTHLY, True)
    assert (tier.amount_cents, tier.currency, tier.is_default) == (6000, "cad", True)


def test_a_new_amount_becomes_the_default_and_the_old_price_is_kept(session, league):
    run(session, league, PRODUCTS, commit=True)
    result = run(session, league, PRODUCTS.replace("150.00", "175.50"), commit=True)
    assert counts(result, "products") == (0, 1, 2)
    registration = session.scalars(select(Product).where(Product.name == "Registration")).one()
    tiers = {t.amount_cents: t.is_default for t in registration.price_tiers}
    assert tiers == {15000: False, 17550: True}
    # Going back to the old amount reuses its tier rather than adding a third.
    run(session, league, PRODUCTS, commit=True)
    session.expire_all()
    registration = session.get(Product, registration.id)
    assert {t.amount_cents: t.is_default for t in registration.price_tiers} == {15000: True, 17550: False}


def test_changing_only_whether_a_product_is_required_keeps_its_price(session, league):
    run(session, league, PRODUCTS, commit=True)
    result = run(session, league, PRODUCTS.replace("Uniform,one_time,no", "Uniform,one_time,yes"), commit=True)
    assert counts(result, "products") == (0, 1, 2)
    uniform = session.scalars(select(Product).where(Product.name == "Uniform")).one()
    assert uniform.required is True and [(t.amount_cents, t.is_default) for t in uniform.price_tiers] == [(4500, True)]


# Orders


def test_orders_are_created_and_then_updated_in_place(session, league):
    run(session, league, PRODUCTS, commit=True)
    run(session, league, PLAYERS, commit=True)
    text = "order_ref,player_ref,product,amount,status\nO1,K1,Uniform,45,pending\nO2,K2,Uniform,45.00,paid\n"
    assert counts(run(session, league, text, commit=True), "orders") == (2, 0, 0)
    again = run(session, league, text.replace("45,pending", "50,canceled"), commit=True)
    assert counts(again, "orders") == (0, 1, 1)
    order = session.scalars(select(Order).where(Order.external_ref == "O1")).one()
    assert (order.amount_cents, order.currency, order.status) == (5000, "usd", OrderStatus.CANCELED)
    assert count_rows(session, Order) == 2


# Who may import, and what is recorded


def test_only_an_admin_may_import(session, league):
    for role in (Role.TREASURER, Role.COACH):
        with pytest.raises(PermissionDenied):
            run(session, league, PLAYERS, role=role)


def test_a_committed_import_is_audited_with_its_counts(session, league):
    run(session, league, PLAYERS)  # a dry run leaves no trace
    assert count_rows(session, AuditEntry) == 0
    run(session, league, PLAYERS, commit=True)
    entry = session.scalars(select(AuditEntry)).one()
    assert (entry.action, entry.actor, entry.tenant_id) == ("roster_import", "admin@example.org", league.id)
    assert "roster.csv" in entry.summary and "players: 4 created" in entry.summary
    assert entry.details["counts"]["players"] == {"created": 4, "updated": 0, "unchanged": 0}


def test_an_upload_is_read_from_the_start(session, league, tmp_path):
    import io

    upload = io.BytesIO(PLAYERS.encode())
    upload.read()  # a page may have read it already
    result = import_roster(session, acting(league), upload)
    assert counts(result, "players") == (4, 0, 0)
    path = tmp_path / "players.csv"
    path.write_text(PLAYERS, encoding="utf-8")
    result = import_roster(session, acting(league), path)
    assert result.file_name == "players.csv" and counts(result, "players") == (4, 0, 0)


@pytest.mark.parametrize(
    "address",
    ["ana..lopez@example.org", ".ana@example.org", "ana@", "Ana <ana@example.org>",
     "ana lopez@example.org", "ana@exa_mple.org"],
)
def test_a_known_domain_does_not_let_a_bad_address_through(session, league, address):
    text = (
        f"{PLAYERS_HEADER}\nK1,Maya,Okafor,signed,,P1,Ngozi Okafor,ngozi@example.org\n"
        f'K2,Dan,Reyes,signed,,P2,Carlos Reyes,"{address}"\n'
    )
    result = run(session, league, text)
    assert [(e.line, e.column) for e in result.errors] == [(3, "parent_email")]


def test_addresses_are_stored_as_email_validator_normalises_them(session, league):
    text = (
        f"{PLAYERS_HEADER}\nK1,Maya,Okafor,signed,,P1,Ngozi Okafor,ngozi@Example.ORG\n"
        "K2,Dan,Reyes,signed,,P2,Carlos Reyes,Carlos.Reyes+club@Example.ORG\n"
    )
    run(session, league, text, commit=True)
    emails = session.scalars(select(Parent.email).order_by(Parent.external_ref)).all()
    assert emails == ["ngozi@example.org", "Carlos.Reyes+club@example.org"]


def test_an_address_the_sender_cannot_use_is_refused_naming_its_line_and_column(session, league):
    text = (
        f"{PLAYERS_HEADER}\nK1,Maya,Okafor,signed,,P1,Ngozi Okafor,ngozi@example.org\n"
        "K2,José,Reyes,signed,,P2,José Reyes,josé@example.com\n"
    )
    result = run(session, league, text, commit=True)
    assert not result.committed
    [error] = result.errors
    assert (error.line, error.column) == (3, "parent_email")
    assert error.message.startswith("'josé@example.com' is not a valid email address: ")
    assert "before the @-sign" in error.message
    assert count_rows(session, Parent) == 0


ADDRESSES = [
    "ana@example.org", "Ana.Lopez+club@Example.ORG", "josé@example.com", "ana@exämple.org", "ana@example",
    "ana..lopez@example.org", '"ana lopez"@example.org', "ana@[127.0.0.1]", "ana@localhost", "аня@пример.рф",
    "ana@xn--exmple-cua.org", "a" * 65 + "@example.org",
]


@pytest.mark.parametrize("address", ADDRESSES)
def test_the_import_accepts_exactly_the_addresses_the_sender_can_send_to(session, league, address):
    try:
        normalise_recipient(address)
        sendable = True
    except InvalidInput:
        sendable = False
    # Once after an address at the same domain has passed, once on its own.
    for first in ("K0,Kim,Lee,signed,,P0,Kim Lee,kim@" + address.rpartition("@")[2] + "\n", ""):
        text = f'{PLAYERS_HEADER}\n{first}K1,Maya,Okafor,signed,,P1,Ngozi Okafor,"{address.replace(chr(34), chr(34) * 2)}"\n'
        result = run(session, league, text)
        imported = not any(error.line == (3 if first else 2) for error in result.errors)
        assert imported == sendable, (address, messages(result))


@pytest.mark.postgres_only
def test_two_imports_of_one_file_at_once_create_everything_once(engine, session, league):
    """The second import waits for the first to commit, then finds everything unchanged."""
    import threading

    from core.db import session_factory

    first = session_factory(engine)()
    first_result = import_roster(first, acting(league), csv_bytes(PLAYERS), commit=True)
    second_result: list[ImportResult] = []

    def second_import() -> None:
        with session_factory(engine)() as second:
            second_result.append(import_roster(second, acting(league), csv_bytes(PLAYERS), commit=True))
            second.commit()

    thread = threading.Thread(target=second_import)
    thread.start()
    thread.join(timeout=1.0)
    assert thread.is_alive(), "the second import should wait for the first one's league lock"
    first.commit()
    first.close()
    thread.join(timeout=30)
    assert counts(first_result, "players") == (4, 0, 0)
    assert counts(second_result[0], "players") == (0, 0, 4)
    assert (count_rows(session, Player), count_rows(session, Parent), count_rows(session, Team)) == (4, 3, 2)


# --- the optional parent_first_name column --------------------------------------------------------

WITH_FIRST_NAMES = f"""{PLAYERS_HEADER},parent_first_name
K1,Maya,Okafor,signed,U10 Comets,P1,"Okafor, Ngozi",ngozi@example.org,Ngozi
K2,Daniel,Okafor,signed,U12 Rockets,P1,"Okafor, Ngozi",ngozi@example.org,Ngozi
K4,Ava,Chen,withdrawn,U10 Comets,P3,Wei Chen,wei@example.org,
"""


def _first_names(session: Session, tenant) -> dict[str, str | None]:
    rows = session.execute(select(Parent.external_ref, Parent.first_name).where(Parent.tenant_id == tenant.id))
    return dict(rows.all())  # type: ignore[arg-type]


def test_a_parent_first_name_column_is_imported_and_an_empty_cell_leaves_none(session):
    tenant = make_tenant(session)
    assert run(session, tenant, WITH_FIRST_NAMES, commit=True).committed
    assert _first_names(session, tenant) == {"P1": "Ngozi", "P3": None}


def test_a_file_without_the_column_keeps_the_first_names_and_an_empty_cell_clears_one(session):
    tenant = make_tenant(session)
    run(session, tenant, WITH_FIRST_NAMES, commit=True)
    without = PLAYERS.replace("Ngozi Okafor", '"Okafor, Ngozi"')
    result = run(session, tenant, without, commit=True)
    assert counts(result, "parents")[1] == 0  # nothing about the parents changed
    assert _first_names(session, tenant)["P1"] == "Ngozi"
    cleared = run(session, tenant, WITH_FIRST_NAMES.replace(",Ngozi\n", ",\n"), commit=True)
    assert counts(cleared, "parents") == (0, 1, 1) and _first_names(session, tenant)["P1"] is None


def test_siblings_must_agree_on_their_parents_first_name(session):
    tenant = make_tenant(session)
    result = run(session, tenant, WITH_FIRST_NAMES.replace("ngozi@example.org,Ngozi\nK4", "ngozi@example.org,Gozi\nK4"))
    assert not result.ok
    assert [(e.line, e.column) for e in result.errors] == [(3, "parent_first_name")]
    assert "'Ngozi' on line 2 but 'Gozi' here" in messages(result)[0]
