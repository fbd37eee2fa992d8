"""``python -m core`` starts fast: it imports only the command it runs, and a database at the
current schema is not taken through Alembic."""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import COMMANDS, CommandParser, main

REPO = Path(__file__).resolve().parents[2]


# ``python -m core ARGS``, then the names of the modules it imported, on the last line of stderr.
# (``-X importtime`` does not see a module imported through ``importlib``.)
RUN_AND_LIST_MODULES = """
import sys
from cli.main import main
try:
    status = main(sys.argv[1:])
except SystemExit as exit:
    status = exit.code
print(" ".join(sorted(sys.modules)), file=sys.stderr)
sys.exit(status)
"""


def _imported(argv: list[str], database_url: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run the command line with ``argv``; its result and the modules it imported."""
    result = subprocess.run(
        [sys.executable, "-c", RUN_AND_LIST_MODULES, *argv], cwd=REPO, capture_output=True, text=True,
        timeout=120, env={**os.environ, "DATABASE_URL": database_url},
    )
    return result, set(result.stderr.splitlines()[-1].split())


def test_balances_loads_neither_the_other_commands_nor_alembic(tmp_path):
    url = f"sqlite:///{tmp_path / 'league.db'}"
    created, on_a_new_file = _imported(["demo"], url)
    assert created.returncode == 0, created.stderr
    assert "alembic" in on_a_new_file  # a new database is migrated

    shown, modules = _imported(["balances"], url)
    assert shown.returncode == 0, shown.stderr
    assert "Total outstanding:" in shown.stdout
    assert "cli.commands.balances" in modules
    assert {name for name in modules if name.startswith("cli.commands")} == {"cli.commands", "cli.commands.balances"}
    # Nor what only other work needs: checking an address, making the demo.
    assert not {"alembic", "stripe", "jinja2", "email_validator", "core.demo"} & modules


def test_the_top_level_help_lists_every_command_with_its_help_line(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--help"])
    assert exit.value.code == 0
    listing = " ".join(capsys.readouterr().out.split())  # argparse wraps long help lines
    for name, module in COMMANDS.items():
        commands = CommandParser(prog="python -m core").add_subparsers()
        importlib.import_module(module).register(commands)
        [action] = commands._choices_actions
        assert action.help and f"{name} {' '.join(action.help.split())}" in listing


def test_each_command_module_registers_the_command_it_is_listed_under():
    for name, module in COMMANDS.items():
        commands = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(module).register(commands)
        assert list(commands.choices) == [name]


def test_a_command_s_own_help_is_shown_with_only_its_module_loaded(tmp_path):
    shown, modules = _imported(["balances", "--help"], f"sqlite:///{tmp_path / 'unused.db'}")
    assert shown.returncode == 0
    assert shown.stdout.startswith("usage: python -m core balances") and "--csv" in shown.stdout
    assert {name for name in modules if name.startswith("cli.commands")} == {"cli.commands", "cli.commands.balances"}
