"""``python -m core import``: exit codes, what it prints, and what it leaves in the database."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from cli.main import main
from core.models import AuditEntry, Player, PriceTier, Product, Tenant
from tests.factories import make_tenant

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def cli_database(database_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", database_url)
    return database_url


def table_row(out: str, entity: str) -> list[list[str]]:
    """The created / updated / unchanged figures printed for ``entity``."""
    return [line.split()[1:] for line in out.splitlines() if line.startswith(f"  {entity} ")]


def count(session, model) -> int:  # type: ignore[no-untyped-def]
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model))


def test_a_dry_run_prints_the_preview_and_creates_nothing_not_even_the_league(cli_database, session, capsys):
    assert main(["import", str(EXAMPLES / "players.csv")]) == 0
    out = capsys.readouterr().out
    assert "players file players.csv: 8 rows for new league 'default'" in out
    assert table_row(out, "players") == [["8", "0", "0"]]
    assert table_row(out, "parents") == [["7", "0", "0"]]
    assert out.rstrip().endswith("dry run: nothing changed; pass --commit to import.")
    assert count(session, Tenant) == count(session, Player) == 0


def test_the_example_files_import_into_a_new_default_league_and_reimport_unchanged(cli_database, session, capsys):
    for name in ("products", "players", "orders"):
        assert main(["import", str(EXAMPLES / f"{name}.csv"), "--commit"]) == 0, capsys.readouterr().err
    assert "Imported orders.csv." in capsys.readouterr().out
    assert session.scalars(select(Tenant.slug)).all() == ["default"]
    assert (count(session, Product), count(session, Player), count(session, AuditEntry)) == (4, 8, 3)
    assert main(["import", str(EXAMPLES / "players.csv"), "--commit"]) == 0
    out = capsys.readouterr().out
    assert "for league 'default'" in out
    assert table_row(out, "players") == [["0", "0", "8"]]
    assert count(session, Player) == 8


def test_errors_are_listed_with_line_and_column_and_the_exit_status_is_one(cli_database, session, tmp_path, capsys):
    path = tmp_path / "players.csv"
    path.write_text(
        "player_ref,first_name,last_name,status,team,parent_ref,parent_name,parent_email\n"
        "K1,Maya,Okafor,signed,Red,P1,Ngozi Okafor,ngozi@example\n"
        "K2,Dan,Okafor,retired,Red,P1,Ngozi Okafor,\n",
        encoding="utf-8",
    )
    assert main(["import", str(path), "--commit"]) == 1
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert lines[0].strip().startswith("line 2, column parent_email: 'ngozi@example' is not a valid email")
    assert lines[1].strip().startswith("line 3, column status: 'retired' is not a known status")
    assert lines[-1] == "error: 2 problems in players.csv; nothing was imported"
    assert "dry run" not in captured.out
    assert count(session, Tenant) == count(session, Player) == 0


def test_a_file_that_is_not_utf8_is_refused_clearly(cli_database, tmp_path, capsys):
    path = tmp_path / "products.csv"
    path.write_bytes("product,kind,required,amount\nMaillot d'équipe,one_time,no,45\n".encode("cp1252"))
    assert main(["import", str(path)]) == 1
    err = capsys.readouterr().err
    assert "line 2: the file is not UTF-8 text" in err
    assert "Traceback" not in err


def test_a_missing_file_is_one_line_on_stderr(cli_database, tmp_path, capsys):
    assert main(["import", str(tmp_path / "nope.csv")]) == 1
    assert capsys.readouterr().err.strip() == f"error: No such file: {tmp_path / 'nope.csv'}"


def test_tenant_chooses_the_league_and_is_needed_when_there_are_several(cli_database, session, capsys):
    make_tenant(session, "eastside")
    make_tenant(session, "westside")
    session.commit()
    assert main(["import", str(EXAMPLES / "products.csv"), "--commit"]) == 1
    assert "choose one with --tenant" in capsys.readouterr().err
    assert main(["import", str(EXAMPLES / "products.csv"), "--commit", "--tenant", "westside"]) == 0
    westside = session.scalars(select(Tenant).where(Tenant.slug == "westside")).one()
    assert {p.tenant_id for p in session.scalars(select(Product))} == {westside.id}
    assert main(["import", str(EXAMPLES / "products.csv"), "--commit", "--tenant", "north", "--new-league"]) == 0
    assert "new league 'north'" in capsys.readouterr().out
    assert count(session, Tenant) == 3


def test_a_mistyped_league_is_refused_naming_the_leagues_and_creates_nothing(cli_database, session, capsys):
    assert main(["import", str(EXAMPLES / "products.csv"), "--commit", "--tenant", "seccc"]) == 0
    capsys.readouterr()
    for commit in ([], ["--commit"]):
        assert main(["import", str(EXAMPLES / "players.csv"), "--tenant", "secc", *commit]) == 1
        captured = capsys.readouterr()
        assert captured.err.strip() == (
            "error: No league called 'secc' (leagues: seccc). Check --tenant, or pass --new-league "
            "to create a new league called 'secc'."
        )
        assert captured.out == ""
    assert session.scalars(select(Tenant.slug)).all() == ["seccc"]
    assert count(session, Player) == 0
    # Every command that leaves --tenant out still finds the one league.
    assert main(["import", str(EXAMPLES / "players.csv"), "--commit"]) == 0
    assert "for league 'seccc'" in capsys.readouterr().out
    assert main(["balances"]) == 0


def test_the_first_import_into_an_empty_database_creates_the_league_it_names(cli_database, session, capsys):
    assert main(["import", str(EXAMPLES / "products.csv"), "--commit", "--tenant", "westside"]) == 0
    assert "new league 'westside'" in capsys.readouterr().out
    assert session.scalars(select(Tenant.slug)).all() == ["westside"]


def test_new_league_creates_a_second_league_and_then_finds_it(cli_database, session, capsys):
    make_tenant(session, "eastside")
    session.commit()
    for expected in ("new league 'westside'", "league 'westside'"):
        argv = ["import", str(EXAMPLES / "products.csv"), "--commit", "--tenant", "westside", "--new-league"]
        assert main(argv) == 0
        assert f"rows for {expected}" in capsys.readouterr().out
    assert session.scalars(select(Tenant.slug).order_by(Tenant.slug)).all() == ["eastside", "westside"]


def test_new_league_needs_the_leagues_name(cli_database, session, capsys):
    make_tenant(session, "eastside")
    session.commit()
    assert main(["import", str(EXAMPLES / "products.csv"), "--new-league"]) == 1
    assert capsys.readouterr().err.strip() == "error: --new-league needs --tenant SLUG: the new league's name."
    assert count(session, Tenant) == 1


def test_the_audit_log_records_the_operator(cli_database, session, capsys):
    assert main(["import", str(EXAMPLES / "products.csv"), "--commit"]) == 0
    entry = session.scalars(select(AuditEntry)).one()
    assert entry.actor.startswith("cli:") and entry.role == "admin"
    assert entry.details["counts"]["products"]["created"] == 4


LARGE = 'product,kind,required,amount\nRegistration,one_time,yes,150\nSponsorship,one_time,no,"12,000.00"\nGala,one_time,no,10000.01\n'


def test_amounts_above_the_bound_are_listed_and_commit_needs_the_confirmation(cli_database, session, tmp_path, capsys):
    path = tmp_path / "products.csv"
    path.write_text(LARGE, encoding="utf-8")
    assert main(["import", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Amounts above $10,000.00 for one item (check each against the source):" in out
    assert "  line 3, column amount: $12,000.00 (written '12,000.00')" in out
    assert "  line 4, column amount: $10,000.01 (written '10000.01')" in out
    assert out.rstrip().endswith("dry run: nothing changed; pass --commit --confirm-large-amounts to import.")

    assert main(["import", str(path), "--commit"]) == 1
    captured = capsys.readouterr()
    assert "line 3, column amount: $12,000.00" in captured.out
    assert captured.err.strip() == (
        "error: 2 amounts above $10,000.00 in products.csv (line 3, 4); nothing was imported. "
        "Check them, then run again with --commit --confirm-large-amounts"
    )
    assert count(session, Product) == 0 and count(session, Tenant) == 0

    assert main(["import", str(path), "--commit", "--confirm-large-amounts"]) == 0
    assert "Imported products.csv." in capsys.readouterr().out
    assert count(session, Product) == 3


def test_a_semicolon_file_with_decimal_commas_imports_at_the_amounts_written(cli_database, session, tmp_path, capsys):
    path = tmp_path / "products.csv"
    path.write_text("product;kind;required;amount\nRegistration;one_time;yes;150,00\nUniform;one_time;no;12,50\n",
                    encoding="utf-8")
    assert main(["import", str(path), "--commit"]) == 0
    assert "Amounts above" not in capsys.readouterr().out
    tiers = session.scalars(select(PriceTier.amount_cents).order_by(PriceTier.amount_cents)).all()
    assert tiers == [1250, 15000]
