"""``send-outstanding``: the outstanding-balance email, as a test send or to everyone who owes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TextIO

from cli.context import CommandContext, add_tenant_option, league_command
from cli.output import shown
from core.access.league_settings import settings_for_league
from core.email.campaigns import DEFAULT_COOLDOWN_DAYS, Manifest
from core.email.outbox import INTERRUPTED, DrainProgress
from core.email.registry import OUTSTANDING_BALANCE
from core.email.sending import (
    PreparedSend,
    QueuedCampaign,
    SendOutcome,
    prepare_send_to_everyone,
    resume_campaign,
    send_prepared,
    send_test,
)
from core.errors import InvalidInput
from core.payments.family_links import FamilyLinkMinting
from core.reporting.directory import find_parent
from core.settings import Settings
from core.words import plural


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "send-outstanding",
        help="email parents what they owe (test send, or everyone)",
        description=(
            "Send the outstanding-balance email. --test-email sends one parent's real email to a test "
            "address, marked [TEST]. --all syncs payments (when Stripe is configured), shows who will get "
            "what and who is skipped, asks for confirmation (or takes --yes), then sends through the "
            "outbox; run again after a crash, it first finishes what the stopped run left queued. "
            "--resume continues a campaign; a message interrupted in the middle of being sent may have "
            "been delivered: look for its Message-ID in the sent mail, then say --was-sent or --send-again. "
            "Exit status 1 while anything failed, is still queued or awaits that decision."
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
        help=f"skip parents reminded within N days (default: EMAIL_COOLDOWN_DAYS, {DEFAULT_COOLDOWN_DAYS})",
    )
    parser.add_argument("--retry-failed", action="store_true", help="with --resume: send failed messages again")
    parser.add_argument(
        "--retry-interrupted", action="store_true",
        help="with --resume: send every interrupted message again (they may have been delivered)",
    )
    parser.add_argument(
        "--was-sent", metavar="MESSAGE", action="append", default=[],
        help="with --resume: this interrupted message (its number or Message-ID, as listed) is in the sent "
             "mail: record it as sent (repeatable)",
    )
    parser.add_argument(
        "--send-again", metavar="MESSAGE", action="append", default=[],
        help="with --resume: this interrupted message never arrived: send it again (repeatable)",
    )
    add_tenant_option(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, *, stdin: TextIO | None = None) -> int:
    if args.parent is not None and not args.test_email:
        raise InvalidInput("--parent goes with --test-email.")
    if args.yes and not args.all:
        raise InvalidInput("--yes goes with --all.")
    if (args.retry_failed or args.retry_interrupted or args.was_sent or args.send_again) and args.resume is None:
        raise InvalidInput("--retry-failed, --retry-interrupted, --was-sent and --send-again go with --resume.")
    with league_command(args) as ctx:
        if args.test_email:
            return _test_send(ctx, args.test_email, args.parent)
        if args.resume is not None:
            return _resume(ctx, args)
        return _send_to_everyone(ctx, args, stdin=stdin or sys.stdin)


def _league_config(ctx: CommandContext) -> Settings:
    """The settings this league sends with: its own sender address and cool-down, else the server's."""
    return settings_for_league(ctx.tenant, ctx.settings)


def _family_links(ctx: CommandContext, config: Settings) -> FamilyLinkMinting | None:
    """What minting the families' balance links needs, when Stripe is configured."""
    gateway = ctx.services.payment_gateway_if_configured(action="mint the families' balance links")
    return FamilyLinkMinting(gateway, config.payment_success_url) if gateway is not None else None


def _test_send(ctx: CommandContext, address: str, parent: str | None) -> int:
    config = _league_config(ctx)
    # A lookup in the command's own session, which nothing reads again afterwards.
    parent_id = find_parent(ctx.session, ctx.user, parent).id if parent is not None else None
    with ctx.services.email_backend(config) as backend:
        outcome = send_test(
            ctx.services.sessions, ctx.user, email_type=OUTSTANDING_BALANCE, test_address=address,
            parent_id=parent_id, backend=backend, email_from=config.email_from,
            family_links=_family_links(ctx, config),
        )
    for row in outcome.report.rows:
        print(f"Test send: {shown(row.parent_name)}'s email ({row.amount}) to {shown(row.to_address)}")
    return _report(outcome)


