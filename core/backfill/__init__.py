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
the family always has a working link; then one transaction deactivates the old row and
activates the new one, marking the old row ``stripe_deactivation_pending``; then the old link
is switched off in Stripe and the mark cleared. If Stripe refuses that, or the run stops in
between, it is reported and every later run tries again until Stripe has switched it off (in
the meantime payment sync still records and flags a payment made through it). Only links made
from the default tier are replaced, never an order's, and not while a payment on the link is
processing (it may yet settle).

Each link row is *reserved* (status ``minting``, no Stripe id yet) and committed before Stripe
is asked. Its id goes into the request's idempotency key and the link's metadata
(``link_id``), so a crash between Stripe's answer and the database write costs nothing: the
rerun finds the reservation and finishes it. Within a day it sends the same request again
and Stripe answers with the link it made; Stripe forgets idempotency keys after 24 hours, so
an older reservation is first looked for among the account's active links by its
``link_id``, and only minted (with the same key) if Stripe has no such link.

Monthly products are billed with a one-time Price, and the link saves the card:
``payment_intent_data.setup_future_usage=off_session`` with ``customer_creation=always``.
A recurring Price would turn the link into a subscription checkout, where Stripe refuses
both of those options and starts charging automatically; the league bills month by month
from its own records, so it needs the card kept for later, not a Stripe subscription.

The package: ``plan`` (the plan and its values), ``commit`` (minting it), ``result`` (what a
commit did) and ``presentation`` (the plan as table rows and text).
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
from core.backfill.presentation import describe_totals, plan_rows, switch_off_rows
from core.backfill.result import BackfillResult, ItemOutcome, ItemStatus, OldLinkStillActive

__all__ = [
    "DEFAULT_CONCURRENCY",
    "IDEMPOTENCY_KEY_MEMORY",
    "RESERVATION_BATCH",
    "BackfillItem",
    "BackfillPlan",
    "BackfillResult",
    "ItemOutcome",
    "ItemStatus",
    "OldLinkStillActive",
    "PendingSwitchOff",
    "PlanAction",
    "PlanTotals",
    "PriceSource",
    "ProgressCallback",
    "commit_backfill",
    "describe_totals",
    "link_idempotency_key",
    "plan_backfill",
    "plan_rows",
    "switch_off_rows",
]
