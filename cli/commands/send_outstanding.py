"""``send-outstanding``: the outstanding-balance email, as a test send or to everyone who owes."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from cli.context import CommandContext, add_tenant_option, league_command
from core.composition import make_email_backend
from core.email.campaigns import (
    Manifest,
    build_manifest,
    campaign_messages,
    campaign_summaries,
    parents_to_email,
    run_campaign,
    send_test_email,
    start_campaign,
)
from core.email.outbox import INTERRUPTED, DrainProgress, DrainResult, is_in_flight, retry_messages
from core.email.presend import sync_payments_first
from core.email.registry import OUTSTANDING_BALANCE
from core.errors import InvalidInput
from core.models import MessageStatus, utcnow
from core.money import format_cents
from core.reporting.directory import find_parent


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "send-outstanding",
        help="email parents what they owe (test send, or everyone)",
        description=(
            "Send the outstanding-balance email. --test-email sends one parent's real email to a test "
            "address, marked [TEST]. --all syncs payments (when Stripe is configured), shows who will get "
            "what and who is skipped, asks for confirmation (or takes --yes), then sends through the "
            "outbox. --resume continues a campaign that was interrupted."
        ),
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--test-email", metavar="ADDR", help="send a test to this address")
    mode.add_argument("--all", action="store_true", help="send to every parent who owes")
    mode.add_argument("--resume", metavar="CAMPAIGN", type=int, help="continue an earlier campaign")
    parser.add_argument(
        "--parent", metavar="PARENT",
        help="with --test-email: whose email, by their parent_ref from the roster (e.g. PA-501), email address "
             "or id (default: the first who owes)",
    )
    parser.add_argument("--yes", action="store_true", help="with --all: send without asking")
    parser.add_argument(
        "--cooldown-days", metavar="N", type=int, default=None,
        help="skip parents reminded within N days (default: EMAIL_COOLDOWN_DAYS, 3)",
    )
    parser.add_argument("--retry-failed", action="store_true", help="with --resume: send failed messages again")
    parser.add_argument(
        "--retry-interrupted", action="store_true",
        help="with --resume: send interrupted messages again (they may have been delivered)",
    )
    add_tenant_option(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, *, stdin: TextIO | None = None) -> int:
    if args.parent is not None and not args.test_email:
        raise InvalidInput("--parent goes with --test-email.")
    if args.yes and not args.all:
        raise InvalidInput("--yes goes with --all.")
    if (args.retry_failed or args.retry_interrupted) and args.resume is None:
        raise InvalidInput("--retry-failed and --retry-interrupted go with --resume.")
    with league_command(args) as ctx:
        if args.test_email:
            return _test_send(ctx, args.test_email, args.parent)
        if args.resume is not None:
            return _resume(ctx, args.resume, retry_failed=args.retry_failed, retry_interrupted=args.retry_interrupted)
        return _send_to_everyone(ctx, args, stdin=stdin or sys.stdin)


def _test_send(ctx: CommandContext, address: str, parent: str | None) -> int:
    if parent is not None:
        parent_id = find_parent(ctx.session, ctx.user, parent).id
    else:
        owing = parents_to_email(ctx.session, ctx.user, OUTSTANDING_BALANCE)
        if not owing:
            raise InvalidInput("Nobody owes anything: there is no email to test.")
        parent_id = owing[0].parent_id
    ctx.session.rollback()
    backend = make_email_backend(ctx.settings)
    try:
        result = send_test_email(
            ctx.engine, ctx.user, parent_id=parent_id, test_address=address,
            email_type=OUTSTANDING_BALANCE, backend=backend, email_from=ctx.settings.email_from,
        )
    finally:
        backend.close()
    for message in campaign_messages(ctx.session, ctx.user, result.campaign_id):
        print(f"Test send: {message.parent.name}'s email ({format_cents(message.amount_cents, message.currency)}) "
              f"to {message.to_address}")
    return _report(ctx, result)


def _send_to_everyone(ctx: CommandContext, args: argparse.Namespace, *, stdin: TextIO) -> int:
    cooldown = ctx.settings.email_cooldown_days if args.cooldown_days is None else args.cooldown_days
    # A backend that cannot send (no SMTP_HOST, the placeholder EMAIL_FROM...) is refused now,
    # before anything is synced or queued: a queued campaign would hold its parents.
    make_email_backend(ctx.settings).close()
    # The sync commits as it goes: it runs in its own session, and a failed sync sends nothing.
    ctx.session.rollback()
    sync = sync_payments_first(ctx.engine, ctx.user, settings=ctx.settings)
    print(sync.note)
    _point_at_unfinished_campaigns(ctx)
    # The manifest is printed with --yes too, so a cron log says who was emailed and who not.
    manifest = build_manifest(ctx.session, ctx.user, OUTSTANDING_BALANCE, cooldown_days=cooldown)
    ctx.session.rollback()
    _print_manifest(manifest)
    if manifest.count == 0:
        print("Nothing to send.")
        return 0
    expected = None
    if not args.yes:
        if not _confirmed(manifest, stdin):
            print("Nothing sent.")
            return 1
        # What was confirmed is what is queued: if the list changed meanwhile, nothing is sent.
        expected = manifest.totals
    campaign = start_campaign(
        ctx.session, ctx.user, OUTSTANDING_BALANCE, email_from=ctx.settings.email_from, cooldown_days=cooldown,
        expected=expected,
    )
    ctx.session.commit()
    queued = campaign.audience.get("recipients", 0)
    print(f"Campaign #{campaign.id}: {queued} emails queued, {campaign.audience.get('skipped', 0)} parents skipped.")
    return _drain(ctx, campaign.id)


def _resume(ctx: CommandContext, campaign_id: int, *, retry_failed: bool, retry_interrupted: bool) -> int:
    make_email_backend(ctx.settings).close()  # refused now, before anything is queued again
    if retry_failed or retry_interrupted:
        queued = retry_messages(
            ctx.session, ctx.user, campaign_id, failed=retry_failed, interrupted=retry_interrupted
        )
        ctx.session.commit()
        print(f"Campaign #{campaign_id}: {queued} messages queued again.")
    return _drain(ctx, campaign_id)


def _drain(ctx: CommandContext, campaign_id: int) -> int:
    backend = make_email_backend(ctx.settings)
    try:
        result = run_campaign(
            ctx.engine, ctx.user, campaign_id, backend=backend, email_from=ctx.settings.email_from,
            progress=_progress_printer() if sys.stderr.isatty() else None,
        )
    finally:
        backend.close()
    return _report(ctx, result)


def _report(ctx: CommandContext, result: DrainResult) -> int:
    print(
        f"Campaign #{result.campaign_id}: {result.sent} sent, {result.failed} failed, "
        f"{result.skipped} skipped at send time, {result.interrupted} interrupted, {result.remaining} still queued."
    )
    if result.in_flight:
        print(f"{result.in_flight} messages are being sent by another run right now.")
    if result.stopped_reason:
        print(f"Stopped: {result.stopped_reason}", file=sys.stderr)
    if result.skipped or not result.succeeded:
        messages = campaign_messages(ctx.session, ctx.user, result.campaign_id)
        for message in messages:
            # Claimed (attempts > 0) and then skipped: the family's situation changed since it was queued.
            if message.status is MessageStatus.SKIPPED and message.attempts:
                print(f"skipped at send time: {message.parent.name} <{message.to_address}>: {message.skip_reason}")
    if not result.succeeded:
        now = utcnow()
        for message in messages:
            if message.status is MessageStatus.FAILED:
                print(f"failed: {message.parent.name} <{message.to_address}>: {message.error}", file=sys.stderr)
            elif message.status is MessageStatus.SENDING and not is_in_flight(
                message.status, error=message.error, claimed_at=message.claimed_at, now=now
            ):
                print(f"{INTERRUPTED}: {message.parent.name} <{message.to_address}>", file=sys.stderr)
        print(
            f"Resume with: python -m core send-outstanding --resume {result.campaign_id} "
            "[--retry-failed] [--retry-interrupted]",
            file=sys.stderr,
        )
        return 1
    return 0


def _point_at_unfinished_campaigns(ctx: CommandContext) -> None:
    """Families still queued in an interrupted send are skipped by a new one: say where they are."""
    for campaign in campaign_summaries(ctx.session, ctx.user, limit=20):
        if campaign.unfinished and not campaign.is_test:
            queued = campaign.counts.get("pending", 0)
            print(
                f"Campaign #{campaign.id} did not finish ({queued} still queued): its families are skipped "
                f"below. Finish it with: python -m core send-outstanding --resume {campaign.id}",
                file=sys.stderr,
            )
    ctx.session.rollback()


def _print_manifest(manifest: Manifest) -> None:
    print(f"Will email {manifest.count} parents, {manifest.total} in total:")
    for entry in manifest.recipients:
        print(f"  {entry.parent_name} <{entry.email}>: {entry.amount} ({entry.line_items} items)")
    if manifest.skipped:
        counts = ", ".join(f"{reason}: {count}" for reason, count in sorted(manifest.skip_counts.items()))
        print(f"Skipped {len(manifest.skipped)} parents ({counts}):")
        for entry in manifest.skipped:
            print(f"  {entry.parent_name}: {entry.skip_reason}")


def _confirmed(manifest: Manifest, stdin: TextIO) -> bool:
    if stdin is None or stdin.closed or not stdin.isatty():
        raise InvalidInput("Refusing to send without confirmation: no terminal to ask on. Pass --yes to send.")
    print(f"Send {manifest.count} emails now? [y/N] ", end="", flush=True)
    answer = stdin.readline().strip().lower()
    return answer in {"y", "yes"}


def _progress_printer():  # type: ignore[no-untyped-def]
    def show(progress: DrainProgress) -> None:
        print(
            f"\r{progress.done}/{progress.total} ({progress.sent} sent, {progress.failed} failed)",
            end="" if progress.done < progress.total else "\n",
            file=sys.stderr,
            flush=True,
        )

    return show
