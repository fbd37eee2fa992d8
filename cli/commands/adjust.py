"""``adjust PARENT AMOUNT --kind ... --reason TEXT [--charge ID]``: a discount, waiver, aid or write-off."""

from __future__ import annotations

import argparse

from cli.context import add_tenant_option, league_command
from cli.ledger_output import print_outcome
from core.access.league_settings import settings_for_league
from core.ledger.amounts import parse_amount
from core.ledger.entries import record_adjustment
from core.ledger.words import REDUCTION_NAMES
from core.ledger.workflows import apply_ledger_change
from core.reporting.directory import find_parent


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "adjust",
        help="take a discount, waiver, financial aid or write-off off a family's charges",
        description="Take an amount off a family's open charges: on one charge (--charge), never more than is "
        "open on it, or spread over its open charges oldest due first, never more than the family owes.",
    )
    parser.add_argument("parent", metavar="PARENT", help="their parent_ref from the roster (e.g. PA-501), email or id")
    parser.add_argument("amount", metavar="AMOUNT", help="the amount to take off, like 25.00")
    parser.add_argument("--kind", required=True, choices=list(REDUCTION_NAMES), help="what it is")
    parser.add_argument("--reason", required=True, metavar="TEXT", help="why (kept with the entry)")
    parser.add_argument("--charge", metavar="ID", type=int, help="the charge it is for (see the statement)")
    add_tenant_option(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    with league_command(args) as ctx:
        parent_id = find_parent(ctx.session, ctx.user, args.parent).id
        amount = parse_amount(args.amount, currency=ctx.tenant.currency)
        ctx.session.rollback()  # end the read; the change runs in its own unit of work
        gateway = ctx.services.payment_gateway(action="switch off links") if ctx.services.stripe_configured else None
        outcome = apply_ledger_change(
            ctx.services.sessions, ctx.user,
            lambda session: record_adjustment(session, ctx.user, parent_id=parent_id, amount_cents=amount,
                                              kind=REDUCTION_NAMES[args.kind], reason=args.reason,
                                              charge_id=args.charge),
            gateway=gateway, success_url=settings_for_league(ctx.tenant, ctx.settings).payment_success_url,
        )
    return print_outcome(outcome)
