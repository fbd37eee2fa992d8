"""The plan for people: table rows and a line of totals, shared by the command line and the page.

The words are the volunteer's, not Stripe's or the code's: payment links are "created",
amounts are "prices" (a league's price of a product, and the Stripe Price that bills it).
"""

from __future__ import annotations

from core.backfill.plan import BackfillPlan, PlanAction, PlanTotals, PriceSource
from core.backfill.result import ItemStatus
from core.money import format_cents
from core.words import plural

# What the plan will do with each item, in words (the "To do" column).
ACTION_WORDS = {
    PlanAction.MINT: "create link",
    PlanAction.REPLACE: "new price: replace link",
    PlanAction.ALREADY_LINKED: "has a link",
    PlanAction.ALREADY_PAID: "paid",
    PlanAction.WAITING: "after another link",
    PlanAction.BLOCKED: "needs a fix (see note)",
}
# The rows that create a link, for "show only the links to create".
CREATES_A_LINK = frozenset({ACTION_WORDS[PlanAction.MINT], ACTION_WORDS[PlanAction.REPLACE]})
PRICE_WORDS = {
    PriceSource.EXISTING: "existing price",
    PriceSource.NEW_PRICE: "new price in Stripe",
    PriceSource.NEW_TIER: "new price",
}
# What happened to each item of a run, in words (progress lines).
STATUS_WORDS = {
    ItemStatus.MINTED: "created",
    ItemStatus.REPLACED: "replaced",
    ItemStatus.REUSED: "created by another run",
    ItemStatus.SKIPPED: "skipped",
    ItemStatus.FAILED: "failed",
}


def plan_rows(plan: BackfillPlan) -> list[dict[str, str]]:
    """The plan as table rows: player, parent, product, amount, price, link exists?, what to do.

    A price change shows as ``$150.00 → $175.00``; a row an interrupted run reserved shows
    ``reserved`` under "Link exists?".
    """
    return [
        {
            "Player": item.player_name,
            "Parent": item.parent_name,
            "Product": item.product_name,
            "Amount": item.amount_text,
            "Price": PRICE_WORDS[item.price_source] if item.price_source else "—",
            "Link exists?": "yes" if item.link_exists else ("reserved" if item.reserved_link_id else "no"),
            "To do": ACTION_WORDS[item.action],
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
    """One line of plan totals for people; a count that is zero and means nothing is left out."""
    parts = [f"{plural(totals.links_to_mint, 'payment link')} to create "
             f"({format_cents(totals.amount_to_mint_cents, totals.currency)})"]
    if totals.links_to_replace:
        parts.append(
            f"{plural(totals.links_to_replace, 'link')} to replace at a new price "
            f"({format_cents(totals.replaced_from_cents, totals.currency)} → "
            f"{format_cents(totals.replaced_to_cents, totals.currency)})"
        )
    if totals.links_to_switch_off:
        parts.append(f"{plural(totals.links_to_switch_off, 'old link')} still to switch off in Stripe")
    parts.append(f"{plural(totals.prices_to_create, 'price')} to create in Stripe")
    if totals.family_links_to_create or totals.family_links_to_replace:
        parts.append(f"{plural(totals.family_links_to_create, 'family balance link')} to create and "
                     f"{totals.family_links_to_replace:,} to replace at the new balance")
    done = [f"{totals.already_linked:,} already have a link", f"{totals.already_paid:,} already paid"]
    if totals.waiting:
        done.append(f"{totals.waiting:,} after another link of the same player and product")
    if totals.blocked:
        done.append(f"{totals.blocked:,} that need a fix first (see the notes)")
    return f"{', '.join(parts)}; {', '.join(done)}; {plural(totals.players, 'signed player')}"
