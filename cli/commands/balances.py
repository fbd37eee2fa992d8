"""``balances [--csv FILE]``: outstanding balances per parent, or the treasurer's CSV."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.context import add_tenant_option, league_command
from cli.output import shown, write_csv
from core.errors import InvalidInput
from core.money import format_cents
from core.reporting.balances import BalanceFilter, outstanding_balances, summarise
from core.reporting.export import ExportKind, balances_csv_chunks
from core.words import plural


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "balances",
        help="show outstanding balances, or export them as CSV",
        description="Outstanding balances per parent: the open charges of the ledger (less any credit).",
    )
    add_tenant_option(parser)
    parser.add_argument("--csv", metavar="FILE", type=Path, help="write a CSV export to FILE ('-' for stdout)")
    parser.add_argument(
        "--per-parent",
        action="store_true",
        help="with --csv: one row per parent instead of one per line item",
    )
    parser.add_argument("--search", default="", help="only parents or players whose name contains this")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.per_parent and args.csv is None:
        raise InvalidInput("--per-parent goes with --csv FILE (the screen listing is always per family)")
    filters = BalanceFilter(parent_search=args.search)
    with league_command(args) as ctx:
        if args.csv is not None:
            kind = ExportKind.PARENTS if args.per_parent else ExportKind.LINE_ITEMS
            # Streamed from the database to the file; the export is audited once it is all written.
            write_csv(args.csv, balances_csv_chunks(ctx.session, ctx.user, filters, kind=kind))
            ctx.session.commit()
            return 0
        balances = outstanding_balances(ctx.session, ctx.user, filters)
    summary = summarise(balances)
    for balance in balances:
        print(f"{shown(balance.parent_name)} <{shown(balance.parent_email or 'no email')}>: "
              f"{format_cents(balance.total_cents, balance.currency)}")
        for item in balance.items:
            being_paid = "  (payment processing, not counted)" if item.processing else ""
            print(f"    {shown(item.player_name):<28} {shown(item.product_name):<22} "
                  f"{format_cents(item.amount_cents, item.currency):>10}  {shown(item.pay_url)}{being_paid}")
    print(f"Total outstanding: {format_cents(summary.total_cents, summary.currency)} from "
          f"{plural(summary.families, 'family', 'families')} ({plural(summary.players, 'player')}, "
          f"{plural(summary.line_items, 'item')})")
    if summary.processing_cents:
        print(f"Being paid (bank payments processing, not counted above): "
              f"{format_cents(summary.processing_cents, summary.currency)}")
    return 0
