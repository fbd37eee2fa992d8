"""The command line for cron: it says when it runs on the demo league by default, and -v stays quiet
about Alembic's set-up; the demo has its own file, and start-league moves an old one out of the way."""

from __future__ import annotations

import sqlite3

import pytest

from cli.main import main
from core.db import unit_of_work, upgrade_database
from core.demo import build_demo_league
from core.settings import ConfigurationError
from core.setup.database_file import move_demo_out_of_the_league_file
from tests.factories import make_tenant


@pytest.fixture
def unconfigured(monkeypatch, tmp_path):  # type: ignore[no-untyped-def]
    """No DATABASE_URL anywhere; the default database (as if data/league.db) is a file in tmp_path."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setattr("core.settings.SECRETS_FILE", tmp_path / "no-secrets.toml")
    default = tmp_path / "league.db"
    monkeypatch.setattr("core.settings.DEFAULT_SQLITE_PATH", default)
    monkeypatch.setattr("core.setup.database_file.DEMO_DATABASE_URL", f"sqlite:///{tmp_path / 'demo.db'}")
    monkeypatch.setattr("cli.context.DEMO_DATABASE_URL", f"sqlite:///{tmp_path / 'demo.db'}")
    return default


def _league_file_with_demo(path, engine_factory=None):  # type: ignore[no-untyped-def]
    from core.db import make_engine

    url = f"sqlite:///{path}"
    upgrade_database(url)
    engine = make_engine(url)
    with unit_of_work(engine) as session:
        build_demo_league(session)
    engine.dispose()


def test_a_command_without_database_url_on_the_demo_league_says_so_on_stderr(unconfigured, capsys):
    _league_file_with_demo(unconfigured)
    assert main(["balances"]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("note: DATABASE_URL is not set, so this runs on sqlite:///")
    assert "which holds the demo league (made-up families)" in captured.err
    assert "note:" not in captured.out


def test_a_command_with_database_url_says_nothing_about_the_demo(database_url, monkeypatch, capsys, engine):
    monkeypatch.setenv("DATABASE_URL", database_url)
    with unit_of_work(engine) as session:
        build_demo_league(session)
    assert main(["balances"]) == 0
    assert capsys.readouterr().err == ""


def test_a_command_without_database_url_on_a_real_league_says_nothing(unconfigured, capsys, monkeypatch):
    from core.db import make_engine

    url = f"sqlite:///{unconfigured}"
    upgrade_database(url)
    engine = make_engine(url)
    with unit_of_work(engine) as session:
        make_tenant(session, "northside", name="Northside")
    engine.dispose()
    assert main(["balances"]) == 0
    assert capsys.readouterr().err == ""


def test_the_demo_command_fills_the_demos_own_file_not_the_leagues(unconfigured, tmp_path, capsys):
    assert main(["demo"]) == 0
    assert "demo.db" in capsys.readouterr().out
    assert (tmp_path / "demo.db").is_file() and not unconfigured.exists()


def test_verbose_does_not_print_alembics_set_up_lines(database_url, monkeypatch, capsys, engine):
    monkeypatch.setenv("DATABASE_URL", database_url)
    with unit_of_work(engine) as session:
        make_tenant(session, "northside", name="Northside")
    assert main(["-v", "balances"]) == 0
    err = capsys.readouterr().err
    assert "Context impl" not in err and "Will assume" not in err and "alembic" not in err


def test_start_league_moves_a_demo_left_in_the_league_file_to_the_demos_file(tmp_path):
    league, demo = tmp_path / "league.db", tmp_path / "demo.db"
    _league_file_with_demo(league)
    said = move_demo_out_of_the_league_file(league, demo)
    assert said is not None and "Moved the demo league" in said
    assert not league.exists() and demo.is_file()
    with sqlite3.connect(demo) as connection:
        assert connection.execute("SELECT slug FROM tenants").fetchall() == [("demo",)]
    assert move_demo_out_of_the_league_file(league, demo) is None  # nothing left to move


def test_start_league_leaves_a_league_file_of_ones_own_alone(tmp_path):
    from core.db import make_engine

    league = tmp_path / "league.db"
    upgrade_database(f"sqlite:///{league}")
    engine = make_engine(f"sqlite:///{league}")
    with unit_of_work(engine) as session:
        make_tenant(session, "northside", name="Northside")
    engine.dispose()
    assert move_demo_out_of_the_league_file(league, tmp_path / "demo.db") is None
    assert league.is_file()


def test_start_league_refuses_to_overwrite_the_demos_file(tmp_path):
    league, demo = tmp_path / "league.db", tmp_path / "demo.db"
    _league_file_with_demo(league)
    demo.write_bytes(b"")
    with pytest.raises(ConfigurationError, match="exists too"):
        move_demo_out_of_the_league_file(league, demo)
    assert league.is_file()
