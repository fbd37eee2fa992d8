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
"""

from __future__ import annotations

import enum
import logging
from collections import Counter, defaultdict
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable, Hashable, Iterable, NamedTuple, Optional, Sequence, TypeVar

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from core.access import ActingUser, Permission, require
from core.audit import record_action
from core.errors import PaymentProviderError, PermissionDenied
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
    Tenant,
    utcnow,
)
from core.money import format_cents
from core.payment_gateway import MintedLink, PaymentGateway, PaymentLinkRequest

log = logging.getLogger(__name__)

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)

DEFAULT_CONCURRENCY = 8  # requests in flight; the gateway paces them under Stripe's limit
# Stripe keeps an idempotency key for at least 24 hours; an hour's margin on top.
IDEMPOTENCY_KEY_MEMORY = timedelta(hours=23)
RESERVATION_BATCH = 500  # reservations written per commit

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
    price_source: Optional[PriceSource] = None
    tier_id: Optional[int] = None
    order_id: Optional[int] = None
    existing_link_id: Optional[int] = None
    reserved_link_id: Optional[int] = None
    reserved_at: Optional[datetime] = None
    replaced_amount_cents: Optional[int] = None
    replaced_currency: Optional[str] = None

    @property
    def link_exists(self) -> bool:
        return self.existing_link_id is not None

    @property
    def replaces_link_id(self) -> Optional[int]:
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


def link_idempotency_key(tenant_id: int, link_id: int) -> str:
    """The key of the Stripe request minting the link reserved as row ``link_id``.

    One row, one key: a rerun that finishes the row replays the request, and a new link for
    the same player and product (after a payment or a price change) is a new row, so Stripe
    never answers it with the old link.
    """
    return f"backfill-link:t{tenant_id}:l{link_id}"


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


@dataclass(frozen=True)
class BackfillPlan:
    """What a backfill would do in one league. Built by ``plan_backfill``; changes nothing."""

    tenant_id: int
    tenant_slug: str
    items: tuple[BackfillItem, ...]
    signed_players: int = 0
    pending_switch_offs: tuple[PendingSwitchOff, ...] = ()

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
            currency=to_change[0].currency if to_change else "usd",
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
        )

    @property
    def has_work(self) -> bool:
        """Whether committing would ask Stripe for anything: links to mint or replace, old ones to switch off."""
        return bool(self.to_change or self.pending_switch_offs)


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
    link_id: Optional[int] = None
    url: Optional[str] = None


@dataclass(frozen=True)
class PendingSwitchOff:
    """A link deactivated here (replaced at a new price, or minted and not used) that Stripe
    has not switched off yet: its row is marked ``stripe_deactivation_pending``."""

    link_id: int
    stripe_payment_link_id: str
    player_name: str
    parent_name: str
    product_name: str


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
        return not self.failed and not self.old_links_still_active

    def summary(self) -> str:
        text = (
            f"{len(self.minted)} minted, {len(self.replaced)} replaced at a new price, "
            f"{len(self.reused)} already minted by another run, "
            f"{len(self.skipped)} skipped, {len(self.failed)} failed; "
            f"{self.prices_created} Stripe prices created"
        )
        if self.switched_off_again:
            text += f"; {self.switched_off_again} old links of an earlier run switched off in Stripe"
        if self.old_links_still_active:
            text += f"; {len(self.old_links_still_active)} old links still active in Stripe"
        return text


ProgressCallback = Callable[[int, int, ItemOutcome], None]


# -- the plan -----------------------------------------------------------------------------------


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
        _LinkRow(*row)
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
        planner = _PlayerPlanner(tenant.id, player, parent, links)
        ordered_products = {order.product_id for order in orders[player.id]}
        for product in required:
            if product.id not in ordered_products:
                items.append(planner.required_item(product))
        for order in orders[player.id]:
            if order.product_id in products:
                items.append(planner.order_item(products[order.product_id], order))
    return BackfillPlan(
        tenant_id=tenant.id, tenant_slug=tenant.slug, items=tuple(items), signed_players=len(players),
        pending_switch_offs=_pending_switch_offs(session, tenant.id),
    )


def _pending_switch_offs(session: Session, tenant_id: int) -> tuple[PendingSwitchOff, ...]:
    """The league's links deactivated here that Stripe has not switched off yet (one query)."""
    rows = session.execute(
        select(PaymentLink.id, PaymentLink.stripe_payment_link_id, Player.first_name, Player.last_name,
               Parent.name, Product.name)
        .join(Player, Player.id == PaymentLink.player_id)
        .join(Parent, Parent.id == Player.parent_id)
        .join(Product, Product.id == PaymentLink.product_id)
        .where(PaymentLink.tenant_id == tenant_id, PaymentLink.stripe_deactivation_pending.is_(True),
               PaymentLink.stripe_payment_link_id.is_not(None))
        .order_by(PaymentLink.id)
    ).all()
    return tuple(
        PendingSwitchOff(link_id, stripe_id, f"{first} {last}", parent_name, product_name)
        for link_id, stripe_id, first, last, parent_name, product_name in rows
    )


