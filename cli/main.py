"""``python -m core <command>``: the operator's command line.

Each command lives in its own module under ``cli/commands`` with a ``register(subparsers)``
that adds its parser; ``COMMANDS`` names them. Only the module of the command being run is
imported (its imports reach the email code, the roster reader, the backfill...), so a command
starts without loading the others; the top-level ``--help``, and a command line naming no known
command, load them all to list them with their help lines. Errors are one clear line on stderr
and a non-zero exit status, never a traceback: 2 for a mistyped command line, 1 for anything else.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

from sqlalchemy.exc import SQLAlchemyError

from cli.output import shown
from core.errors import BillingError
from core.settings import ConfigurationError, load_settings, without_database_secrets

# Command name -> the module that registers it, in the order ``--help`` lists them.
COMMANDS: dict[str, str] = {
    "db": "cli.commands.database",
    "demo": "cli.commands.demo",
    "league": "cli.commands.league",
    "balances": "cli.commands.balances",
    "import": "cli.commands.import_roster",
    "backfill": "cli.commands.backfill",
    "sync-payments": "cli.commands.sync_payments",
    "send-outstanding": "cli.commands.send_outstanding",
    "record-payment": "cli.commands.record_payment",
    "adjust": "cli.commands.adjust",
    "reverse": "cli.commands.reverse",
    "statement": "cli.commands.statement",
    "webhook-server": "cli.commands.webhook_server",
}
_GLOBAL_OPTIONS = {"-v", "--verbose"}


class CommandParser(argparse.ArgumentParser):
    """argparse, with each argument error one line on stderr (exit status 2) instead of the usage.

    An unrecognized argument is reported before a missing required one: argparse checks the
    required ones first, so ``send-outstanding --bogus`` would say that one of ``--test-email``,
    ``--all`` or ``--resume`` is required. So ``parse_known_args`` (which argparse also calls for
    each subcommand, whose parsers are of this class too) first parses with nothing required,
    only to find unrecognized arguments; it reports them itself and never returns any.

    Abbreviated options are refused (``allow_abbrev=False``), never completed: ``--al --y``
    must not run as ``--all --yes``. Subcommand parsers are built from this class, so the
    rule holds for every command.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        args = sys.argv[1:] if args is None else list(args)
        with _nothing_required(self):
            _, unrecognized = super().parse_known_args(args, copy.copy(namespace))
        if unrecognized:
            self.error(f"unrecognized arguments: {' '.join(unrecognized)}")
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


@contextmanager
def _nothing_required(parser: argparse.ArgumentParser) -> Iterator[None]:
    """For a moment, none of this parser's own arguments and groups is required."""
    items: list[argparse.Action | argparse._MutuallyExclusiveGroup] = [
        *parser._actions, *parser._mutually_exclusive_groups
    ]
    required = [item for item in items if item.required]
    for item in required:
        item.required = False
    try:
        yield
    finally:
        for item in required:
            item.required = True


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or, given ``command``, of that one only (its module alone is
    imported; the others are bare names, so the choice of command still reads as always)."""
    parser = CommandParser(
        prog="python -m core",
        description="League Billing Dashboard: operator commands. Run from the repository root.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in COMMANDS.items():
        if command is None or name == command:
            importlib.import_module(module).register(commands)
        else:
            commands.add_parser(name)
    return parser


def command_named(argv: Sequence[str]) -> str | None:
    """The command ``argv`` runs, when it plainly names one after the global options; otherwise
    ``None`` (the top-level help, a mistyped or missing command), and every command is loaded."""
    for token in argv:
        if token not in _GLOBAL_OPTIONS:
            return token if token in COMMANDS else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(command_named(argv))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # Alembic's set-up lines ("Context impl SQLiteImpl.", "Will assume non-transactional DDL.")
    # say nothing about the command's own progress; its warnings still show.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        return int(args.handler(args) or 0)
    except (BillingError, ConfigurationError) as exc:
        lines = str(exc).splitlines()  # several problems: one line
        print(f"error: {'; '.join(shown(line) for line in lines)}", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:
        reason = _first_line(str(getattr(exc, "orig", None) or exc))
        print(f"error: database: {shown(_without_database_password(reason))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def _without_database_password(text: str) -> str:
    """A driver's message may repeat part of the URL it was given: never the password."""
    try:
        return without_database_secrets(text, load_settings().database_url)
    except ConfigurationError:  # pragma: no cover - the settings were read before the database was
        return text


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unknown error"
