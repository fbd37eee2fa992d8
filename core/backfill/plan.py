"""The plan: what the league's signed players are owed and not yet linked, worked out
without writing anything or calling Stripe (``plan_backfill``), and the values that
describe it (``BackfillPlan``, its items and totals)."""

from __future__ import annotations

import enum
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from core.access.permissions import ActingUser, Permission, require
from core.errors import PermissionDenied
from core.ledger.accounts import families_with_credit
from core.ledger.billing import CurrentCharge, charge_key_for, league_charges
from core.models import (
    FamilyLink,
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
    Tenant,
)
from core.money import format_cents
from core.payments.links import PendingSwitchOff, links_awaiting_switch_off
from core.reporting.balances import outstanding_balances
from core.timezones import format_local, league_zone

_TierKey = tuple[int, int, str]  # (product id, amount in cents, currency)


class PlanAction(str, enum.Enum):
    MINT = "mint"
    REPLACE = "replace"  # the default price changed: a new link, then the old one deactivated
    ALREADY_LINKED = "already linked"
    ALREADY_PAID = "already paid"
    WAITING = "waiting"  # another link for the same player and product comes first
    BLOCKED = "blocked"  # owed, but cannot be minted until the league's data is fixed


class PriceSource(str, enum.Enum):
    EXISTING = "existing price"
    NEW_PRICE = "new Stripe price"
    NEW_TIER = "new tier and Stripe price"


@dataclass(frozen=True)
class BackfillItem:
    """One thing a signed player owes, and what the backfill will do about it.

    For a ``REPLACE`` item, ``existing_link_id`` is the link it replaces and
    ``replaced_amount_cents``/``replaced_currency`` its amount. ``reserved_link_id`` is set
    when an interrupted run already reserved the row: the commit finishes that row.
    """

    key: str
    player_id: int
    player_name: str
    parent_id: int
    parent_name: str
    product_id: int
    product_name: str
    product_kind: ProductKind
    amount_cents: int
    currency: str
    action: PlanAction
    reason: str
    price_source: PriceSource | None = None
    tier_id: int | None = None
    order_id: int | None = None
    existing_link_id: int | None = None
    reserved_link_id: int | None = None
    reserved_at: datetime | None = None
    replaced_amount_cents: int | None = None
    replaced_currency: str | None = None

    @property
    def link_exists(self) -> bool:
        return self.existing_link_id is not None

    @property
    def replaces_link_id(self) -> int | None:
        return self.existing_link_id if self.action is PlanAction.REPLACE else None

    @property
    def amount_text(self) -> str:
        """The amount for people: ``$150.00``, or ``$150.00 → $175.00`` for a price change."""
        if not self.amount_cents:
            return "—"
        new = format_cents(self.amount_cents, self.currency)
        if self.action is PlanAction.REPLACE and self.replaced_amount_cents is not None:
            return f"{format_cents(self.replaced_amount_cents, self.replaced_currency or self.currency)} → {new}"
        return new


@dataclass(frozen=True)
class PlanTotals:
    links_to_mint: int
    amount_to_mint_cents: int
    currency: str
    prices_to_create: int
    tiers_to_create: int
    already_linked: int
    already_paid: int
    waiting: int
    blocked: int
    players: int
    links_to_replace: int = 0
    replaced_from_cents: int = 0  # what the links to replace bill now
    replaced_to_cents: int = 0  # what their replacements will bill
    links_to_switch_off: int = 0  # deactivated here, still to switch off in Stripe
    family_links_to_create: int = 0  # families' balance links: for families that have none
    family_links_to_replace: int = 0  # ... and for those whose link is not at the balance billed