class _LinkRow(NamedTuple):
    id: int
    player_id: int
    product_id: int
    order_id: Optional[int]
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

    def __init__(self, tenant_id: int, player: Player, parent: Parent, links: _LinkIndex) -> None:
        self.tenant_id = tenant_id
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
            return self._item(product, 0, "usd", PlanAction.BLOCKED,
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

    def _resume(self, product: Product, reserved: _LinkRow, *, replaces: Optional[_LinkRow]) -> BackfillItem:
        """Finish a row an interrupted run reserved, at the amount it was reserved for."""
        reason = f"finishes the link an interrupted run reserved at {reserved.created_at:%Y-%m-%d %H:%M} UTC"
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

    def _to_mint(self, product: Product, amount: int, currency: str, tier: Optional[PriceTier], *,
                 order_id: Optional[int], replaces: Optional[_LinkRow] = None,
                 order_label: Optional[str] = None) -> BackfillItem:
        if tier is None:
            source, reason = PriceSource.NEW_TIER, f"new price tier at {format_cents(amount, currency)}"
        elif tier.stripe_price_id is None:
            source, reason = PriceSource.NEW_PRICE, "the tier gets its Stripe price"
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
                  order_id: Optional[int] = None) -> BackfillItem:
        return self._item(product, row.amount_cents, row.currency, action, reason, order_id=order_id,
                          existing_link_id=row.id)

    def _item(self, product: Product, amount: int, currency: str, action: PlanAction, reason: str, *,
              order_id: Optional[int] = None, price_source: Optional[PriceSource] = None,
              tier_id: Optional[int] = None, existing_link_id: Optional[int] = None,
              reserved: Optional[_LinkRow] = None, replaces: Optional[_LinkRow] = None) -> BackfillItem:
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


def _is_price_change(active: Optional[_LinkRow], reserved: _LinkRow) -> bool:
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


# -- commit -------------------------------------------------------------------------------------


