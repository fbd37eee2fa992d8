"""Put the league's payment links into the Stripe stand-in, as the backfill would have minted them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import PaymentLink, Product, ProductKind, Tenant
from core.payments.gateway import league_metadata
from tests.stripe_stand_in import StripeStandIn


def mirror_links(stand_in: StripeStandIn, session: Session, links: Iterable[PaymentLink]) -> None:
    """Register each link in the stand-in under its ``stripe_payment_link_id``, with the
    backfill's metadata and its one-payment restriction for one-time products."""
    for link in links:
        if link.stripe_payment_link_id is None:  # a reservation: nothing at Stripe yet
            continue
        tenant = session.get(Tenant, link.tenant_id)
        product = session.get(Product, link.product_id)
        assert tenant is not None and product is not None
        metadata = {
            "tenant": tenant.slug,
            **league_metadata(tenant_id=tenant.id, league_key=tenant.league_key),
            "player_id": str(link.player_id),
            "product_id": str(link.product_id),
            "link_id": str(link.id),
        }
        if link.order_id is not None:
            metadata["order_id"] = str(link.order_id)
        stand_in.add_payment_link(
            link.stripe_payment_link_id,
            amount_cents=link.amount_cents,
            currency=link.currency,
            metadata=metadata,
            single_payment=product.kind is ProductKind.ONE_TIME,
        )


def mirror_league(stand_in: StripeStandIn, session: Session, tenant_id: int) -> None:
    """Every link of a league (e.g. the demo league) into the stand-in."""
    links = session.scalars(select(PaymentLink).where(PaymentLink.tenant_id == tenant_id)).all()
    mirror_links(stand_in, session, links)


class LiveMode:
    """A gateway as if its key were a live one (what it creates would take real money)."""

    live_mode = True

    def __init__(self, real: Any) -> None:
        self.real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)
