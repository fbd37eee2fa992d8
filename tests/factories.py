"""Small factories that build league data for tests. Each returns the flushed object."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, Role
from core.ledger.billing import charge_key_for
from core.models import (
    Allocation,
    Charge,
    ChargePurpose,
    EntryOrigin,
    LedgerEntry,
    LedgerEntryKind,
    LinkStatus,
    Order,
    OrderStatus,
    Parent,
    Payment,
    PaymentLink,
    PaymentMethod,
    PaymentState,
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
    """A payment link as the backfill would have stored it (no Stripe call), with its ledger
    charge when it is active or paid (and, when paid, the Stripe payment that settled it)."""
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
    if status is LinkStatus.PAID:
        link.paid_at, link.checkout_session_id, link.paid_amount_cents = datetime.now(UTC), f"cs_test_{n}", link.amount_cents
    session.add(link)
    session.flush()
    if status in (LinkStatus.ACTIVE, LinkStatus.PAID):
        charge = make_charge(session, tenant, player.parent, amount_cents=link.amount_cents, player=player,
                             product=product, order=order)
        link.charge_id = charge.id
        if status is LinkStatus.PAID:
            payment = make_payment(session, tenant, player.parent, amount_cents=link.amount_cents,
                                   method=PaymentMethod.STRIPE, reference=link.checkout_session_id,
                                   payment_link_id=link.id)
            _allocate(session, tenant, player.parent, charge, payment, link.amount_cents)
        session.flush()
    return link


def _entry(session: Session, tenant: Tenant, parent: Parent, kind: LedgerEntryKind) -> int:
    entry = LedgerEntry(tenant_id=tenant.id, parent_id=parent.id, kind=kind, origin=EntryOrigin.BACKFILL,
                        recorded_by="tests")
    session.add(entry)
    session.flush()
    return entry.id


def make_charge(
    session: Session,
    tenant: Tenant,
    parent: Parent,
    *,
    amount_cents: int = 15000,
    player: Player | None = None,
    product: Product | None = None,
    order: Order | None = None,
    description: str | None = None,
    due_on: date | None = None,
) -> Charge:
    """A charge as the backfill bills it (a fee when there is no product), without audit rows."""
    entry_id = _entry(session, tenant, parent, LedgerEntryKind.CHARGE)
    if product is not None and player is not None:
        key = charge_key_for(player_id=player.id, product_id=product.id, order_id=order.id if order else None)
        earlier = session.scalar(
            select(func.count()).select_from(Charge)
            .where(Charge.tenant_id == tenant.id, (Charge.charge_key == key) | Charge.charge_key.startswith(key + "#"))
        )
        key = f"{key}#{earlier + 1}" if earlier else key  # a second link for one thing (as migration 0008 does)
        purpose = ChargePurpose.ORDER if order else ChargePurpose.PRODUCT
    else:
        key, purpose = f"fee:e{entry_id}", ChargePurpose.FEE
    charge = Charge(
        id=entry_id, tenant_id=tenant.id, parent_id=parent.id, player_id=player.id if player else None,
        purpose=purpose, product_id=product.id if product else None, order_id=order.id if order else None,
        charge_key=key, description=description or (product.name if product else f"Fee {entry_id}"),
        amount_cents=amount_cents, currency=tenant.currency or "usd", due_on=due_on or datetime.now(UTC).date(),
    )
    session.add(charge)
    session.flush()
    return charge


def make_payment(
    session: Session,
    tenant: Tenant,
    parent: Parent,
    *,
    amount_cents: int,
    method: PaymentMethod = PaymentMethod.CASH,
    state: PaymentState = PaymentState.SETTLED,
    reference: str | None = None,
    payment_link_id: int | None = None,
) -> Payment:
    """A payment row alone (no allocation, no audit row): ``make_link`` settles with it."""
    payment = Payment(
        id=_entry(session, tenant, parent, LedgerEntryKind.PAYMENT), tenant_id=tenant.id, parent_id=parent.id,
        method=method, amount_cents=amount_cents, currency=tenant.currency or "usd",
        received_on=datetime.now(UTC).date(), reference=reference, state=state, payment_link_id=payment_link_id,
    )
    session.add(payment)
    session.flush()
    return payment


def _allocate(session: Session, tenant: Tenant, parent: Parent, charge: Charge, payment: Payment, cents: int) -> None:
    session.add(Allocation(id=_entry(session, tenant, parent, LedgerEntryKind.ALLOCATION), tenant_id=tenant.id,
                           parent_id=parent.id, charge_id=charge.id, payment_id=payment.id, amount_cents=cents))
    session.flush()


def pay_link(session: Session, link: PaymentLink, *, amount_cents: int | None = None,
             checkout_session_id: str | None = None) -> None:
    """What payment sync does when a link was paid through Stripe: the link marked paid, and
    the ledger's Stripe payment settling its charge."""
    from core.ledger.stripe_payments import follow_stripe_link

    link.status = LinkStatus.PAID
    link.paid_at = datetime.now(UTC)
    link.checkout_session_id = checkout_session_id or f"cs_test_paid_{link.id}_{_n()}"
    link.paid_amount_cents = amount_cents if amount_cents is not None else link.amount_cents
    session.flush()
    follow_stripe_link(session, _sync_user(link.tenant_id), link, [])
    session.flush()


def mark_processing(session: Session, link: PaymentLink) -> None:
    """What payment sync does when a payment through a link is still processing (a bank debit)."""
    from core.ledger.stripe_payments import follow_stripe_link

    link.processing = True
    session.flush()
    follow_stripe_link(session, _sync_user(link.tenant_id), link, [])
    session.flush()


def _sync_user(tenant_id: int) -> ActingUser:
    return ActingUser(identity="sync@example.org", role=Role.TREASURER, tenant_id=tenant_id)


def acting(tenant: Tenant, role: Role = Role.ADMIN, *, teams: tuple[Team, ...] = ()) -> ActingUser:
    return ActingUser(
        identity=f"{role.value}@example.org",
        role=role,
        tenant_id=tenant.id,
        team_ids=frozenset(team.id for team in teams),
    )
