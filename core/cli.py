"""``python -m core <command>``: the operator's command line.

Each command lives in its own module under ``core/commands`` and registers itself here.
Errors are one clear line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence

from sqlalchemy.exc import SQLAlchemyError

from core.commands import (
    backfill,
    balances,
    database,
    demo,
    import_roster,
    league,
    send_outstanding,
    sync_payments,
)
from core.errors import BillingError
from core.settings import ConfigurationError

COMMAND_MODULES = (database, demo, league, balances, import_roster, backfill, sync_payments, send_outstanding)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m core",
        description="League Billing Dashboard: operator commands. Run from the repository root.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.register(commands)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
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