@dataclass(frozen=True)
class BackfillPlan:
    """What a backfill would do in one league. Built by ``plan_backfill``; changes nothing."""

    tenant_id: int
    tenant_slug: str
    league_key: str  # the league's name at Stripe (``Tenant.league_key``)
    items: tuple[BackfillItem, ...]
    currency: str  # the league's (``Tenant.currency``)
    signed_players: int = 0
    pending_switch_offs: tuple[PendingSwitchOff, ...] = ()
    family_links_to_create: int = 0  # see ``forecast_family_links``
    family_links_to_replace: int = 0

    @property
    def to_mint(self) -> tuple[BackfillItem, ...]:
        return tuple(item for item in self.items if item.action is PlanAction.MINT)

    @property
    def to_replace(self) -> tuple[BackfillItem, ...]:
        return tuple(item for item in self.items if item.action is PlanAction.REPLACE)

    @property
    def to_change(self) -> tuple[BackfillItem, ...]:
        """Every item that mints a link: new ones and replacements, in plan order."""
        return tuple(item for item in self.items if item.action in (PlanAction.MINT, PlanAction.REPLACE))

    @property
    def totals(self) -> PlanTotals:
        to_mint, to_replace, to_change = self.to_mint, self.to_replace, self.to_change
        actions = Counter(item.action for item in self.items)
        needs_price = {_tier_key(i) for i in to_change if i.price_source is not PriceSource.EXISTING}
        needs_tier = {_tier_key(i) for i in to_change if i.price_source is PriceSource.NEW_TIER}
        return PlanTotals(
            links_to_mint=len(to_mint),
            amount_to_mint_cents=sum(item.amount_cents for item in to_mint),
            currency=to_change[0].currency if to_change else self.currency,
            prices_to_create=len(needs_price),
            tiers_to_create=len(needs_tier),
            already_linked=actions[PlanAction.ALREADY_LINKED],
            already_paid=actions[PlanAction.ALREADY_PAID],
            waiting=actions[PlanAction.WAITING],
            blocked=actions[PlanAction.BLOCKED],
            players=self.signed_players,
            links_to_replace=len(to_replace),
            replaced_from_cents=sum(item.replaced_amount_cents or 0 for item in to_replace),
            replaced_to_cents=sum(item.amount_cents for item in to_replace),
            links_to_switch_off=len(self.pending_switch_offs),
            family_links_to_create=self.family_links_to_create,
            family_links_to_replace=self.family_links_to_replace,
        )

    @property
    def has_work(self) -> bool:
        """Whether committing would ask Stripe for anything: links to mint or replace, old ones to switch off."""
        return bool(self.to_change or self.pending_switch_offs)


def plan_backfill(session: Session, user: ActingUser) -> BackfillPlan:
    """The links the league's signed players are owed and do not have yet (reads only).

    Runs a constant number of queries whatever the size of the league.
    """
    require(user, Permission.MINT_LINKS)
    tenant = session.get(Tenant, user.tenant_id)
    if tenant is None:
        raise PermissionDenied("Your league no longer exists.")
    players = session.execute(
        select(Player, Parent)
        .join(Parent, Parent.id == Player.parent_id)
        .where(Player.tenant_id == user.tenant_id, Player.status == PlayerStatus.SIGNED)
        .order_by(Parent.name, Player.last_name, Player.first_name, Player.id)
    ).all()
    products = {
        product.id: product
        for product in session.scalars(
            select(Product)
            .where(Product.tenant_id == user.tenant_id)
            .options(selectinload(Product.price_tiers))
            .order_by(Product.name, Product.id)
        )
    }
    links = _LinkIndex(
        _LinkRow._make(row)
        for row in session.execute(
            select(PaymentLink.id, PaymentLink.player_id, PaymentLink.product_id, PaymentLink.order_id,
                   PaymentLink.status, PaymentLink.amount_cents, PaymentLink.currency, PaymentLink.processing,
                   PaymentLink.price_tier_id, PaymentLink.created_at)
            .where(PaymentLink.tenant_id == user.tenant_id)
            .order_by(PaymentLink.id)
        )
    )
    orders: dict[int, list[Order]] = defaultdict(list)
    for order in session.scalars(
        select(Order)
        .where(Order.tenant_id == user.tenant_id, Order.status == OrderStatus.PENDING)
        .order_by(Order.created_at, Order.id)
    ):
        orders[order.player_id].append(order)

    required = [p for p in products.values() if p.required and p.active]
    items: list[BackfillItem] = []
    for player, parent in players:
        planner = _PlayerPlanner(tenant, player, parent, links)
        ordered_products = {order.product_id for order in orders[player.id]}
        for product in required:
            if product.id not in ordered_products:
                items.append(planner.required_item(product))
        for order in orders[player.id]:
            if order.product_id in products:
                items.append(planner.order_item(products[order.product_id], order))
    followed = follow_the_ledger(session, user, items, products)
    to_create, to_replace = forecast_family_links(session, user, followed)
    return BackfillPlan(
        tenant_id=tenant.id, tenant_slug=tenant.slug, league_key=tenant.league_key,
        items=followed,
        currency=tenant.currency,
        signed_players=len(players),
        pending_switch_offs=links_awaiting_switch_off(session, user),
        family_links_to_create=to_create,
        family_links_to_replace=to_replace,
    )


