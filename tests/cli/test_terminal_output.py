"""Names and other text from a roster reach the operator's terminal and cron logs defanged.

An escape sequence in a name must not colour, retitle or clear the terminal of whoever runs
a command, and a CR or LF in a name must not forge a line of its own in a log.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.main import main
from cli.output import shown
from tests.factories import make_link, make_parent, make_player, make_product, make_team, make_tenant

TITLE_ESCAPE = "\x1b]0;pwned\x07"
COLOUR = "\x1b[31m"
FORGED_LINE = "\r\nBcc: everyone@example.org"
RIGHT_TO_LEFT = "\u202e"
HOSTILE_NAME = f"Eve{TITLE_ESCAPE}{COLOUR} Evil{FORGED_LINE}{RIGHT_TO_LEFT}gpj.exe"
UNSAFE = ("\x1b", "\x07", "\r", "\u202e", "\x9b")


def assert_terminal_safe(text: str) -> None:
    assert not any(character in text for character in UNSAFE), repr(text)
    assert not any(line.startswith("Bcc:") for line in text.splitlines()), text


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Ana O'Neil", "Ana O'Neil"),
        ("José Müller-Ångström 🏀", "José Müller-Ångström 🏀"),
        ("a\x1b[31mb", "a\\x1b[31mb"),
        ("a\r\nBcc: x", "a\\r\\nBcc: x"),
        ("tab\there", "tab\\there"),
        ("csi\x9b2J", "csi\\x9b2J"),
        ("bell\x07 nul\x00 del\x7f", "bell\\x07 nul\\x00 del\\x7f"),
        ("rtl\u202eexe \u2066iso\u2069", "rtl\\u202eexe \\u2066iso\\u2069"),
        ("line\u2028sep\u0085", "line\\u2028sep\\x85"),
        (None, ""),
        (42, "42"),
    ],
)
def test_control_characters_are_made_visible_and_the_rest_is_left_alone(text, expected):
    assert shown(text) == expected


@pytest.fixture
def hostile_league(session, database_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", database_url)
    for name in ("STRIPE_API_KEY", "STRIPE_API_BASE"):
        monkeypatch.delenv(name, raising=False)
    tenant = make_tenant(session, "westside", name=f"Westside{COLOUR}")
    parent = make_parent(session, tenant, HOSTILE_NAME, email="eve@example.org")
    player = make_player(session, tenant, parent, make_team(session, tenant), first_name=f"Kid{TITLE_ESCAPE}")
    product = make_product(session, tenant, f"Dues{FORGED_LINE}", amount_cents=5000)
    make_link(session, tenant, player, product)
    make_product(session, tenant, f"Uniform{COLOUR}", amount_cents=3000)
    session.commit()
    return tenant


def test_balances_prints_names_with_their_control_characters_visible(hostile_league, capsys):
    assert main(["balances"]) == 0
    out = capsys.readouterr().out
    assert_terminal_safe(out)
    assert "Eve\\x1b]0;pwned\\x07\\x1b[31m Evil\\r\\nBcc: everyone@example.org\\u202egpj.exe <eve@example.org>" in out
    assert "Kid\\x1b]0;pwned\\x07 Player" in out and "Dues\\r\\nBcc: everyone@example.org" in out


def test_the_backfill_plan_prints_names_with_their_control_characters_visible(hostile_league, capsys):
    assert main(["backfill"]) == 0
    captured = capsys.readouterr()
    assert_terminal_safe(captured.out + captured.err)
    assert "Westside\\x1b[31m" in captured.out and "Uniform\\x1b[31m" in captured.out


def test_league_prints_its_settings_with_control_characters_visible(hostile_league, capsys):
    assert main(["league", "--footer", f"See you\nBcc: everyone@example.org{COLOUR}"]) == 0
    out = capsys.readouterr().out
    assert_terminal_safe(out)
    assert "Westside\\x1b[31m" in out and "See you\\nBcc: everyone@example.org\\x1b[31m" in out


def test_import_prints_file_names_and_problems_with_control_characters_visible(
    database_url, monkeypatch, tmp_path, capsys
):
    monkeypatch.setenv("DATABASE_URL", database_url)
    path = tmp_path / f"roster{COLOUR}.csv"
    path.write_text(
        f"product,kind,required,amount,amount{COLOUR}\n"
        f"Dues{TITLE_ESCAPE},monthly,yes,50,1\n"
        f"Camp,weekly{RIGHT_TO_LEFT},no,90,1\n",
        encoding="utf-8",
    )
    assert main(["import", str(path)]) == 1
    captured = capsys.readouterr()
    assert_terminal_safe(captured.out + captured.err)
    assert "roster\\x1b[31m.csv" in captured.err


def test_an_error_line_shows_control_characters_visibly(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/typo{FORGED_LINE}{COLOUR}/league.db")
    assert main(["balances"]) == 1
    err = capsys.readouterr().err
    assert_terminal_safe(err)
    # A message of several problems is printed on one line, its lines joined by "; ".
    assert err.count("\n") == 1 and "typo; Bcc: everyone@example.org\\x1b[31m/league.db" in err


def test_the_database_url_is_shown_with_control_characters_visible(tmp_path, monkeypatch, capsys):
    folder = tmp_path / f"db{COLOUR}"
    folder.mkdir()
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{Path(folder) / 'league.db'}")
    assert main(["db", "upgrade"]) == 0
    out = capsys.readouterr().out
    assert_terminal_safe(out)
    assert "db\\x1b[31m" in out
