"""Small factories that build league data for tests. Each returns the flushed object."""

from __future__ import annotations

import itertools

from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, Role
from core.models import (
    LinkStatus,
    Order,
    OrderStatus,
    Parent,
    PaymentLink,
    Player,
    PlayerStatus,
    PriceTier,
    Product,
    ProductKind,
    Team,
    Tenant,
)

_counter = itertools.count(1)


def _n() -> int:
    return next(_counter)


def make_tenant(session: Session, slug: str | None = None, **fields: object) -> Tenant:
    n = _n()
    tenant = Tenant(slug=slug or f"league-{n}", name=fields.pop("name", f"League {n}"), **fields)
    session.add(tenant)
    session.flush()
    return tenant


def make_team(session: Session, tenant: Tenant, name: str | None = None) -> Team:
    team = Team(tenant_id=tenant.id, name=name or f"Team {_n()}")
    session.add(team)
    session.flush()
    return team


def make_parent(
    session: Session,
    tenant: Tenant,
    name: str | None = None,
    email: str | None = "",
    **fields: object,
) -> Parent:
    n = _n()
    parent = Parent(
        tenant_id=tenant.id,
        name=name or f"Parent {n}",
        email=f"parent{n}@example.org" if email == "" else email,
        external_ref=fields.pop("external_ref", f"P{n}"),
        **fields,
    )
    session.add(parent)
    session.flush()
    return parent


def make_player(
    session: Session,
    tenant: Tenant,
    parent: Parent,
    team: Team | None = None,
    *,
    first_name: str | None = None,
    last_name: str = "Player",
    status: PlayerStatus = PlayerStatus.SIGNED,
    **fields: object,
) -> Player:
    n = _n()
    player = Player(
        tenant_id=tenant.id,
        parent_id=parent.id,
        team_id=team.id if team else None,
        first_name=first_name or f"Kid{n}",
        last_name=last_name,
        status=status,
        external_ref=fields.pop("external_ref", f"K{n}"),
        **fields,
    )
    session.add(player)
    session.flush()
    return player


def make_product(
    session: Session,
    tenant: Tenant,
    name: str | None = None,
    *,
    kind: ProductKind = ProductKind.ONE_TIME,
    required: bool = True,
    amount_cents: int = 15000,
    currency: str = "usd",
    stripe_price_id: str | None = None,
) -> Product:
    """A product with one default price tier at ``amount_cents``."""
    product = Product(tenant_id=tenant.id, name=name or f"Product {_n()}", kind=kind, required=required)
    session.add(product)
    session.flush()
    session.add(
        PriceTier(
            product_id=product.id,
            amount_cents=amount_cents,
            currency=currency,
            is_default=True,
            stripe_price_id=stripe_price_id,
        )
    )
    session.flush()
    return product


def default_tier(product: Product) -> PriceTier:
    return next(tier for tier in product.price_tiers if tier.is_default)


def make_order(
    session: Session,
    tenant: Tenant,
    player: Player,
    product: Product,
    *,
    amount_cents: int = 4500,
    status: OrderStatus = OrderStatus.PENDING,
) -> Order:
    order = Order(
        tenant_id=tenant.id,
        player_id=player.id,
        product_id=product.id,
        amount_cents=amount_cents,
        currency="usd",
        status=status,
        external_ref=f"O{_n()}",
    )
    session.add(order)
    session.flush()
    return order


def make_link(
    session: Session,
    tenant: Tenant,
    player: Player,
    product: Product,
    *,
    amount_cents: int | None = None,
    status: LinkStatus = LinkStatus.ACTIVE,
    order: Order | None = None,
) -> PaymentLink:
    """A payment link as the backfill would have stored it (no Stripe call)."""
    session.refresh(product, ["price_tiers"])
    tier = default_tier(product)
    n = _n()
    link = PaymentLink(
        tenant_id=tenant.id,
        player_id=player.id,
        product_id=product.id,
        price_tier_id=tier.id,
        order_id=order.id if order else None,
        amount_cents=amount_cents if amount_cents is not None else tier.amount_cents,
        currency=tier.currency,
        stripe_payment_link_id=f"plink_test_{n}",
        url=f"https://buy.stripe.com/test_{n}",
        status=status,
    )
    session.add(link)
    session.flush()
    return link


def acting(tenant: Tenant, role: Role = Role.ADMIN, *, teams: tuple[Team, ...] = ()) -> ActingUser:
    return ActingUser(
        identity=f"{role.value}@example.org",
        role=role,
        tenant_id=tenant.id,
        team_ids=frozenset(team.id for team in teams),
    )
