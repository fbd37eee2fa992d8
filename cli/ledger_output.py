"""What every ledger command prints after a change: what it did, its entry, the new balance."""

from __future__ import annotations

import sys

from core.ledger.workflows import LedgerOutcome
from core.words import plural


def print_outcome(outcome: LedgerOutcome) -> int:
    change = outcome.change
    print(change.summary)
    print(f"entry {change.entry_id}")
    print(f"balance: {change.parent_name} {outcome.balance}")
    if outcome.switched_off is not None and outcome.switched_off.switched_off:
        print(f"switched off in Stripe: {plural(len(outcome.switched_off.switched_off), 'payment link')} no longer owed")
    if outcome.links_still_on:
        print(f"warning: {plural(outcome.links_still_on, 'payment link')} of what is no longer owed "
              f"{'is' if outcome.links_still_on == 1 else 'are'} switched off here "
              "but not yet in Stripe; the next backfill switches them off", file=sys.stderr)
    return 0
