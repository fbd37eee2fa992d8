"""The plan for people: table rows and a line of totals, shared by the command line and the page."""

from __future__ import annotations

from core.backfill.plan import BackfillPlan, PlanTotals
from core.money import format_cents


def plan_rows(plan: BackfillPlan) -> list[dict[str, str]]:
    """The plan as table rows: player, parent, product, amount, price, link exists?, action.

    A price change shows as ``$150.00 → $175.00``; a row an interrupted run reserved shows
    ``reserved`` under "Link exists?".
    """
    return [
        {
            "Player": item.player_name,
            "Parent": item.parent_name,
            "Product": item.product_name,
            "Amount": item.amount_text,
            "Price": item.price_source.value if item.price_source else "—",
            "Link exists?": "yes" if item.link_exists else ("reserved" if item.reserved_link_id else "no"),
            "Action": item.action.value,
            "Note": item.reason,
        }
        for item in plan.items
    ]


def switch_off_rows(plan: BackfillPlan) -> list[dict[str, str]]:
    """The old links still to switch off in Stripe, as table rows."""
    return [
        {"Player": old.player_name, "Parent": old.parent_name, "Product": old.product_name,
         "Old Stripe link": old.stripe_payment_link_id}
        for old in plan.pending_switch_offs
    ]


def describe_totals(totals: PlanTotals) -> str:
    """One line of plan totals for people."""
    replacing = ""
    if totals.links_to_replace:
        replacing = (
            f", {_count(totals.links_to_replace, 'link')} to replace at a new price "
            f"({format_cents(totals.replaced_from_cents, totals.currency)} → "
            f"{format_cents(totals.replaced_to_cents, totals.currency)})"
        )
    switching_off = ""
    if totals.links_to_switch_off:
        switching_off = f", {_count(totals.links_to_switch_off, 'old link')} still to switch off in Stripe"
    return (
        f"{_count(totals.links_to_mint, 'link')} to mint "
        f"({format_cents(totals.amount_to_mint_cents, totals.currency)}){replacing}{switching_off}, "
        f"{_count(totals.prices_to_create, 'Stripe price')} to create "
        f"({_count(totals.tiers_to_create, 'new tier')}); "
        f"{totals.already_linked} already linked, {totals.already_paid} already paid, "
        f"{totals.waiting} waiting, {totals.blocked} blocked; {_count(totals.players, 'signed player')}"
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
