"""The backfill bills before it mints: what the plan's items owe becomes ledger charges first.

So a family's credit (a cash payment recorded before any link existed) settles a new charge
before a link is minted for it, and a charge whose link Stripe then fails to make is still
owed (the next run mints its link). The ledger's rules are in ``core.ledger.billing``.
"""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from core.access.permissions import ActingUser
from core.backfill.plan import BackfillPlan, bills, follow_the_ledger
from core.ledger.billing import Owed, bill_owed
from core.models import Product


def bill_plan(session: Session, user: ActingUser, plan: BackfillPlan) -> BackfillPlan:
    """Record the charges the plan's items owe and have none yet (the caller commits). Returns the
    plan as the ledger has it now (items settled meanwhile, by credit or otherwise, need no link).

    For ``commit_backfill``, after its ``require``.
    """
    owed = [
        Owed(parent_id=item.parent_id, player_id=item.player_id, product_id=item.product_id,
             order_id=item.order_id, amount_cents=item.amount_cents, description=item.product_name)
        for item in plan.items if bills(item)
    ]
    bill_owed(session, user, owed)
    products = {
        product.id: product
        for product in session.scalars(
            select(Product).where(Product.tenant_id == user.tenant_id).options(selectinload(Product.price_tiers))
        )
    }
    return replace(plan, items=follow_the_ledger(session, user, plan.items, products))

