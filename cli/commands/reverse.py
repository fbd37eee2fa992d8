"""``reverse ENTRY_ID --reason TEXT``: correct a mistake by reversing the entry that holds it."""

from __future__ import annotations

import argparse

from cli.context import add_tenant_option, league_command
from cli.ledger_output import print_outcome
from core.access.league_settings import settings_for_league
from core.ledger.entries import reverse_entry
from core.ledger.workflows import apply_ledger_change


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "reverse",
        help="reverse a ledger entry (a charge, payment, adjustment or allocation)",
        description="Reverse one entry of the ledger: from now on it counts for nothing. Nothing is edited or "
        "deleted; the reversal is an entry of its own, with the reason and who made it.",
    )
    parser.add_argument("entry_id", metavar="ENTRY_ID", type=int, help="the entry's number (see the statement)")
    parser.add_argument("--reason", required=True, metavar="TEXT", help="why (kept with the reversal)")
    add_tenant_option(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    with league_command(args) as ctx:
        gateway = ctx.services.payment_gateway(action="switch off links") if ctx.services.stripe_configured else None
        outcome = apply_ledger_change(
            ctx.services.sessions, ctx.user,
            lambda session: reverse_entry(session, ctx.user, entry_id=args.entry_id, reason=args.reason),
            gateway=gateway, success_url=settings_for_league(ctx.tenant, ctx.settings).payment_success_url,
        )
    return print_outcome(outcome)
