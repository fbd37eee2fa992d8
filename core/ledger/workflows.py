"""One ledger change, start to finish: write it, commit it, then switch off the links it retired.

The command line and the family page both run ``apply_ledger_change`` with the write they
were asked for (``record_payment``, ``record_adjustment``, ``reverse_entry``, ``refund_payment``
...), and only present its ``LedgerOutcome``. Without Stripe configured the change is still
recorded; the retired links keep their mark and the backfill's next run switches them off.

A family with a "Pay the balance" link keeps it at its balance: with ``success_url`` (and the
gateway), a change of balance mints the new link and switches the old one off
(``core.payments.family_links.refresh_family_links``) right after the change is committed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from core.access.permissions import ActingUser
from core.db import Sessions, unit_of_work
from core.ledger.entries import LedgerChange
from core.ledger.links import SwitchOffResult, switch_off_retired_links
from core.ledger.words import describe_balance
from core.payments.family_links import FamilyLinkMinting, FamilyLinksResult, refresh_family_links
from core.payments.gateway import PaymentGateway


@dataclass(frozen=True)
class LedgerOutcome:
    """A committed change and what became of the links it retired."""

    change: LedgerChange
    switched_off: SwitchOffResult | None  # None: nothing to switch off, or Stripe not configured
    family_links: FamilyLinksResult | None = None  # the family's balance link kept at its balance

    @property
    def links_still_on(self) -> int:
        """Links retired here that Stripe has not switched off yet (the next backfill does)."""
        if not self.change.links_to_switch_off:
            return 0
        if self.switched_off is None:
            return len(self.change.links_to_switch_off)
        return len(self.switched_off.still_on)

    @property
    def balance(self) -> str:
        return describe_balance(self.change.balance_cents, self.change.currency,
                                processing_cents=self.change.processing_cents)


def apply_ledger_change(
    sessions: Sessions,
    user: ActingUser,
    write: Callable[[Session], LedgerChange],
    *,
    gateway: PaymentGateway | None,
    success_url: str | None = None,
) -> LedgerOutcome:
    """Run ``write`` in its own unit of work and commit it; then, with ``gateway``, switch off
    in Stripe the links it retired, and with ``success_url`` too, replace the family's balance
    link if the balance it was minted for is no longer the family's. **Commits.** ``write``
    does its own ``require``."""
    with unit_of_work(sessions) as session:
        change = write(session)
    switched = None
    if change.links_to_switch_off and gateway is not None:
        switched = switch_off_retired_links(sessions, user, gateway, change.links_to_switch_off)
    family = None
    if gateway is not None and success_url:
        family = refresh_family_links(sessions, user, FamilyLinkMinting(gateway, success_url),
                                      parent_ids=[change.parent_id], mint_missing=False)
    return LedgerOutcome(change, switched, family)
