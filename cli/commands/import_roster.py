"""``import FILE.csv [--commit] [--tenant SLUG]``: preview or apply a roster file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli.context import add_tenant_option, league_command
from cli.output import shown
from core.errors import InvalidInput
from core.money import LARGE_AMOUNT_CENTS, format_cents
from core.roster.importing import ImportResult, import_roster

KINDS_HELP = """\
The kind of file is recognised by its header row (column order is free, extra columns are ignored):
  players:  player_ref, first_name, last_name, status, team, parent_ref, parent_name, parent_email
  products: product, kind, required, amount
  orders:   order_ref, player_ref, product, amount, status
Import products and players before the orders that refer to them.
Amounts: 150, 150.00 or 1,500.00; a semicolon- or tab-separated file may write 150,00 or 1.500,00
(every amount of one file the same way). An amount that could be read two ways is refused.
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "import",
        help="import a roster CSV file (players, products or orders); dry run unless --commit",
        description="Preview (the default) or apply a roster CSV file. An import with any error "
        "changes nothing. The first import into an empty database creates its league ('default', "
        "or the one --tenant names); after that a league that does not exist is refused unless "
        "--new-league is given.",
        epilog=KINDS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", metavar="FILE.csv", type=Path, help="the CSV file, UTF-8")
    parser.add_argument("--commit", action="store_true", help="apply the changes (default: preview only)")
    parser.add_argument(
        "--confirm-large-amounts", action="store_true",
        help=f"with --commit: import amounts above {format_cents(LARGE_AMOUNT_CENTS)} for one item, "
        "which the preview lists (without it such a file is refused)",
    )
    add_tenant_option(parser)
    parser.add_argument(
        "--new-league", action="store_true",
        help="create the league --tenant names when it does not exist (other leagues exist already)",
    )
    parser.set_defaults(handler=run_import)


def run_import(args: argparse.Namespace) -> int:
    path: Path = args.file
    if not path.is_file():
        raise InvalidInput(f"No such file: {path}")
    with league_command(args, create_league=True) as ctx:
        result = import_roster(
            ctx.session, ctx.user, path, commit=args.commit, confirm_large_amounts=args.confirm_large_amounts
        )
        if result.committed:
            ctx.session.commit()
        else:
            ctx.session.rollback()
        league = f"league {ctx.tenant.slug!r}" if not ctx.tenant_created else f"new league {ctx.tenant.slug!r}"
        print_preview(result, league)
        print_large_amounts(result)
    if not result.ok:
        for error in result.errors:
            print(f"  {shown(error)}", file=sys.stderr)
        if result.errors_not_shown:
            print(f"  ... and {result.errors_not_shown} more", file=sys.stderr)
        noun = "problem" if result.error_count == 1 else "problems"
        print(f"error: {result.error_count} {noun} in {shown(result.file_name)}; nothing was imported", file=sys.stderr)
        return 1
    if result.unconfirmed:
        lines = ", ".join(str(large.line) for large in result.large_amounts)
        noun = "amount" if len(result.large_amounts) == 1 else "amounts"
        print(
            f"error: {len(result.large_amounts)} {noun} above {result.large_amount_bound} in "
            f"{shown(result.file_name)} (line {lines}); nothing was imported. Check them, then run again "
            "with --commit --confirm-large-amounts",
            file=sys.stderr,
        )
        return 1
    if result.committed:
        print(f"Imported {shown(result.file_name)}.")
    elif result.large_amounts:
        print("dry run: nothing changed; pass --commit --confirm-large-amounts to import.")
    else:
        print("dry run: nothing changed; pass --commit to import.")
    return 0


def print_preview(result: ImportResult, league: str) -> None:
    """The counts table: what was (or would be) created, updated and left unchanged."""
    if result.kind is None:  # the header matched no kind: there is nothing to count
        return
    print(f"{result.kind.value} file {shown(result.file_name)}: {result.rows} rows for {shown(league)}")
    print(f"  {'':<10}{'created':>9}{'updated':>9}{'unchanged':>11}")
    for entity in result.entities:
        counts = result.counts[entity]
        print(f"  {entity:<10}{counts.created:>9}{counts.updated:>9}{counts.unchanged:>11}")


def print_large_amounts(result: ImportResult) -> None:
    """Every amount above the sanity bound, by line: the operator checks them before importing."""
    if not result.large_amounts:
        return
    print(f"Amounts above {result.large_amount_bound} for one item (check each against the source):")
    for large in result.large_amounts:
        print(f"  {shown(large.describe(result.currency))}")
