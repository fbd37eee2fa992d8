"""``statement PARENT [--csv FILE]``: a family's charges, payments and adjustments with a running balance."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.context import add_tenant_option, league_command
from cli.output import write_csv
from core.ledger.statement import family_statement, statement_csv, statement_lines_text
from core.ledger.words import describe_balance
from core.money import format_cents
from core.reporting.directory import find_parent


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "statement",
        help="a family's statement: every entry with a running balance, and what is open",
        description="Every charge, payment and adjustment of one family in date order, with a running balance, "
        "then what is open now. --csv writes the entries as a spreadsheet instead ('-' for stdout).",
    )
    parser.add_argument("parent", metavar="PARENT", help="their parent_ref from the roster (e.g. PA-501), email or id")
    parser.add_argument("--csv", metavar="FILE", type=Path, help="write the statement as CSV to FILE")
    add_tenant_option(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    with league_command(args) as ctx:
        parent = find_parent(ctx.session, ctx.user, args.parent)
        if args.csv is not None:
            write_csv(args.csv, statement_csv(ctx.session, ctx.user, parent.id))
            return 0
        statement = family_statement(ctx.session, ctx.user, parent.id)
    contact = f" <{statement.parent_email}>" if statement.parent_email else ""
    print(f"Statement of {statement.parent_name}{contact}")
    for line in statement_lines_text(statement):
        print(f"  {line}")
    if not statement.lines:
        print("  (no entries yet)")
    print("Open now:")
    if statement.open is None:
        print("  nothing")
    else:
        for item in statement.open.items:
            processing = "  (payment processing)" if item.processing else ""
            who = f"{item.player_name} — " if item.player_name else ""
            print(f"  charge {item.charge_id}: {who}{item.product_name} "
                  f"{format_cents(item.amount_cents, item.currency)}{processing}")
    print(f"balance: {statement.parent_name} "
          f"{describe_balance(statement.balance_cents, statement.currency, processing_cents=statement.processing_cents)}")
    return 0

