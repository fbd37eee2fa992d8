"""Counts in words: one item, two items, never "(1 items)"."""

from __future__ import annotations

from core.backfill.plan import PlanTotals
from core.backfill.presentation import describe_totals
from core.words import plural


def test_one_is_singular_and_everything_else_plural():
    assert plural(1, "item") == "1 item"
    assert plural(0, "item") == "0 items"
    assert plural(1200, "family", "families") == "1,200 families"


def test_the_backfill_totals_speak_of_links_to_create_and_prices_and_leave_out_empty_counts():
    totals = PlanTotals(
        players=6, links_to_mint=1, amount_to_mint_cents=15000, links_to_replace=0, replaced_from_cents=0,
        replaced_to_cents=0, links_to_switch_off=0, prices_to_create=1, tiers_to_create=1, already_linked=2,
        already_paid=0, waiting=0, blocked=0, currency="usd",
    )
    line = describe_totals(totals)
    assert line == ("1 payment link to create ($150.00), 1 price to create in Stripe; 2 already have a link, "
                    "0 already paid; 6 signed players")
    for word in ("mint", "tier", "waiting", "blocked"):
        assert word not in line
