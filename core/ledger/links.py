"""Payment links follow charges.

A link is for exactly its charge's open amount. When a charge is settled another way (cash,
a waiver, the family's credit), partly paid, reversed, or its amount open changes for any
other reason, its active link must stop taking money, or the family could pay twice. It is
*retired* with the backfill's crash-safe switch-off protocol:

1. in the caller's transaction (the one that wrote the ledger entry), the link is deactivated
   here and marked ``stripe_deactivation_pending``: from that commit on it is in no balance
   and no email;
2. after the commit, ``switch_off_retired_links`` asks Stripe to switch it off and clears the
   mark; a link Stripe could not switch off keeps its mark and the backfill's next run (which
   retries every marked link) switches it off.

A link whose payment is processing is left alone: that payment may still settle it.

The transitions themselves (retire a row, switch it off in Stripe and clear its mark, a 404
counting as done) are ``core.payments.links``'s, the one module of link transitions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, Permission, require
from core.db import Sessions, unit_of_work
from core.ledger.accounts import Account
from core.models import Charge, LinkStatus, PaymentLink
from core.payments import links
from core.payments.gateway import PaymentGateway

log = logging.getLogger(__name__)


def retire_unmatched_links(session: Session, user: ActingUser, account: Account) -> list[int]:
    """Retire the family's active links that no longer match their charge's open amount
    (step 1 above, in the caller's transaction). Returns the ids of the links retired."""
    charge_ids = select(Charge.id).where(Charge.tenant_id == user.tenant_id, Charge.parent_id == account.parent_id)
    links = session.scalars(
        select(PaymentLink)
        .where(PaymentLink.tenant_id == user.tenant_id, PaymentLink.status == LinkStatus.ACTIVE,
               PaymentLink.charge_id.in_(charge_ids))
        .with_for_update()
    ).all()
    retired = []
    for link in links:
        if link.processing:
            continue  # its payment may still settle the charge
        charge = account.charge(link.charge_id) if link.charge_id is not None else None
        open_cents = charge.open_cents if charge is not None and charge.billed else 0
        if charge is None or open_cents != link.amount_cents:
            retire_link(link)
            retired.append(link.id)
    if retired:
        session.flush()
    return retired


def retire_link(link: PaymentLink) -> None:
    """Step 1 for one locked, active link: ``core.payments.links.retire_row``."""
    links.retire_row(link)


@dataclass
class SwitchOffResult:
    """What ``switch_off_retired_links`` did: links switched off in Stripe, and the ones it could not."""

    switched_off: list[int] = field(default_factory=list)
    still_on: list[tuple[int, str]] = field(default_factory=list)  # (link id, why)

    @property
    def ok(self) -> bool:
        return not self.still_on


def switch_off_retired_links(
    sessions: Sessions, user: ActingUser, gateway: PaymentGateway, link_ids: list[int] | tuple[int, ...]
) -> SwitchOffResult:
    """Step 2: switch the retired links off in Stripe and clear their mark. **Commits** (one
    unit of work per link, so each one Stripe switched off stays recorded).

    A link Stripe does not know counts as switched off (nothing can be paid through it). A
    refusal or an unreachable Stripe leaves the mark for the backfill's next run.
    """
    require(user, Permission.RECORD_PAYMENTS)
    result = SwitchOffResult()
    for link_id in link_ids:
        with unit_of_work(sessions) as session:
            stripe_id = session.scalar(
                select(PaymentLink.stripe_payment_link_id).where(
                    PaymentLink.id == link_id, PaymentLink.tenant_id == user.tenant_id,
                    PaymentLink.stripe_deactivation_pending.is_(True),
                )
            )
        if stripe_id is None:
            continue  # switched off meanwhile (a backfill run)
        refused = links.switch_off(sessions, user, gateway, links.SwitchOff(link_id, stripe_id))
        if refused is not None:
            result.still_on.append((link_id, str(refused)))
            continue
        result.switched_off.append(link_id)
    return result
