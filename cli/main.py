"""``python -m core <command>``: the operator's command line.

Each command lives in its own module under ``core/commands`` and registers itself here.
Errors are one clear line on stderr and a non-zero exit status, never a traceback: 2 for
a mistyped command line, 1 for anything else.
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn

from sqlalchemy.exc import SQLAlchemyError

from cli.commands import (
    adjust,
    backfill,
    balances,
    database,
    demo,
    import_roster,
    league,
    record_payment,
    reverse,
    send_outstanding,
    statement,
    sync_payments,
)
from core.errors import BillingError
from core.settings import ConfigurationError

COMMAND_MODULES = (
    database, demo, league, balances, import_roster, backfill, sync_payments, send_outstanding,
    record_payment, adjust, reverse, statement,
)


class CommandParser(argparse.ArgumentParser):
    """argparse, with each argument error one line on stderr (exit status 2) instead of the usage.

    An unrecognized argument is reported before a missing required one: argparse checks the
    required ones first, so ``send-outstanding --bogus`` would say that one of ``--test-email``,
    ``--all`` or ``--resume`` is required. So ``parse_known_args`` (which argparse also calls for
    each subcommand, whose parsers are of this class too) first parses with nothing required,
    only to find unrecognized arguments; it reports them itself and never returns any.
    """

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def, override]
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
    required = [item for item in (*parser._actions, *parser._mutually_exclusive_groups) if item.required]
    for item in required:
        item.required = False
    try:
        yield
    finally:
        for item in required:
            item.required = True


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="python -m core",
        description="League Billing Dashboard: operator commands. Run from the repository root.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args) or 0)
    except (BillingError, ConfigurationError) as exc:
        print(f"error: {'; '.join(str(exc).splitlines())}", file=sys.stderr)  # several problems: one line
        return 1
    except SQLAlchemyError as exc:
        print(f"error: database: {_first_line(str(getattr(exc, 'orig', None) or exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unknown error"