def commit_backfill(
    session: Session,
    user: ActingUser,
    gateway: PaymentGateway,
    plan: BackfillPlan,
    *,
    progress: Optional[ProgressCallback] = None,
    success_url: Optional[str] = None,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> BackfillResult:
    """Mint the plan's links through Stripe. **Commits the session as it goes.**

    Missing price tiers and Stripe Prices are created (and committed) first. Then every
    link's row is reserved (``minting``) and committed before Stripe is asked, and each is
    completed and committed as soon as Stripe returns its link; a replacement deactivates
    the old row in the same transaction, and then the old link is switched off in Stripe
    (a failure there is in ``old_links_still_active``, and makes the result not ``ok``).
    Old links an earlier run could not switch off are tried again first. A crash therefore
    leaves reservations, which the next run finishes without a second Stripe link, and old
    links marked for switching off, which the next run switches off (see the module docstring). If another backfill
    records the same pair first, this run reuses the winner's link and switches its own
    off. One failing item is recorded with its reason and the others go on; when Stripe
    refused an item outright, its reservation is removed so the next run starts afresh.
    ``progress(done, total, outcome)`` is called after each item, in the caller's thread. An
    audit entry is committed at the end.
    """
    require(user, Permission.MINT_LINKS)
    if plan.tenant_id != user.tenant_id:
        raise PermissionDenied("This plan belongs to another league.")
    if success_url is None:
        from core.settings import load_settings

        success_url = load_settings().payment_success_url
    run = _CommitRun(session, user, gateway, plan, progress, success_url, concurrency)
    result = run.execute()
    record_action(
        session, user, "backfill.commit", f"Payment link backfill: {result.summary()}",
        details={
            "minted": len(result.minted),
            "replaced": len(result.replaced),
            "reused": len(result.reused),
            "skipped": len(result.skipped),
            "resumed": result.resumed,
            "failed": [{"item": o.item.key, "reason": o.reason} for o in result.failed],
            "switched_off_again": result.switched_off_again,
            "old_links_still_active_in_stripe": [
                {"link_id": o.link_id, "stripe_payment_link_id": o.stripe_payment_link_id,
                 "player": o.link.player_name, "product": o.link.product_name, "reason": o.reason}
                for o in result.old_links_still_active
            ],
            "prices_created": result.prices_created,
            "tiers_created": result.tiers_created,
        },
    )
    session.commit()
    return result


@dataclass(frozen=True)
class _Price:
    tier_id: int
    stripe_price_id: Optional[str]


@dataclass(frozen=True)
class _Job:
    """One reserved row to complete with a Stripe link."""

    item: BackfillItem
    price: _Price
    link_id: int
    reserved_at: datetime
    resumed: bool


class _CommitRun:
    def __init__(self, session: Session, user: ActingUser, gateway: PaymentGateway, plan: BackfillPlan,
                 progress: Optional[ProgressCallback], success_url: str, concurrency: int) -> None:
        self.session = session
        self.user = user
        self.gateway = gateway
        self.plan = plan
        self.progress = progress
        self.success_url = success_url
        self.concurrency = max(1, concurrency)
        self.result = BackfillResult()
        self.total = len(plan.items)
        self.switch_offs: list[tuple[PendingSwitchOff, bool, Future[MintedLink]]] = []
        self.switch_off_pool: Optional[ThreadPoolExecutor] = None

    def execute(self) -> BackfillResult:
        for item in self.plan.items:
            if item.action in (PlanAction.MINT, PlanAction.REPLACE):
                continue
            if item.action is PlanAction.BLOCKED:
                self._done(ItemOutcome(item, ItemStatus.FAILED, item.reason))
            else:
                self._done(ItemOutcome(item, ItemStatus.SKIPPED, item.reason, link_id=item.existing_link_id))
        work = self._still_needed(self.plan.to_change)
        prices = self._prices_for(work)
        ready = []
        for item in work:
            price = prices.get(_tier_key(item))
            if isinstance(price, str):
                self._done(ItemOutcome(item, ItemStatus.FAILED, price))
            else:
                ready.append((item, price))
        # Old links an earlier run left on in Stripe go first; replaced links are switched off
        # as soon as each replacement is recorded, alongside the minting. Leaving the block
        # waits for the last of them.
        earlier = _pending_switch_offs(self.session, self.user.tenant_id)
        self.session.commit()
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="stripe-switch-off") as pool:
            self.switch_off_pool = pool
            for old in earlier:
                self._switch_off(old, again=True)
            self._mint(self._reserve(ready))
        self._report_switch_offs()
        return self.result

    # items whose pair changed since the plan was made

    def _still_needed(self, items: Sequence[BackfillItem]) -> list[BackfillItem]:
        rows = self.session.execute(
            select(PaymentLink.id, PaymentLink.player_id, PaymentLink.product_id, PaymentLink.status,
                   PaymentLink.processing).where(
                PaymentLink.tenant_id == self.user.tenant_id,
                PaymentLink.status.in_([LinkStatus.ACTIVE, LinkStatus.MINTING]),
            )
        ).all()
        self.session.commit()  # end the read, so no snapshot is held while Stripe is asked
        active = {(r.player_id, r.product_id): r for r in rows if r.status is LinkStatus.ACTIVE}
        minting = {(r.player_id, r.product_id): r.id for r in rows if r.status is LinkStatus.MINTING}
        reserved = set(minting.values())
        fresh = []
        for item in items:
            pair = (item.player_id, item.product_id)
            current = active.get(pair)
            skip: Optional[str] = None
            if item.reserved_link_id is not None:
                if item.reserved_link_id not in reserved:
                    skip = "finished since the plan was made"
            elif pair in minting:
                skip = "another backfill is minting this link"
            elif item.action is PlanAction.REPLACE:
                if current is None or current.id != item.existing_link_id:
                    skip = "the link to replace changed since the plan was made"
                elif current.processing:
                    skip = "a payment on the link to replace is processing"
            elif current is not None:
                skip = "linked since the plan was made"
            if skip is None:
                fresh.append(item)
            else:
                link_id = minting.get(pair) or (current.id if current is not None else None)
                self._done(ItemOutcome(item, ItemStatus.SKIPPED, skip, link_id=link_id))
        return fresh

    # price tiers and Stripe Prices

    def _prices_for(self, items: Sequence[BackfillItem]) -> dict[_TierKey, "_Price | str"]:
        """(product, amount, currency) -> the tier and its Stripe price id, or why there is none."""
        first_item: dict[_TierKey, BackfillItem] = {}
        for item in items:
            first_item.setdefault(_tier_key(item), item)
        tier_ids = {key: item.tier_id or self._find_or_create_tier(item) for key, item in first_item.items()}
        stored = dict(
            self.session.execute(
                select(PriceTier.id, PriceTier.stripe_price_id).where(PriceTier.id.in_(list(tier_ids.values())))
            ).all()
        )
        self.session.commit()
        prices: dict[_TierKey, _Price | str] = {
            key: _Price(tier_id, stored[tier_id]) for key, tier_id in tier_ids.items() if stored.get(tier_id)
        }

        def record(key: _TierKey, price_id: Optional[str], error: Optional[PaymentProviderError]) -> None:
            if error is not None:
                prices[key] = f"could not create the Stripe price: {error}"
            else:
                assert price_id is not None
                prices[key] = _Price(tier_ids[key], self._store_price(tier_ids[key], price_id))

        missing = [key for key in tier_ids if key not in prices]
        tasks = [(key, self._price_task(first_item[key], tier_ids[key])) for key in missing]
        _run_concurrently(tasks, concurrency=self.concurrency, on_done=record)
        return prices

    def _price_task(self, item: BackfillItem, tier_id: int) -> Callable[[], str]:
        metadata = {
            "tenant": self.plan.tenant_slug,
            "tenant_id": str(self.plan.tenant_id),
            "product_id": str(item.product_id),
            "price_tier_id": str(tier_id),
        }
        key = f"backfill-price:t{self.plan.tenant_id}:pr{item.product_id}:{item.currency}{item.amount_cents}"
        return lambda: self.gateway.create_price(
            amount_cents=item.amount_cents, currency=item.currency, product_name=item.product_name,
            metadata=metadata, idempotency_key=key,
        )

    def _find_or_create_tier(self, item: BackfillItem) -> int:
        def find() -> Optional[int]:
            return self.session.scalars(
                select(PriceTier.id).where(
                    PriceTier.product_id == item.product_id,
                    PriceTier.amount_cents == item.amount_cents,
                    PriceTier.currency == item.currency,
                )
            ).first()

        existing = find()
        if existing is not None:
            return existing
        tier = PriceTier(product_id=item.product_id, amount_cents=item.amount_cents,
                         currency=item.currency, is_default=False)
        self.session.add(tier)
        try:
            self.session.commit()
        except IntegrityError:  # another backfill made the same tier first
            self.session.rollback()
            winner = find()
            if winner is None:
                raise
            return winner
        self.result.tiers_created += 1
        return tier.id

    def _store_price(self, tier_id: int, price_id: str) -> str:
        updated = self.session.execute(
            update(PriceTier)
            .where(PriceTier.id == tier_id, PriceTier.stripe_price_id.is_(None))
            .values(stripe_price_id=price_id)
            .execution_options(synchronize_session=False)
        )
        self.session.commit()
        if updated.rowcount:  # type: ignore[attr-defined]
            self.result.prices_created += 1
            return price_id
        stored = self.session.scalars(select(PriceTier.stripe_price_id).where(PriceTier.id == tier_id)).one()
        self.session.commit()
        return stored or price_id

    # reservations: the rows exist, and are committed, before Stripe is asked

    def _reserve(self, ready: Sequence[tuple[BackfillItem, _Price]]) -> list[_Job]:
        jobs = []
        fresh = []
        for item, price in ready:
            if item.reserved_link_id is not None:
                assert item.reserved_at is not None
                jobs.append(_Job(item, price, item.reserved_link_id, item.reserved_at, resumed=True))
                self.result.resumed += 1
            else:
                fresh.append((item, price))
        reserved: list[_Job] = []
        for start in range(0, len(fresh), RESERVATION_BATCH):
            reserved.extend(self._reserve_batch(fresh[start:start + RESERVATION_BATCH]))
        return jobs + self._without_pairs_linked_meanwhile(reserved)

    def _without_pairs_linked_meanwhile(self, jobs: Sequence[_Job]) -> list[_Job]:
        """Drop new reservations whose pair got an active link between the check and the insert.

        The one-reservation index stops two runs reserving a pair at once, but not a run
        reserving a pair another run has just finished. Checked after the commit, this is
        exact: a reservation could only be inserted once the other run's row had stopped
        being ``minting``, that is once its activation was committed, so it is visible now.
        Nothing was asked of Stripe for these rows yet, so they are simply removed.
        """
        if not jobs:
            return []
        active = {
            (player_id, product_id): link_id
            for player_id, product_id, link_id in self.session.execute(
                select(PaymentLink.player_id, PaymentLink.product_id, PaymentLink.id).where(
                    PaymentLink.tenant_id == self.plan.tenant_id, PaymentLink.status == LinkStatus.ACTIVE
                )
            )
        }
        kept, dropped = [], []
        for job in jobs:
            current = active.get((job.item.player_id, job.item.product_id))
            if current == job.item.replaces_link_id:
                kept.append(job)
            else:
                reason = ("the link to replace changed since the plan was made" if job.item.replaces_link_id
                          else "linked since the plan was made")
                dropped.append(job.link_id)
                self._done(ItemOutcome(job.item, ItemStatus.SKIPPED, reason, link_id=current))
        if dropped:
            self.session.execute(
                delete(PaymentLink).where(PaymentLink.id.in_(dropped), PaymentLink.status == LinkStatus.MINTING)
            )
        self.session.commit()
        return kept

    def _reserve_batch(self, batch: Sequence[tuple[BackfillItem, _Price]]) -> list[_Job]:
        now = utcnow()
        rows = [self._reservation(item, price, now) for item, price in batch]
        self.session.add_all(rows)
        try:
            self.session.flush()
            ids = [row.id for row in rows]
            self.session.commit()
        except IntegrityError:  # another backfill reserved some of these pairs: one by one
            self.session.rollback()
            return [job for item, price in batch if (job := self._reserve_one(item, price)) is not None]
        return [_Job(item, price, link_id, now, resumed=False) for (item, price), link_id in zip(batch, ids)]

    def _reserve_one(self, item: BackfillItem, price: _Price) -> Optional[_Job]:
        now = utcnow()
        row = self._reservation(item, price, now)
        self.session.add(row)
        try:
            self.session.flush()
            link_id = row.id
            self.session.commit()
        except IntegrityError as exc:
            self.session.rollback()
            # The other run may already have finished its link by now: minting or active, the
            # pair is taken care of, and this run leaves it alone.
            taken = self.session.execute(
                select(PaymentLink.id, PaymentLink.status).where(
                    PaymentLink.tenant_id == self.plan.tenant_id,
                    PaymentLink.player_id == item.player_id,
                    PaymentLink.product_id == item.product_id,
                    PaymentLink.status.in_([LinkStatus.MINTING, LinkStatus.ACTIVE]),
                ).order_by(PaymentLink.id.desc())
            ).first()
            self.session.commit()
            if taken is not None and item.replaces_link_id != taken.id:
                reason = ("another backfill is minting this link" if taken.status is LinkStatus.MINTING
                          else "another backfill minted this link meanwhile")
                self._done(ItemOutcome(item, ItemStatus.SKIPPED, reason, link_id=taken.id))
            else:
                self._done(ItemOutcome(item, ItemStatus.FAILED, f"the database refused the link: {_reason(exc)}"))
            return None
        return _Job(item, price, link_id, now, resumed=False)

    def _reservation(self, item: BackfillItem, price: _Price, now: datetime) -> PaymentLink:
        return PaymentLink(
            tenant_id=self.plan.tenant_id,
            player_id=item.player_id,
            product_id=item.product_id,
            price_tier_id=price.tier_id,
            order_id=item.order_id,
            amount_cents=item.amount_cents,
            currency=item.currency,
            status=LinkStatus.MINTING,
            created_at=now,
        )

    # links

    def _mint(self, jobs: Sequence[_Job]) -> None:
        cutoff = utcnow() - IDEMPOTENCY_KEY_MEMORY
        old = [job for job in jobs if job.reserved_at <= cutoff]
        found, unknown = self._look_up_at_stripe(old) if old else ({}, set())
        to_create = []
        for job in jobs:
            if job.link_id in found:
                self._done(self._complete(job, found[job.link_id]))
            elif job.link_id not in unknown:
                to_create.append(job)
        by_id = {job.link_id: job for job in to_create}

        def record(link_id: int, minted: Optional[MintedLink], error: Optional[PaymentProviderError]) -> None:
            job = by_id[link_id]
            if error is not None:
                self._done(self._not_minted(job, error))
            else:
                assert minted is not None
                self._done(self._complete(job, minted))

        tasks = [(job.link_id, self._link_task(job)) for job in to_create]
        _run_concurrently(tasks, concurrency=self.concurrency, on_done=record)

    def _look_up_at_stripe(self, jobs: Sequence[_Job]) -> tuple[dict[int, MintedLink], set[int]]:
        """Reservations older than Stripe's memory of their key: the link each made, if any.

        Returns the links found by ``link_id`` metadata, and the reservations that could not
        be looked up (they are reported failed and keep their row; minting them blind could
        make a second link).
        """
        wanted = {str(job.link_id): job.link_id for job in jobs}
        found: dict[int, MintedLink] = {}
        try:
            for link in self.gateway.list_payment_links(active=True):
                metadata = link.metadata
                if metadata.get("tenant_id") == str(self.plan.tenant_id) and metadata.get("link_id") in wanted:
                    found.setdefault(wanted[metadata["link_id"]], link)
                    if len(found) == len(wanted):
                        break
        except PaymentProviderError as exc:
            unknown = {job.link_id for job in jobs if job.link_id not in found}
            for job in jobs:
                if job.link_id in unknown:
                    self._done(ItemOutcome(
                        job.item, ItemStatus.FAILED,
                        f"could not look for the link an interrupted run may have made: {exc}",
                        link_id=job.link_id,
                    ))
            return found, unknown
        return found, set()

    def _link_task(self, job: _Job) -> Callable[[], MintedLink]:
        assert job.price.stripe_price_id is not None
        item = job.item
        metadata = {
            "tenant": self.plan.tenant_slug,
            "tenant_id": str(self.plan.tenant_id),
            "player_id": str(item.player_id),
            "product_id": str(item.product_id),
            "link_id": str(job.link_id),
            "link_key": item.key,
        }
        if item.order_id is not None:
            metadata["order_id"] = str(item.order_id)
        request = PaymentLinkRequest(
            price_id=job.price.stripe_price_id,
            success_url=self.success_url,
            metadata=metadata,
            single_payment=item.product_kind is ProductKind.ONE_TIME,
            save_payment_method=item.product_kind is ProductKind.MONTHLY,
        )
        key = link_idempotency_key(self.plan.tenant_id, job.link_id)
        return lambda: self.gateway.create_payment_link(request, idempotency_key=key)

    def _complete(self, job: _Job, minted: MintedLink) -> ItemOutcome:
        """Record Stripe's link on the reserved row and make it active (one transaction).

        A replacement deactivates the old row first, in the same transaction, so the
        one-active-link index holds at every statement.
        """
        item = job.item
        link = self._locked(job.link_id)
        if link is None or link.status is not LinkStatus.MINTING:
            self.session.commit()
            return self._finished_elsewhere(job, link, minted)
        link.stripe_payment_link_id = minted.id
        link.url = minted.url
        retirement: Optional[PendingSwitchOff] = None
        replaced_id = item.replaces_link_id
        try:
            if replaced_id is not None:
                old = self._locked(replaced_id)
                if old is None or old.status is not LinkStatus.ACTIVE or old.processing:
                    self._set_aside(link)
                    self.session.commit()
                    self._switch_off_orphan(minted, link_id=link.id)
                    return ItemOutcome(
                        item, ItemStatus.SKIPPED,
                        "the link to replace was paid, is being paid or was deactivated meanwhile; "
                        "the new link was switched off",
                        link_id=replaced_id,
                    )
                old.status = LinkStatus.DEACTIVATED
                old.deactivated_at = utcnow()
                old.stripe_deactivation_pending = True  # cleared once Stripe has switched it off
                self.session.flush()  # the old row leaves the one-active-link index before the new one enters
                assert old.stripe_payment_link_id is not None
                retirement = PendingSwitchOff(old.id, old.stripe_payment_link_id, item.player_name,
                                              item.parent_name, item.product_name)
            link.status = LinkStatus.ACTIVE
            self.session.commit()
        except IntegrityError as exc:
            self.session.rollback()
            return self._lost_the_pair(job, minted, exc)
        if retirement is not None:
            self._switch_off(retirement)
            return ItemOutcome(item, ItemStatus.REPLACED, link_id=link.id, url=link.url)
        return ItemOutcome(item, ItemStatus.MINTED, link_id=link.id, url=link.url)

    def _finished_elsewhere(self, job: _Job, link: Optional[PaymentLink], minted: MintedLink) -> ItemOutcome:
        """The reservation is no longer ``minting``: another run finished (or removed) it."""
        if link is not None and link.stripe_payment_link_id == minted.id:
            if link.status is LinkStatus.ACTIVE:
                return ItemOutcome(job.item, ItemStatus.REUSED, "another backfill recorded this link first",
                                   link_id=link.id, url=link.url)
            return ItemOutcome(job.item, ItemStatus.SKIPPED,
                               f"another backfill finished this link ({link.status.value})", link_id=link.id)
        self._switch_off_orphan(minted)  # a link no row records: nobody must be able to pay through it
        return ItemOutcome(job.item, ItemStatus.FAILED,
                           "its reservation was finished or removed by another run; the Stripe link was switched off",
                           link_id=job.link_id)

    def _lost_the_pair(self, job: _Job, minted: MintedLink, exc: IntegrityError) -> ItemOutcome:
        """The database refused to activate the row: another link of the pair is active.

        Keep that one and set ours aside (deactivated, switched off in Stripe). For any other
        refusal the reservation is left as it is, to be looked at: switching its Stripe link
        off would make the next run finish the row with a dead link.
        """
        item = job.item
        winner = self.session.scalars(
            select(PaymentLink).where(
                PaymentLink.tenant_id == self.plan.tenant_id,
                PaymentLink.player_id == item.player_id,
                PaymentLink.product_id == item.product_id,
                PaymentLink.status == LinkStatus.ACTIVE,
            )
        ).first()
        link = self._locked(job.link_id)
        if link is None or link.status is not LinkStatus.MINTING:
            self.session.commit()
            return self._finished_elsewhere(job, link, minted)
        if winner is None:
            self.session.commit()
            return ItemOutcome(item, ItemStatus.FAILED, f"the database refused the link: {_reason(exc)}",
                               link_id=job.link_id)
        link.stripe_payment_link_id, link.url = minted.id, minted.url
        self._set_aside(link)
        self.session.commit()
        self._switch_off_orphan(minted, link_id=link.id)
        return ItemOutcome(item, ItemStatus.REUSED, "another backfill recorded a link for this pair first",
                           link_id=winner.id, url=winner.url)

    def _not_minted(self, job: _Job, error: PaymentProviderError) -> ItemOutcome:
        if error.changed_nothing:
            # Stripe refused the request itself: nothing exists to find later. Without the
            # reservation the next run gets a new row and key, and Stripe does not replay the
            # refusal it remembers under the old key.
            self.session.execute(
                delete(PaymentLink).where(PaymentLink.id == job.link_id, PaymentLink.status == LinkStatus.MINTING)
            )
            self.session.commit()
            return ItemOutcome(job.item, ItemStatus.FAILED, str(error))
        if job.resumed and error.http_status == 409:
            return ItemOutcome(job.item, ItemStatus.SKIPPED, "another backfill is minting this link right now",
                               link_id=job.link_id)
        return ItemOutcome(job.item, ItemStatus.FAILED,
                           f"{error}; the link stays reserved and the next run finishes it", link_id=job.link_id)

    def _locked(self, link_id: int) -> Optional[PaymentLink]:
        return self.session.scalars(
            select(PaymentLink)
            .where(PaymentLink.id == link_id, PaymentLink.tenant_id == self.plan.tenant_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).one_or_none()

    @staticmethod
    def _set_aside(link: PaymentLink) -> None:
        """A reserved row whose Stripe link is not used: kept, deactivated, with the link's id,
        marked to be switched off in Stripe (a later run retries if this one cannot)."""
        link.status = LinkStatus.DEACTIVATED
        link.deactivated_at = utcnow()
        link.stripe_deactivation_pending = True

    def _switch_off_orphan(self, minted: MintedLink, *, link_id: Optional[int] = None) -> None:
        """Our Stripe link lost to another one: switch it off so nobody can pay through it.

        ``link_id`` is the row set aside with it, if any: its mark is cleared once Stripe
        has switched the link off, and left for the next run to retry if not.
        """
        try:
            self.gateway.deactivate_payment_link(minted.id)
        except PaymentProviderError as exc:
            log.warning("Could not deactivate unused payment link %s: %s", minted.id, exc)
            return
        if link_id is not None:
            self._switched_off([link_id])

    def _switch_off(self, old: PendingSwitchOff, *, again: bool = False) -> None:
        """Switch off in Stripe a link deactivated here (by this run, or by an earlier one if ``again``)."""
        assert self.switch_off_pool is not None
        future = self.switch_off_pool.submit(self.gateway.deactivate_payment_link, old.stripe_payment_link_id)
        self.switch_offs.append((old, again, future))

    def _switched_off(self, link_ids: Sequence[int]) -> None:
        """Stripe has switched these links off: nothing is waiting for them any more."""
        self.session.execute(
            update(PaymentLink)
            .where(PaymentLink.id.in_(link_ids), PaymentLink.tenant_id == self.plan.tenant_id)
            .values(stripe_deactivation_pending=False)
            .execution_options(synchronize_session=False)
        )
        self.session.commit()

    def _report_switch_offs(self) -> None:
        done = [(old, again) for old, again, future in self.switch_offs if future.exception() is None]
        if done:
            self._switched_off([old.link_id for old, _ in done])
            self.result.switched_off_again = sum(1 for _, again in done if again)
        for old, _, future in self.switch_offs:
            error = future.exception()
            if error is None:
                continue
            if not isinstance(error, PaymentProviderError):
                raise error
            failure = OldLinkStillActive(old, str(error))
            self.result.old_links_still_active.append(failure)
            log.warning("%s", failure.describe())

    def _done(self, outcome: ItemOutcome) -> None:
        self.result.outcomes.append(outcome)
        if outcome.status is ItemStatus.FAILED:
            # info, not warning: the caller reports every failure to the person who ran it.
            log.info("Backfill item %s failed: %s", outcome.item.key, outcome.reason)
        if self.progress is not None:
            self.progress(len(self.result.outcomes), self.total, outcome)


def _reason(exc: IntegrityError) -> str:
    return str(getattr(exc, "orig", exc)).strip().splitlines()[0]


def _tier_key(item: BackfillItem) -> _TierKey:
    return (item.product_id, item.amount_cents, item.currency)


def _run_concurrently(
    tasks: Iterable[tuple[K, Callable[[], T]]],
    *,
    concurrency: int,
    on_done: Callable[[K, Optional[T], Optional[PaymentProviderError]], None],
) -> None:
    """Run provider calls with up to ``concurrency`` in flight; ``on_done`` runs in this thread.

    A provider error is handed to ``on_done``; anything else (a bug, an interrupt, an error
    raised by ``on_done``) cancels what has not started and propagates.
    """
    tasks = list(tasks)
    if not tasks:
        return
    with ThreadPoolExecutor(max_workers=min(concurrency, len(tasks)), thread_name_prefix="stripe") as pool:
        futures: dict[Future[T], K] = {pool.submit(task): key for key, task in tasks}
        try:
            for future in as_completed(futures):
                try:
                    value = future.result()
                except PaymentProviderError as exc:
                    on_done(futures[future], None, exc)
                else:
                    on_done(futures[future], value, None)
        except BaseException:
            for future in futures:
                future.cancel()
            raise


# -- presentation shared by the command line and the page ----------------------------------------


def plan_rows(plan: BackfillPlan) -> list[dict[str, str]]:
    """The plan as table rows: player, parent, product, amount, price, link exists?, action.

    A price change shows as ``$150.00 → $175.00``; a row an interrupted run reserved shows
    ``reserved`` under "Link exists?".
    """
    return [
        {
            "Player": item.player_name,
            "Parent": item.parent_name,
            "Product": item.product_name,
            "Amount": item.amount_text,
            "Price": item.price_source.value if item.price_source else "—",
            "Link exists?": "yes" if item.link_exists else ("reserved" if item.reserved_link_id else "no"),
            "Action": item.action.value,
            "Note": item.reason,
        }
        for item in plan.items
    ]


def switch_off_rows(plan: BackfillPlan) -> list[dict[str, str]]:
    """The old links still to switch off in Stripe, as table rows."""
    return [
        {"Player": old.player_name, "Parent": old.parent_name, "Product": old.product_name,
         "Old Stripe link": old.stripe_payment_link_id}
        for old in plan.pending_switch_offs
    ]


def describe_totals(totals: PlanTotals) -> str:
    """One line of plan totals for people."""
    replacing = ""
    if totals.links_to_replace:
        replacing = (
            f", {_count(totals.links_to_replace, 'link')} to replace at a new price "
            f"({format_cents(totals.replaced_from_cents, totals.currency)} → "
            f"{format_cents(totals.replaced_to_cents, totals.currency)})"
        )
    switching_off = ""
    if totals.links_to_switch_off:
        switching_off = f", {_count(totals.links_to_switch_off, 'old link')} still to switch off in Stripe"
    return (
        f"{_count(totals.links_to_mint, 'link')} to mint "
        f"({format_cents(totals.amount_to_mint_cents, totals.currency)}){replacing}{switching_off}, "
        f"{_count(totals.prices_to_create, 'Stripe price')} to create "
        f"({_count(totals.tiers_to_create, 'new tier')}); "
        f"{totals.already_linked} already linked, {totals.already_paid} already paid, "
        f"{totals.waiting} waiting, {totals.blocked} blocked; {_count(totals.players, 'signed player')}"
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