def bills(item: BackfillItem) -> bool:
    """Whether the backfill bills ``item`` before minting (``core.backfill.billing``), if it has no charge yet."""
    if item.amount_cents <= 0:
        return False
    if item.action in (PlanAction.MINT, PlanAction.ALREADY_LINKED):
        return True
    return item.action is PlanAction.WAITING and item.order_id is not None  # an order is owed before its link


def forecast_family_links(session: Session, user: ActingUser, items: Iterable[BackfillItem]) -> tuple[int, int]:
    """(to create, to replace): the families' balance links the commit would mint once it has
    billed ``items`` and minted their links (``core.payments.family_links``, ``mint_missing``).

    Each family's balance after the commit: what it owes now, plus what is billed for the first
    time, less the credit that settles it, plus the difference a price change bills again.
    A family that would owe something gets a link if it has none, a new one if its link is for
    another amount. Reads only."""
    charges = league_charges(session, user)
    after = {b.parent_id: b.total_cents for b in outstanding_balances(session, user)}
    billed: dict[int, int] = defaultdict(int)
    repriced: dict[int, int] = defaultdict(int)
    for item in items:
        charge = charges.get(charge_key_for(player_id=item.player_id, product_id=item.product_id,
                                            order_id=item.order_id))
        if charge is None and bills(item):
            billed[item.parent_id] += item.amount_cents
        elif (item.action is PlanAction.REPLACE and charge is not None and charge.untouched
              and item.reserved_link_id is None):
            repriced[item.parent_id] += item.amount_cents - charge.amount_cents
    credit = families_with_credit(session, user)
    for parent_id, cents in billed.items():
        after[parent_id] = after.get(parent_id, 0) + max(0, cents - credit.get(parent_id, 0))
    for parent_id, cents in repriced.items():
        after[parent_id] = after.get(parent_id, 0) + cents
    active = {row.parent_id: row.amount_cents for row in session.execute(
        select(FamilyLink.parent_id, FamilyLink.amount_cents).where(
            FamilyLink.tenant_id == user.tenant_id, FamilyLink.status == LinkStatus.ACTIVE))}
    owing = {parent_id: cents for parent_id, cents in after.items() if cents > 0}
    to_create = sum(1 for parent_id in owing if parent_id not in active)
    to_replace = sum(1 for parent_id, cents in owing.items() if parent_id in active and active[parent_id] != cents)
    return to_create, to_replace


def follow_the_ledger(session: Session, user: ActingUser, items: Iterable[BackfillItem],
                      products: dict[int, Product]) -> tuple[BackfillItem, ...]:
    """The items as the ledger has them: links follow charges (one statement).

    A charge settled another way (cash, a waiver, credit) or reversed needs no link; one with a
    payment processing waits; one partly paid is linked at what is open, not at the price.
    Items whose charge is not billed yet, and reservations an interrupted run left, are as planned.
    """
    charges = league_charges(session, user)
    return tuple(
        _follow(item, charges.get(charge_key_for(player_id=item.player_id, product_id=item.product_id,
                                                 order_id=item.order_id)), products.get(item.product_id))
        for item in items
    )