def _send_to_everyone(ctx: CommandContext, args: argparse.Namespace, *, stdin: TextIO) -> int:
    services, config = ctx.services, _league_config(ctx)
    gateway = services.payment_gateway_if_configured(action="sync payments before sending")
    prepared = prepare_send_to_everyone(
        services.sessions, ctx.user, OUTSTANDING_BALANCE,
        cooldown_days=config.email_cooldown_days if args.cooldown_days is None else args.cooldown_days,
        gateway=gateway, backend_problem=lambda: services.email_backend_problem(config),
    )
    print(shown(prepared.sync.note))
    for campaign in prepared.being_sent:
        print(f"Campaign #{campaign.id} is being sent by another run right now: its families are skipped below.",
              file=sys.stderr)
    for campaign in prepared.to_finish:
        print(
            f"Campaign #{campaign.id} did not finish ({campaign.counts.get('pending', 0)} still queued) and its "
            "run stopped: this run finishes it first; its families are skipped below.",
            file=sys.stderr,
        )
    for campaign in prepared.unknown:
        print(
            f"Campaign #{campaign.id} did not finish ({campaign.counts.get('pending', 0)} still queued): its "
            f"families are skipped below. Finish it with: python -m core send-outstanding --resume {campaign.id}",
            file=sys.stderr,
        )
    # The manifest is printed with --yes too, so a cron log says who was emailed and who not.
    _print_manifest(prepared.manifest)
    if prepared.manifest.count == 0 and not prepared.to_finish:
        print("Nothing to send.")
        return 0
    if not args.yes and not _confirmed(prepared, stdin):
        print("Nothing sent.")
        return 1
    with services.email_backend(config) as backend:
        outcome = send_prepared(
            services.sessions, ctx.user, prepared, reviewed=not args.yes, backend=backend,
            email_from=config.email_from, gateway=gateway, progress=_progress_printer(),
            on_queued=_print_queued, family_links=_family_links(ctx, config),
        )
    if outcome.queued is None and prepared.manifest.count:
        print("Nothing new was queued: another send is emailing these families already.")
    codes = [_report(run) for run in outcome.runs]
    return 1 if any(codes) else 0


def _resume(ctx: CommandContext, args: argparse.Namespace) -> int:
    config = _league_config(ctx)
    with ctx.services.email_backend(config) as backend:  # a backend that cannot send refuses before anything is queued
        outcome = resume_campaign(
            ctx.services.sessions, ctx.user, args.resume, backend=backend, email_from=config.email_from,
            retry_failed=args.retry_failed, retry_interrupted=args.retry_interrupted, was_sent=args.was_sent,
            send_again=args.send_again, progress=_progress_printer(),
        )
    if outcome.requeued is not None:
        print(f"Campaign #{args.resume}: {outcome.requeued} messages queued again.")
    return _report(outcome)


def _print_queued(queued: QueuedCampaign) -> None:
    print(f"Campaign #{queued.campaign_id}: {queued.recipients} emails queued, {queued.skipped} parents skipped.")


def _report(outcome: SendOutcome) -> int:
    result, report = outcome.result, outcome.report
    print(
        f"Campaign #{result.campaign_id}: {result.sent} sent, {result.failed} failed, "
        f"{result.skipped} skipped at send time, {result.interrupted} interrupted, {result.remaining} still queued."
    )
    if result.in_flight:
        print(f"{result.in_flight} messages are being sent by another run right now.")
    if result.stopped_reason:
        print(f"Stopped: {shown(result.stopped_reason)}", file=sys.stderr)
    if result.skipped or not result.succeeded:
        for row in report.skipped_at_send_time:
            print(f"skipped at send time: {shown(row.parent_name)} <{shown(row.to_address)}>: {shown(row.reason)}")
    if not result.succeeded:
        for row in report.failed:
            print(f"failed: {shown(row.parent_name)} <{shown(row.to_address)}>: {shown(row.reason)}", file=sys.stderr)
        for row in report.interrupted:
            print(f"{INTERRUPTED}: {shown(row.parent_name)} <{shown(row.to_address)}>: message {row.id}, "
                  f"Message-ID {row.message_id_header}", file=sys.stderr)
        if report.interrupted:
            print(
                f"Awaiting your decision: look for each Message-ID above in the sent mail, then run "
                f"python -m core send-outstanding --resume {result.campaign_id} --was-sent MESSAGE (it went) "
                "or --send-again MESSAGE (it did not), once per message.",
                file=sys.stderr,
            )
        print(
            f"Resume with: python -m core send-outstanding --resume {result.campaign_id} "
            "[--retry-failed] [--was-sent MESSAGE] [--send-again MESSAGE]",
            file=sys.stderr,
        )
        return 1
    return 0


def _print_manifest(manifest: Manifest) -> None:
    print(f"Will email {manifest.count} parents, {manifest.total} in total:")
    for entry in manifest.recipients:
        print(f"  {shown(entry.parent_name)} <{shown(entry.email)}>: {entry.amount} ({plural(entry.line_items, 'item')})")
    if manifest.skipped:
        counts = ", ".join(f"{reason}: {count}" for reason, count in sorted(manifest.skip_counts.items()))
        print(f"Skipped {len(manifest.skipped)} parents ({counts}):")
        for entry in manifest.skipped:
            print(f"  {shown(entry.parent_name)}: {shown(entry.skip_reason)}")


def _confirmed(prepared: PreparedSend, stdin: TextIO) -> bool:
    if stdin is None or stdin.closed or not stdin.isatty():
        raise InvalidInput("Refusing to send without confirmation: no terminal to ask on. Pass --yes to send.")
    finish = ", ".join(f"#{campaign.id}" for campaign in prepared.to_finish)
    question = f"Send {prepared.manifest.count} emails" + (f" and finish campaign {finish}" if finish else "")
    print(f"{question} now? [y/N] ", end="", flush=True)
    answer = stdin.readline().strip().lower()
    return answer in {"y", "yes"}


def _progress_printer() -> Callable[[DrainProgress], None] | None:
    """A progress line on a terminal's stderr; nothing in a cron log."""
    if not sys.stderr.isatty():
        return None

    def show(progress: DrainProgress) -> None:
        print(
            f"\r{progress.done}/{progress.total} ({progress.sent} sent, {progress.failed} failed)",
            end="" if progress.done < progress.total else "\n",
            file=sys.stderr,
            flush=True,
        )

    return show
