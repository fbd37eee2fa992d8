"""Backfill: give every signed player one persistent Stripe Payment Link per thing they owe.

``plan_backfill`` works out, without writing anything or calling Stripe, what is owed and
not yet linked; the plan is a value to show, count and test. ``commit_backfill`` mints it.

What is owed, per signed player of the league:

* one link per *required*, *active* product at its default price tier;
* one link per *pending order*, at the order's amount (an order is more specific than the
  default tier, so a pending order for a required product replaces its default-tier link).

A (player, product) pair that already has an active link is left alone, and so is one whose
link was paid. The database allows one active link per pair, so when two things are owed for
one pair (two pending orders for it, or an order while a link for the pair is active) the
second one waits, shown with its reason, until the first is paid or deactivated.

A price change is a new link and the old one deactivated: when the active default-tier link
of a pair is at another amount than the product's default tier now (a roster import of a new
amount makes a new default tier), the plan *replaces* it. The new link is minted first, so
the family always has a working link; then one transaction activates the new row and retires
the old one, and the old link is switched off in Stripe. If Stripe refuses that, or the run
stops in between, it is reported and every later run tries again until Stripe has switched it
off (in the meantime payment sync still records and flags a payment made through it). Only
links made from the default tier are replaced, never an order's, and not while a payment on
the link is processing (it may yet settle).

How a link is minted exactly once (reserved and committed before Stripe is asked, with an
idempotency key per attempt) and how one is switched off (the database first, then Stripe)
is written once, in ``core.payments.links``; the commit goes through it for every link.

Monthly products are billed with a one-time Price, and the link saves the card:
``payment_intent_data.setup_future_usage=off_session`` with ``customer_creation=always``.
A recurring Price would turn the link into a subscription checkout, where Stripe refuses
both of those options and starts charging automatically; the league bills month by month
from its own records, so it needs the card kept for later, not a Stripe subscription.

The package: ``plan`` (the plan and its values), ``preflight`` (what stops or warns a commit
before it starts), ``commit`` (minting it), ``result`` (what a commit did) and
``presentation`` (the plan as table rows and text).
"""

from core.backfill.commit import (
    DEFAULT_CONCURRENCY,
    IDEMPOTENCY_KEY_MEMORY,
    RESERVATION_BATCH,
    ProgressCallback,
    commit_backfill,
    link_idempotency_key,
)
from core.backfill.plan import (
    BackfillItem,
    BackfillPlan,
    PendingSwitchOff,
    PlanAction,
    PlanTotals,
    PriceSource,
    plan_backfill,
)
from core.backfill.preflight import (
    BackfillNotReady,
    BackfillPreflight,
    PreflightKind,
    PreflightNote,
    backfill_preflight,
)
from core.backfill.presentation import describe_totals, plan_rows, switch_off_rows
from core.backfill.result import BackfillResult, ItemOutcome, ItemStatus, OldLinkStillActive

__all__ = [
    "DEFAULT_CONCURRENCY",
    "IDEMPOTENCY_KEY_MEMORY",
    "RESERVATION_BATCH",
    "BackfillItem",
    "BackfillNotReady",
    "BackfillPlan",
    "BackfillPreflight",
    "BackfillResult",
    "ItemOutcome",
    "ItemStatus",
    "OldLinkStillActive",
    "PendingSwitchOff",
    "PlanAction",
    "PlanTotals",
    "PreflightKind",
    "PreflightNote",
    "PriceSource",
    "ProgressCallback",
    "backfill_preflight",
    "commit_backfill",
    "describe_totals",
    "link_idempotency_key",
    "plan_backfill",
    "plan_rows",
    "switch_off_rows",
]
