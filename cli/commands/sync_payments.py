"""``sync-payments [--full]``: payments, failures, refunds and disputes from Stripe's events;
deactivate withdrawn players' links. ``--full``: check every link, and compare the ledger with Stripe.

Made for cron: a clean run prints nothing. Payments that need a person (a different
amount, a second payment, a payment for an unknown link, a dispute, a refund the ledger could
not take) are one line each on stdout the first time a sync sees them; a payment that failed
and a refund made in Stripe's dashboard are one line each; ``--full`` prints one line per
difference between the ledger and Stripe and a last line counting them; a failure is one line
on stderr and exit status 1.
"""

from __future__ import annotations

import argparse

from cli.context import add_tenant_option, league_command
from cli.output import shown
from core.access.league_settings import settings_for_league
from core.money import format_cents
from core.payments.family_links import FamilyLinkMinting
from core.payments.sync import SyncResult, sync_payments


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "sync-payments",
        help="mark links paid from Stripe and deactivate links of withdrawn players",
        description="Read Stripe's events since the last sync: completed checkouts mark their links paid, "
        "delayed payments settle or fail (what a failed one paid is owed again), refunds made in Stripe's "
        "dashboard go into the ledger and disputes are flagged; deactivate the links of withdrawn players. "
        "Quiet when all is well: prints only what needs a look, and fails with exit status 1 when Stripe "
        "could not be asked (what was recorded is kept; run it again).",
    )
    add_tenant_option(parser)
    parser.add_argument(
        "--full",
        action="store_true",
        help="check every active link one by one instead (the first sync of a league, payments older than "
        "the 30 days of events Stripe keeps, or an audit), then report every difference between the "
        "ledger and Stripe",
    )
    # Also accepted after the command; SUPPRESS keeps the global -v when it is given before.
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
        help="print what was recorded even when nothing needs attention",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # The gateway before the league: without a key there is nothing to do, and the error says why.
    with league_command(args, stripe_action="sync payments") as ctx:
        gateway = ctx.services.payment_gateway(action="sync payments")
        success_url = settings_for_league(ctx.tenant, ctx.settings).payment_success_url
        result = sync_payments(ctx.services.sessions, ctx.user, gateway, full=args.full,
                               family_links=FamilyLinkMinting(gateway, success_url))
    for flag in result.new_flags:
        print(f"needs a look: {shown(flag.describe())}")
    for failed in result.failed:
        print(f"failed: {shown(failed.player_name)} / {shown(failed.product_name)}: the payment did not go "
              f"through and is owed again (Checkout Session {failed.checkout_session_id})")
    for refund in result.refunds:
        print(f"refunded in Stripe: {format_cents(refund.amount_cents, refund.currency)} to "
              f"{shown(refund.parent_name)} (payment {refund.payment_id}, refund {refund.stripe_refund_id})")
    for difference in result.differences:
        print(f"difference: {shown(difference.describe())}")
    if result.full and (result.differences or getattr(args, "verbose", False)):
        print(f"Ledger and Stripe: {_differences(len(result.differences))}")
    if getattr(args, "verbose", False):
        _print_details(result)
    result.raise_for_errors()
    return 0


def _differences(count: int) -> str:
    if count == 0:
        return "they agree"
    return f"{count} difference{'s' if count != 1 else ''}"


def _print_details(result: SyncResult) -> None:
    for payment in result.paid:
        amount = (
            "an unknown amount" if payment.amount_cents is None
            else format_cents(payment.amount_cents, payment.currency)
        )
        print(f"paid: {shown(payment.player_name)} / {shown(payment.product_name)}: {amount}")
    for link in result.deactivated:
        print(f"deactivated: {shown(link.player_name)} / {shown(link.product_name)} ({link.stripe_payment_link_id})")
    print(shown(result.summary()))
