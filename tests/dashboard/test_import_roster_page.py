"""The Import roster page: upload, preview, errors, import, audit entry."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from core.access.leagues import find_tenant
from core.access.permissions import Role
from core.models import AuditEntry, Player, Product, Team
from dashboard.navigation import pages_for
from dashboard.text import plain
from tests.factories import acting

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PLAYERS_CSV = (EXAMPLES / "players.csv").read_bytes()


def players_in(session, slug: str = "demo") -> int:  # type: ignore[no-untyped-def]
    session.expire_all()
    tenant = find_tenant(session, slug)
    return session.scalar(select(func.count()).select_from(Player).where(Player.tenant_id == tenant.id))


def upload(at, name: str, content: bytes):  # type: ignore[no-untyped-def]
    at.file_uploader(key="roster_file").set_value((name, content, "text/csv")).run()
    assert not at.exception
    return at


def table_with(at, column: str):  # type: ignore[no-untyped-def]
    [frame] = [d.value for d in at.dataframe if column in d.value.columns]
    return frame


def counts_table(at) -> dict[str, tuple[int, int, int]]:  # type: ignore[no-untyped-def]
    frame = table_with(at, "Created")
    return {row[""]: (row["Created"], row["Updated"], row["Left alone"]) for _, row in frame.iterrows()}


def test_an_upload_is_previewed_and_nothing_changes_until_import(demo_league, open_app, session):
    before = players_in(session)
    at = upload(open_app("admin", page="import_roster"), "players.csv", PLAYERS_CSV)
    assert at.subheader[0].value == "Preview: players file, 8 rows"
    assert counts_table(at) == {"Teams": (2, 0, 1), "Parents": (7, 0, 0), "Players": (8, 0, 0)}
    assert not at.button(key="roster_import_commit").disabled
    assert not at.error
    assert players_in(session) == before


def test_problems_are_listed_by_row_and_column_and_import_is_disabled(demo_league, open_app, session):
    broken = PLAYERS_CSV.replace(b"carlos.reyes@example.org", b"carlos.reyes@").replace(b",withdrawn,", b",gone,")
    at = upload(open_app("admin", page="import_roster"), "players.csv", broken)
    assert "2 problems in players.csv" in at.error[0].value
    errors = table_with(at, "Problem")
    assert list(errors.columns) == ["Row", "Column", "Problem"]
    assert [(row["Row"], row["Column"]) for _, row in errors.iterrows()] == [("6", "parent_email"), ("7", "status")]
    assert "not a known status" in errors.iloc[1]["Problem"]
    assert at.button(key="roster_import_commit").disabled


def test_a_row_missing_a_field_is_listed_and_import_is_disabled(demo_league, open_app):
    short = PLAYERS_CSV.replace(b",amelie.lefevre@example.org", b"")
    at = upload(open_app("admin", page="import_roster"), "players.csv", short)
    assert "1 problem in players.csv" in at.error[0].value
    [row] = [row for _, row in table_with(at, "Problem").iterrows()]
    assert (row["Row"], row["Column"]) == ("5", "—")
    assert row["Problem"].startswith("the row has 8 fields but the header has 9; check it for a missing or extra comma")
    assert at.button(key="roster_import_commit").disabled


def test_a_file_of_no_known_kind_says_what_is_expected(demo_league, open_app):
    at = upload(open_app("admin", page="import_roster"), "contacts.csv", b"name,email\nAna,ana@example.org\n")
    assert not at.subheader
    problem = table_with(at, "Problem").iloc[0]["Problem"]
    assert "matches no kind of roster file" in problem and "players: player_ref" in problem
    assert at.button(key="roster_import_commit").disabled


def test_import_applies_the_file_and_records_it_in_the_audit_log(demo_league, open_app, session):
    before = players_in(session)
    at = upload(open_app("admin", page="import_roster"), "players.csv", PLAYERS_CSV)
    at.button(key="roster_import_commit").click().run()
    assert not at.exception
    assert at.success[0].value.startswith("Imported players.csv (8 rows): teams: 2 created")
    assert players_in(session) == before + 8
    assert "U14 Thunder" in session.scalars(select(Team.name)).all()
    entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "roster_import")).one()
    assert entry.actor == "demo-admin" and entry.details["counts"]["players"]["created"] == 8
    # What was imported and what to do next; not the same file again with an armed button.
    assert counts_table(at)["Players"] == (8, 0, 0)
    assert [h.value for h in at.subheader] == ["Imported: players file", "Next steps"]
    assert not [b for b in at.button if b.key == "roster_import_commit"]
    assert at.file_uploader(key="roster_file_1").value is None


def test_after_the_first_players_file_the_next_steps_say_to_import_products(open_app, engine, session):
    from core.access.league_settings import LeagueSettings, create_first_league
    from core.db import unit_of_work

    with unit_of_work(engine) as setup:
        create_first_league(setup, LeagueSettings(name="Northside Nets"), created_by="demo-admin")
    at = upload(open_app("admin", page="import_roster"), "players.csv", PLAYERS_CSV)
    at.button(key="roster_import_commit").click().run()
    assert not at.exception
    steps = [link.proto.label for link in at.get("page_link")]
    assert steps[0] == "1. Import your products file: what families pay for, at what price."
    assert steps[-1].startswith("2. See what else the league needs")


def test_the_page_is_offered_to_admins_only(demo_league, open_app, session):
    tenant = find_tenant(session, "demo")
    offered = {role: [p.url_path for p in pages_for(acting(tenant, role))] for role in Role}
    assert "import" in offered[Role.ADMIN]
    assert "import" not in offered[Role.TREASURER] and "import" not in offered[Role.COACH]
    at = open_app("treasurer")
    assert not at.exception
    at.switch_page("views/import_roster.py").run()
    assert [error.value for error in at.error] == ["A treasurer may not import the roster."]
    assert not at.get("file_uploader")


HOSTILE_NAME = "**x**[y](http://e)<b>bold</b>_$x$_.csv"


def test_the_uploaded_files_name_is_shown_as_typed_in_every_message(demo_league, open_app):
    at = upload(open_app("admin", page="import_roster"), HOSTILE_NAME, PLAYERS_CSV.replace(b",signed,", b",gone,", 1))
    shown = [at.error[0].value, *(caption.value for caption in at.caption)]
    assert all(HOSTILE_NAME not in text for text in shown)
    assert plain(HOSTILE_NAME) in at.error[0].value
    assert any(plain(HOSTILE_NAME) in caption.value for caption in at.caption)
    at = upload(at, HOSTILE_NAME, PLAYERS_CSV)
    at.button(key="roster_import_commit").click().run()
    assert not at.exception
    assert at.success[0].value.startswith(f"Imported {plain(HOSTILE_NAME)} (8 rows)")


LARGE_PRODUCTS = b'product,kind,required,amount\nRegistration,one_time,yes,150\nSponsorship,one_time,no,"12,000"\n'


def test_large_amounts_are_shown_and_import_waits_for_the_tick(demo_league, open_app, session):
    at = upload(open_app("admin", page="import_roster"), "products.csv", LARGE_PRODUCTS)
    assert any("This amount is above \\$10,000.00 for one item" in warning.value for warning in at.warning)
    large = table_with(at, "As written")
    assert [(row["Row"], row["Column"], row["Amount"], row["As written"]) for _, row in large.iterrows()] == [
        ("3", "amount", "$12,000.00", "12,000")
    ]
    assert at.button(key="roster_import_commit").disabled
    [tick] = at.checkbox
    assert tick.label == "I checked this amount: it is right"
    tick.check().run()
    assert not at.exception
    assert not at.button(key="roster_import_commit").disabled
    at.button(key="roster_import_commit").click().run()
    assert not at.exception
    assert at.success[0].value.startswith("Imported products.csv (2 rows)")
    assert "You confirmed 1 above \\$10,000.00." in at.success[0].value
    session.expire_all()
    assert "Sponsorship" in session.scalars(select(Product.name)).all()


def test_a_decimal_comma_file_previews_the_amounts_as_written(demo_league, open_app):
    at = upload(open_app("admin", page="import_roster"), "products.csv",
                b"product;kind;required;amount\nCamp;one_time;no;150,00\n")
    assert not any("for one item" in warning.value for warning in at.warning)
    assert not at.checkbox and not at.error
    assert not at.button(key="roster_import_commit").disabled