def _follow(item: BackfillItem, charge: CurrentCharge | None, product: Product | None) -> BackfillItem:
    if charge is None or product is None or item.reserved_link_id is not None or item.action is PlanAction.BLOCKED:
        return item
    linking = item.action in (PlanAction.MINT, PlanAction.REPLACE, PlanAction.ALREADY_LINKED)
    if charge.charge_id is None:
        return replace(item, action=PlanAction.ALREADY_PAID, reason="not owed: its charge was reversed",
                       price_source=None, tier_id=None) if linking else item
    if charge.settled:
        return replace(item, action=PlanAction.ALREADY_PAID, reason="settled in the ledger",
                       price_source=None, tier_id=None) if linking else item
    if charge.processing_cents:
        return replace(item, action=PlanAction.WAITING, reason="a payment on it is processing",
                       price_source=None, tier_id=None) if item.action in (PlanAction.MINT, PlanAction.REPLACE) else item
    owed = charge.open_cents
    if item.action is PlanAction.REPLACE and not charge.untouched and item.replaced_amount_cents == owed:
        return replace(item, action=PlanAction.ALREADY_LINKED, price_source=None, tier_id=None,
                       reason=f"the price changed to {format_cents(item.amount_cents, item.currency)}, but the "
                              f"charge is partly paid: adjust it by hand")
    if item.action is PlanAction.REPLACE and charge.untouched:
        return item  # a price change: the charge is billed again at the new price
    if item.action in (PlanAction.MINT, PlanAction.ALREADY_PAID, PlanAction.REPLACE) and item.amount_cents != owed \
            or item.action is PlanAction.ALREADY_PAID:
        action = PlanAction.REPLACE if item.action is PlanAction.REPLACE else PlanAction.MINT
        return _at_amount(item, product, owed, action, f"{format_cents(owed, item.currency)} of it is open")
    if item.action is PlanAction.ALREADY_LINKED and item.amount_cents != owed:
        return replace(_at_amount(item, product, owed, PlanAction.REPLACE,
                                  f"{format_cents(owed, item.currency)} of it is open: a new link for that"),
                       replaced_amount_cents=item.amount_cents, replaced_currency=item.currency)
    return item


def _at_amount(item: BackfillItem, product: Product, amount: int, action: PlanAction, reason: str) -> BackfillItem:
    tier = next((t for t in product.price_tiers if (t.amount_cents, t.currency) == (amount, item.currency)), None)
    source = (PriceSource.NEW_TIER if tier is None
              else PriceSource.NEW_PRICE if tier.stripe_price_id is None else PriceSource.EXISTING)
    return replace(item, action=action, amount_cents=amount, reason=reason, price_source=source,
                   tier_id=tier.id if tier else None)


class _LinkRow(NamedTuple):
    id: int
    player_id: int
    product_id: int
    order_id: int | None
    status: LinkStatus
    amount_cents: int
    currency: str
    processing: bool
    price_tier_id: int
    created_at: datetime

    @property
    def amount(self) -> str:
        return format_cents(self.amount_cents, self.currency)


class _LinkIndex:
    """The league's existing links, indexed the ways the plan asks about them."""

    def __init__(self, rows: Iterable[_LinkRow]) -> None:
        self.active: dict[tuple[int, int], _LinkRow] = {}
        self.minting: dict[tuple[int, int], _LinkRow] = {}  # reservations an interrupted run left
        self.paid: dict[tuple[int, int], _LinkRow] = {}
        self.by_order: dict[int, _LinkRow] = {}
        for row in rows:
            pair = (row.player_id, row.product_id)
            if row.status is LinkStatus.ACTIVE:
                self.active[pair] = row
            elif row.status is LinkStatus.MINTING:
                self.minting[pair] = row
            elif row.status is LinkStatus.PAID:
                self.paid[pair] = row
            if row.order_id is not None and row.status is not LinkStatus.DEACTIVATED:
                self.by_order[row.order_id] = row


