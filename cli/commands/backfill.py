"""``backfill [--commit]``: mint persistent payment links for signed players (dry run by default)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cli.context import add_tenant_option, league_command
from cli.output import shown
from core.access.league_settings import effective_settings
from core.backfill import (
    DEFAULT_CONCURRENCY,
    BackfillPlan,
    BackfillPreflight,
    BackfillResult,
    ItemOutcome,
    ItemStatus,
    backfill_preflight,
    commit_backfill,
    describe_totals,
    plan_backfill,
    plan_rows,
    switch_off_rows,
)
from core.backfill.presentation import STATUS_WORDS
from core.words import plural


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "backfill",
        help="create a Stripe payment link for everything signed players owe (dry run by default)",
        description=(
            "Plan one persistent Stripe Payment Link per required product and per pending order "
            "of every signed player, and print the plan. A link whose product's default price "
            "changed is replaced: a new link at the new price, then the old one deactivated. "
            "Nothing changes unless --commit is given. Safe to rerun: links already made are left "
            "alone, and links an interrupted run was creating are finished, never made twice."
        ),
    )
    parser.add_argument("--commit", action="store_true", help="create the links through Stripe")
    parser.add_argument(
        "--concurrency", type=int, default=DEFAULT_CONCURRENCY, metavar="N",
        help=f"Stripe requests in flight at once (default {DEFAULT_CONCURRENCY}); the pace stays under Stripe's limit",
    )
    add_tenant_option(parser)
    parser.set_defaults(handler=run_backfill)


def run_backfill(args: argparse.Namespace) -> int:
    with league_command(args) as ctx:
        plan = plan_backfill(ctx.session, ctx.user)
        ctx.session.close()  # the read is over: nothing is held while Stripe is asked
        in_force = effective_settings(ctx.tenant, ctx.settings)
        preflight = backfill_preflight(ctx.settings, plan, commit=args.commit, in_force=in_force)
        if not args.commit:
            _print_plan(plan, heading=f"Payment links for {shown(ctx.tenant.name)} ({ctx.tenant.slug}) — dry run, nothing changed")
            _print_preflight(preflight, dry_run=True)
            if plan.has_work:
                print("Run again with --commit to create these links." if plan.to_change else
                      "Run again with --commit to switch the old links off in Stripe.")
            return 0
        preflight.raise_for_problems()
        _print_preflight(preflight, dry_run=False)
        gateway = ctx.services.payment_gateway(action="create payment links")
        totals = plan.totals
        replacing = f" and replacing {totals.links_to_replace:,} at a new price" if totals.links_to_replace else ""
        if totals.links_to_switch_off:
            replacing += f", switching off {plural(totals.links_to_switch_off, 'old link')} in Stripe"
        print(f"Creating {plural(totals.links_to_mint, 'payment link')}{replacing} for {shown(ctx.tenant.name)} ({ctx.tenant.slug})...",
              flush=True)
        result = commit_backfill(
            ctx.services.sessions, ctx.user, gateway, plan,
            success_url=in_force.payment_success_url.value, progress=_print_progress, concurrency=args.concurrency,
            family_links=True,
        )
        return _report(result)


def _print_preflight(preflight: BackfillPreflight, *, dry_run: bool) -> None:
    """What the preflight says, one warning line each on stderr (a dry run names what ``--commit`` refuses)."""
    for note in preflight.notes:
        lead = "--commit will refuse: " if dry_run and note.stops_commit else ""
        print(f"warning: {lead}{note.message}", file=sys.stderr)


def _print_plan(plan: BackfillPlan, *, heading: str) -> None:
    print(heading)
    rows = plan_rows(plan)
    if rows:
        print(_table(rows))
    else:
        print("No signed players owe anything.")
    if plan.pending_switch_offs:
        print("Deactivated here but still active in Stripe (an earlier run could not switch them off):")
        print(_table(switch_off_rows(plan)))
    print(f"Totals: {describe_totals(plan.totals)}")


def _table(rows: Sequence[dict[str, str]]) -> str:
    rows = [{column: shown(value) for column, value in row.items()} for row in rows]
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(row[c]) for row in rows)) for c in columns}

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(widths[c]) for c, v in zip(columns, values, strict=True)).rstrip()

    return "\n".join([line(columns), line(["-" * widths[c] for c in columns])] + [line(list(row.values())) for row in rows])


def _print_progress(done: int, total: int, outcome: ItemOutcome) -> None:
    if outcome.status is ItemStatus.SKIPPED:
        return
    item = outcome.item
    what = f"{shown(item.player_name)} — {shown(item.product_name)} {item.amount_text}"
    detail = f": {shown(outcome.reason)}" if outcome.status is ItemStatus.FAILED else ""
    print(f"[{done:>{len(str(total))}}/{total}] {STATUS_WORDS[outcome.status]:<8} {what}{detail}", flush=True)


def _report(result: BackfillResult) -> int:
    print(f"Done: {result.summary()}.")
    if result.ok:
        return 0
    if result.failed:
        print("Failed:", file=sys.stderr)
        for outcome in result.failed:
            item = outcome.item
            print(f"  {shown(item.player_name)} — {shown(item.product_name)}: {shown(outcome.reason)}", file=sys.stderr)
    if result.old_links_still_active:
        print("Deactivated here, but the old link is still active in Stripe:", file=sys.stderr)
        for old in result.old_links_still_active:
            print(f"  {shown(old.describe())}", file=sys.stderr)
    problems = []
    if result.failed:
        problems.append(f"{len(result.failed)} of the links could not be created (listed above); "
                        "fix the cause and run the backfill again")
    if result.old_links_still_active:
        still_on = len(result.old_links_still_active)
        problems.append(f"{plural(still_on, 'old link')} {'is' if still_on == 1 else 'are'} still active in Stripe "
                        "(listed above); run the backfill again to retry, or deactivate them in the Stripe dashboard")
    print(f"error: {'; '.join(problems)}", file=sys.stderr)
    return 1
