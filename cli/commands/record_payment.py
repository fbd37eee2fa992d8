"""``record-payment PARENT AMOUNT --method ...``: money a family paid outside Stripe."""

from __future__ import annotations

import argparse
import sys
from datetime import date

from cli.context import CommandContext, add_tenant_option, league_command
from cli.ledger_output import print_outcome
from cli.output import shown
from core.access.league_settings import settings_for_league
from core.email.payment_received import send_receipt
from core.errors import EmailDeliveryError, InvalidInput
from core.ledger.amounts import parse_amount
from core.ledger.entries import record_payment
from core.ledger.workflows import apply_ledger_change
from core.models import PaymentMethod
from core.reporting.directory import find_parent

METHODS = {"cash": PaymentMethod.CASH, "check": PaymentMethod.CHECK, "bank": PaymentMethod.BANK,
           "other": PaymentMethod.OTHER}


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "record-payment",
        help="record a payment made outside Stripe (cash, check, bank transfer)",
        description="Record money a family paid outside Stripe. It settles the family's open charges, oldest "
        "due first; more than is owed is the family's credit (flagged: refund or keep it). The payment links "
        "of what it settles are switched off in Stripe, so nothing is paid twice.",
    )
    parser.add_argument("parent", metavar="PARENT", help="their parent_ref from the roster (e.g. PA-501), email or id")
    parser.add_argument("amount", metavar="AMOUNT", help="the amount paid, like 175.00")
    parser.add_argument("--method", required=True, choices=sorted(METHODS), help="how it was paid")
    parser.add_argument("--reference", metavar="TEXT", help="a check number or bank reference")
    parser.add_argument("--on", metavar="YYYY-MM-DD", help="the day it was received (default: today)")
    parser.add_argument("--note", metavar="TEXT", help="a note kept with the payment")
    parser.add_argument("--receipt", action="store_true",
                        help="then email the family a receipt through the outbox (the payment is recorded "
                             "even if the email cannot go out)")
    add_tenant_option(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    received = _day(args.on)
    with league_command(args) as ctx:
        parent_id = find_parent(ctx.session, ctx.user, args.parent).id
        amount = parse_amount(args.amount, currency=ctx.tenant.currency)
        ctx.session.rollback()  # end the read; the change runs in its own unit of work
        gateway = ctx.services.payment_gateway(action="switch off paid links") if ctx.services.stripe_configured else None
        outcome = apply_ledger_change(
            ctx.services.sessions, ctx.user,
            lambda session: record_payment(session, ctx.user, parent_id=parent_id, amount_cents=amount,
                                           method=METHODS[args.method], received_on=received,
                                           reference=args.reference, note=args.note),
            gateway=gateway, success_url=settings_for_league(ctx.tenant, ctx.settings).payment_success_url,
        )
        status = print_outcome(outcome)
        if args.receipt:
            status = _send_receipt(ctx, outcome.change.entry_id) or status
    return status


def _send_receipt(ctx: CommandContext, payment_id: int) -> int:
    """Email the receipt of the payment just recorded; 1 (the payment staying recorded) when it did not go."""
    config = settings_for_league(ctx.tenant, ctx.settings)
    try:
        with ctx.services.email_backend(config) as backend:
            sent = send_receipt(ctx.services.sessions, ctx.user, payment_id=payment_id, backend=backend,
                                email_from=config.email_from)
    except (EmailDeliveryError, InvalidInput) as problem:
        print(f"error: the receipt was not sent: {shown(str(problem))} The payment is recorded (entry {payment_id}); "
              "send the receipt from the family's page in the dashboard once this is fixed.", file=sys.stderr)
        return 1
    if sent.sent:
        print(f"receipt: emailed to {shown(sent.to_address)} through the outbox (campaign #{sent.campaign_id})")
        return 0
    print(f"error: the receipt to {shown(sent.to_address)} is {sent.status}"
          + (f": {shown(sent.error)}" if sent.error else "")
          + f". The payment is recorded (entry {payment_id}); the receipt is in the outbox as campaign "
            f"#{sent.campaign_id}: send it again from the family's page in the dashboard.", file=sys.stderr)
    return 1


def _day(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"--on {text!r} is not a date: use YYYY-MM-DD, like 2026-09-14.") from None