class _PlayerPlanner:
    """Decides each item of one player; remembers pairs already planned for this player."""

    def __init__(self, tenant: Tenant, player: Player, parent: Parent, links: _LinkIndex) -> None:
        self.tenant_id = tenant.id
        self.currency = tenant.currency
        self.zone_name = league_zone(tenant)
        self.player = player
        self.parent = parent
        self.links = links
        self.planned: dict[int, BackfillItem] = {}  # product id -> item to mint

    def required_item(self, product: Product) -> BackfillItem:
        pair = (self.player.id, product.id)
        tier = next((t for t in product.price_tiers if t.is_default), None)
        active = self.links.active.get(pair)
        reserved = self.links.minting.get(pair)
        if reserved is not None:
            return self._resume(product, reserved, replaces=active if _is_price_change(active, reserved) else None)
        if active is not None:
            if tier is not None and active.order_id is None and _price_differs(active, tier):
                new = format_cents(tier.amount_cents, tier.currency)
                if active.processing:
                    return self._existing(
                        product, active, PlanAction.WAITING,
                        f"price changed to {new}, but a payment on the {active.amount} link is processing: "
                        f"it is replaced only if that payment fails",
                    )
                return self._to_mint(product, tier.amount_cents, tier.currency, tier, order_id=None, replaces=active)
            return self._existing(product, active, PlanAction.ALREADY_LINKED, "has an active link")
        if pair in self.links.paid:
            return self._existing(product, self.links.paid[pair], PlanAction.ALREADY_PAID, "already paid")
        if tier is None:
            return self._item(product, 0, self.currency, PlanAction.BLOCKED,
                              f"{product.name} has no default price: set one, then run the backfill again")
        return self._to_mint(product, tier.amount_cents, tier.currency, tier, order_id=None)

    def order_item(self, product: Product, order: Order) -> BackfillItem:
        pair = (self.player.id, product.id)
        # The treasurer knows an order by its reference in the registration system.
        label = f"order {order.external_ref}" if order.external_ref else f"order #{order.id}"
        if order.id in self.links.by_order:
            row = self.links.by_order[order.id]
            if row.status is LinkStatus.MINTING:
                return self._resume(product, row, replaces=None)
            action = PlanAction.ALREADY_LINKED if row.status is LinkStatus.ACTIVE else PlanAction.ALREADY_PAID
            return self._existing(product, row, action, f"{label} is linked", order_id=order.id)
        if pair in self.links.active:
            row = self.links.active[pair]
            return self._item(
                product, order.amount_cents, order.currency, PlanAction.WAITING,
                f"{label} waits: an active {product.name} link "
                f"({row.amount}) must be paid or deactivated first",
                order_id=order.id, existing_link_id=row.id,
            )
        if pair in self.links.minting:
            return self._item(
                product, order.amount_cents, order.currency, PlanAction.WAITING,
                f"{label} waits: another {product.name} link is being minted",
                order_id=order.id,
            )
        if product.id in self.planned:
            first = self.planned[product.id]
            return self._item(
                product, order.amount_cents, order.currency, PlanAction.WAITING,
                f"{label} waits for order #{first.order_id}: one active link per player and product",
                order_id=order.id,
            )
        tier = next(
            (t for t in product.price_tiers
             if t.amount_cents == order.amount_cents and t.currency == order.currency),
            None,
        )
        return self._to_mint(product, order.amount_cents, order.currency, tier, order_id=order.id,
                             order_label=label)

    def _resume(self, product: Product, reserved: _LinkRow, *, replaces: _LinkRow | None) -> BackfillItem:
        """Finish a row an interrupted run reserved, at the amount it was reserved for."""
        reason = ("finishes the link an interrupted run started at "
                  f"{format_local(reserved.created_at, self.zone_name)}")
        if replaces is not None:
            reason += f"; price changed: {replaces.amount} → {reserved.amount}, the old link is then deactivated"
        item = self._item(
            product, reserved.amount_cents, reserved.currency,
            PlanAction.REPLACE if replaces is not None else PlanAction.MINT, reason,
            order_id=reserved.order_id, price_source=PriceSource.EXISTING, tier_id=reserved.price_tier_id,
            existing_link_id=replaces.id if replaces is not None else None,
            reserved=reserved, replaces=replaces,
        )
        self.planned[product.id] = item
        return item

    def _to_mint(self, product: Product, amount: int, currency: str, tier: PriceTier | None, *,
                 order_id: int | None, replaces: _LinkRow | None = None,
                 order_label: str | None = None) -> BackfillItem:
        if tier is None:
            source, reason = PriceSource.NEW_TIER, f"a new price of {format_cents(amount, currency)}, created in Stripe"
        elif tier.stripe_price_id is None:
            source, reason = PriceSource.NEW_PRICE, "its price is created in Stripe"
        else:
            source, reason = PriceSource.EXISTING, "price exists"
        if replaces is not None:
            what = (f"price changed: {replaces.amount} → {format_cents(amount, currency)}, "
                    f"the old link is deactivated once the new one is made")
        elif order_id is not None:
            what = order_label or f"order #{order_id}"
        else:
            what = "monthly dues" if product.kind is ProductKind.MONTHLY else "required"
        item = self._item(
            product, amount, currency, PlanAction.REPLACE if replaces is not None else PlanAction.MINT,
            f"{what}; {reason}", order_id=order_id, price_source=source, tier_id=tier.id if tier else None,
            existing_link_id=replaces.id if replaces is not None else None, replaces=replaces,
        )
        self.planned[product.id] = item
        return item

    def _existing(self, product: Product, row: _LinkRow, action: PlanAction, reason: str, *,
                  order_id: int | None = None) -> BackfillItem:
        return self._item(product, row.amount_cents, row.currency, action, reason, order_id=order_id,
                          existing_link_id=row.id)

    def _item(self, product: Product, amount: int, currency: str, action: PlanAction, reason: str, *,
              order_id: int | None = None, price_source: PriceSource | None = None,
              tier_id: int | None = None, existing_link_id: int | None = None,
              reserved: _LinkRow | None = None, replaces: _LinkRow | None = None) -> BackfillItem:
        key = f"t{self.tenant_id}-pl{self.player.id}-pr{product.id}" + (f"-o{order_id}" if order_id else "")
        return BackfillItem(
            key=key,
            player_id=self.player.id,
            player_name=self.player.full_name,
            parent_id=self.parent.id,
            parent_name=self.parent.name,
            product_id=product.id,
            product_name=product.name,
            product_kind=product.kind,
            amount_cents=amount,
            currency=currency,
            action=action,
            reason=reason,
            price_source=price_source,
            tier_id=tier_id,
            order_id=order_id,
            existing_link_id=existing_link_id,
            reserved_link_id=reserved.id if reserved is not None else None,
            reserved_at=reserved.created_at if reserved is not None else None,
            replaced_amount_cents=replaces.amount_cents if replaces is not None else None,
            replaced_currency=replaces.currency if replaces is not None else None,
        )


def _price_differs(link: _LinkRow, tier: PriceTier) -> bool:
    return (link.amount_cents, link.currency) != (tier.amount_cents, tier.currency)


def _is_price_change(active: _LinkRow | None, reserved: _LinkRow) -> bool:
    """A reservation next to an active link of the pair is that link's replacement.

    (Only a price change reserves a row while the pair's link is active; anything else is a
    leftover of a race, finished and then switched off because the pair is linked.)
    """
    return (
        active is not None
        and active.order_id is None
        and reserved.order_id is None
        and (active.amount_cents, active.currency) != (reserved.amount_cents, reserved.currency)
    )


def _tier_key(item: BackfillItem) -> _TierKey:
    return (item.product_id, item.amount_cents, item.currency)
