"""A mistyped command line: one line on stderr naming what is wrong, exit status 2."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.main import COMMANDS, build_parser, main

REPO = Path(__file__).resolve().parents[2]


def test_an_unknown_argument_is_named_before_a_missing_required_one():
    result = subprocess.run(
        [sys.executable, "-m", "core", "send-outstanding", "--bogus"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "error: unrecognized arguments: --bogus (see python -m core send-outstanding --help)\n"


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "the following arguments are required: COMMAND (see python -m core --help)"),
        (["--bogus", "balances"], "unrecognized arguments: --bogus (see python -m core --help)"),
        (["balance"], "argument COMMAND: invalid choice: 'balance' (choose from"),
        (["send-outstanding"], "one of the arguments --test-email --all --resume is required "
                               "(see python -m core send-outstanding --help)"),
        (["send-outstanding", "--parent", "PA-501", "--bogus"], "unrecognized arguments: --bogus (see"),
        (["balances", "--csv"], "argument --csv: expected one argument (see python -m core balances --help)"),
        (["import", "players.csv", "--comit"], "unrecognized arguments: --comit (see python -m core import --help)"),
        (["db", "upgrade", "now"], "unrecognized arguments: now (see python -m core db upgrade --help)"),
    ],
)
def test_each_argument_error_is_one_line_with_exit_status_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"error: {message}") and captured.err.count("\n") == 1


def test_help_still_shows_the_whole_usage(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["send-outstanding", "--help"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m core send-outstanding") and "--parent PARENT" in out


@pytest.mark.parametrize(
    "argv, unrecognized",
    [
        (["send-outstanding", "--al", "--y", "--cooldown", "99999"], "--al --y --cooldown 99999"),
        (["import", "players.csv", "--com"], "--com"),
        (["balances", "--per"], "--per"),
        (["--verb", "balances"], "--verb"),
    ],
)
def test_an_abbreviated_option_is_refused_not_guessed(argv, unrecognized, capsys):
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 2
    assert capsys.readouterr().err.startswith(f"error: unrecognized arguments: {unrecognized} (see")


def test_no_parser_or_subcommand_parser_accepts_abbreviations():
    def parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    yield from parsers(child)

    found = list(parsers(build_parser()))
    assert len(found) > len(COMMANDS)  # the top level, each command, and db's own actions
    assert [parser.prog for parser in found if parser.allow_abbrev] == []
