"""``python -m core`` as an operator uses it: db upgrade, demo, balances and the CSV."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import main
from core.access.leagues import find_tenant
from core.reporting.balances import outstanding_balances, summarise
from tests.factories import acting

REPO = Path(__file__).resolve().parents[2]


def test_demo_then_balances_prints_the_league_total(database_url, monkeypatch, capsys, session):
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert main(["db", "upgrade"]) == 0
    assert main(["demo"]) == 0
    assert "Created demo league 'demo'" in capsys.readouterr().out
    assert main(["demo"]) == 0
    assert "Already there" in capsys.readouterr().out
    assert main(["balances"]) == 0
    out = capsys.readouterr().out
    total = summarise(outstanding_balances(session, acting(find_tenant(session, "demo")))).total_cents
    assert f"Total outstanding: ${total // 100:,}.{total % 100:02d}" in out


def test_balances_csv_writes_a_file_whose_total_matches(database_url, monkeypatch, tmp_path, session):
    monkeypatch.setenv("DATABASE_URL", database_url)
    main(["demo"])
    target = tmp_path / "balances.csv"
    assert main(["balances", "--csv", str(target)]) == 0
    rows = list(csv.DictReader(io.StringIO(target.read_text("utf-8-sig"))))
    total = summarise(outstanding_balances(session, acting(find_tenant(session, None)))).total_cents
    assert sum(int(r["amount"].replace(".", "")) for r in rows) == total


def test_an_unknown_league_is_one_clear_line_and_exit_1(database_url, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", database_url)
    main(["demo"])
    capsys.readouterr()
    assert main(["balances", "--tenant", "nope"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "error: No league called 'nope' (leagues: demo)."


def test_no_league_yet_says_what_to_do(database_url, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert main(["balances"]) == 1
    assert "python -m core demo" in capsys.readouterr().err


def test_the_module_runs_from_the_repository_root_with_help(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "core", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    for command in ("db", "demo", "balances"):
        assert command in result.stdout


def test_a_bad_database_url_is_one_line_without_a_traceback(tmp_path):
    env = {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "core", "balances"], cwd=REPO, capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: database:")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "url, expected",
    [
        ("postgresql://postgres:DBSEC@RETPW@127.0.0.1/league", "the password must be URL-encoded"),
        ("postgresql://postgres:DBSEC@127.0.0.1:5x32/league", "the port '5x32' is not a number"),
    ],
)
def test_a_database_url_that_cannot_be_read_is_one_line_without_the_password(url, expected):
    env = {"DATABASE_URL": url, "PATH": "/usr/bin:/bin"}
    for command in (["balances"], ["db", "upgrade"], ["import", "examples/products.csv"]):
        result = subprocess.run(
            [sys.executable, "-m", "core", *command], cwd=REPO, capture_output=True, text=True, env=env, timeout=60
        )
        assert result.returncode == 1
        assert result.stderr.startswith("error: DATABASE_URL") and result.stderr.count("\n") == 1
        assert expected in result.stderr
        assert "DBSEC" not in result.stderr + result.stdout and "RETPW" not in result.stderr + result.stdout


def test_the_drivers_own_message_never_carries_the_password(monkeypatch, capsys):
    from sqlalchemy.exc import OperationalError

    def driver_fails(args):  # type: ignore[no-untyped-def]
        raise OperationalError("connect", {}, Exception('FATAL: role "billing" with password "s3cret-pw" refused'))

    monkeypatch.setenv("DATABASE_URL", "postgresql://billing:s3cret-pw@db.internal/league")
    monkeypatch.setattr("cli.commands.balances.run", driver_fails)
    assert main(["balances"]) == 1
    err = capsys.readouterr().err
    assert err == 'error: database: FATAL: role "billing" with password "***" refused\n'


def test_an_unsupported_database_is_named_in_one_line():
    env = {"DATABASE_URL": "mysql://u@h/db", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "core", "balances"], cwd=REPO, capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: DATABASE_URL names a mysql database; use sqlite:///path.db or postgresql://user@host/database"
    )


def test_a_sqlite_file_in_a_missing_folder_is_one_line_and_creates_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/typo/league.db")
    for command in (["balances"], ["db", "upgrade"], ["demo"]):
        assert main(command) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"error: DATABASE_URL names the SQLite file {tmp_path}/typo/league.db, but ")
        assert f"{tmp_path}/typo does not exist" in err and err.count("\n") == 1
    assert not (tmp_path / "typo").exists()


def test_a_league_slug_that_is_not_a_slug_is_refused(database_url, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("DATABASE_URL", database_url)
    products = REPO / "examples" / "products.csv"
    assert main(["import", str(products), "--tenant", "Bad Slug!", "--commit"]) == 1
    assert "cannot name a league" in capsys.readouterr().err
    assert main(["balances"]) == 1  # still no league at all
