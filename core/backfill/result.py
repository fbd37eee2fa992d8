"""What a backfill commit did: an outcome per plan item, and the old links still active in Stripe."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from core.backfill.plan import BackfillItem, PendingSwitchOff
from core.words import plural


class ItemStatus(str, enum.Enum):
    MINTED = "minted"
    REPLACED = "replaced"  # a new link at the new price is active, the old one deactivated
    REUSED = "reused"  # another backfill minted the same link at the same time
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True)
class ItemOutcome:
    item: BackfillItem
    status: ItemStatus
    reason: str = ""
    link_id: int | None = None
    url: str | None = None


@dataclass(frozen=True)
class OldLinkStillActive:
    """A link deactivated here whose deactivation in Stripe failed (this run's or a retry).

    Someone holding its URL can still pay through it; payment sync records such a payment
    and flags it. The next backfill run tries again; or switch it off in the Stripe dashboard.
    """

    link: PendingSwitchOff
    reason: str

    @property
    def link_id(self) -> int:
        return self.link.link_id

    @property
    def stripe_payment_link_id(self) -> str:
        return self.link.stripe_payment_link_id

    def describe(self) -> str:
        return (f"{self.link.player_name} — {self.link.product_name}: the old link {self.stripe_payment_link_id} "
                f"is deactivated here but still active in Stripe ({self.reason}); the next backfill run tries "
                f"again, or deactivate it in the Stripe dashboard")


@dataclass
class BackfillResult:
    """What a commit did, item by item."""

    outcomes: list[ItemOutcome] = field(default_factory=list)
    prices_created: int = 0
    tiers_created: int = 0
    resumed: int = 0  # reservations of an interrupted run taken up again
    old_links_still_active: list[OldLinkStillActive] = field(default_factory=list)
    switched_off_again: int = 0  # links an earlier run deactivated, switched off in Stripe by this one
    family_links_minted: int = 0  # families' balance links (core.payments.family_links), new or replacing
    family_link_errors: list[str] = field(default_factory=list)

    def _with(self, status: ItemStatus) -> list[ItemOutcome]:
        return [outcome for outcome in self.outcomes if outcome.status is status]

    @property
    def minted(self) -> list[ItemOutcome]:
        return self._with(ItemStatus.MINTED)

    @property
    def replaced(self) -> list[ItemOutcome]:
        return self._with(ItemStatus.REPLACED)

    @property
    def reused(self) -> list[ItemOutcome]:
        return self._with(ItemStatus.REUSED)

    @property
    def skipped(self) -> list[ItemOutcome]:
        return self._with(ItemStatus.SKIPPED)

    @property
    def failed(self) -> list[ItemOutcome]:
        return self._with(ItemStatus.FAILED)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.old_links_still_active and not self.family_link_errors

    def summary(self) -> str:
        text = (
            f"{plural(len(self.minted), 'payment link')} created, {len(self.replaced):,} replaced at a new price, "
            f"{len(self.reused):,} already created by another run, "
            f"{len(self.skipped):,} skipped, {len(self.failed):,} failed; "
            f"{plural(self.prices_created, 'price')} created in Stripe"
        )
        if self.switched_off_again:
            text += f"; {plural(self.switched_off_again, 'old link')} of an earlier run switched off in Stripe"
        if self.old_links_still_active:
            text += f"; {plural(len(self.old_links_still_active), 'old link')} still active in Stripe"
        if self.family_links_minted or self.family_link_errors:
            text += f"; {plural(self.family_links_minted, 'family balance link')} created"
        if self.family_link_errors:
            text += f" ({len(self.family_link_errors):,} failed: {self.family_link_errors[0]})"
        return text
