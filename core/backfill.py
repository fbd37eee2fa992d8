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
from typing import Callable, Hashable, Iterable, Optional, Sequence, TypeVar

from sqlalchemy import select, update
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
)
from core.money import format_cents
from core.payment_gateway import MintedLink, PaymentGateway, PaymentLinkRequest

log = logging.getLogger(__name__)

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)

DEFAULT_CONCURRENCY = 8  # requests in flight; the gateway paces them under Stripe's limit

_TierKey = tuple[int, int, str]  # (product id, amount in cents, currency)


class PlanAction(str, enum.Enum):
    MINT = "mint"
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
    """One thing a signed player owes, and what the backfill will do about it."""

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
    # How many links this player and product had before: part of the idempotency key, so a
    # new link after a paid or deactivated one is not answered with the old one.
    earlier_links: int = 0

    @property
    def link_exists(self) -> bool:
        return self.existing_link_id is not None

    def idempotency_key(self, tenant_id: int) -> str:
        """Same (league, player, product, amount) -> same key, so a rerun replays, never repeats."""
        return (
            f"backfill-link:t{tenant_id}:pl{self.player_id}:pr{self.product_id}:"
            f"{self.currency}{self.amount_cents}:n{self.earlier_links}"
        )


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


@dataclass(frozen=True)
class BackfillPlan:
    """What a backfill would do in one league. Built by ``plan_backfill``; changes nothing."""

    tenant_id: int
    tenant_slug: str
    items: tuple[BackfillItem, ...]
    signed_players: int = 0

    @property
    def to_mint(self) -> tuple[BackfillItem, ...]:
        return tuple(item for item in self.items if item.action is PlanAction.MINT)

    @property
    def totals(self) -> PlanTotals:
        to_mint = self.to_mint
        actions = Counter(item.action for item in self.items)
        needs_price = {
            (i.product_id, i.amount_cents, i.currency) for i in to_mint if i.price_source is not PriceSource.EXISTING
        }
        needs_tier = {
            (i.product_id, i.amount_cents, i.currency) for i in to_mint if i.price_source is PriceSource.NEW_TIER
        }
        return PlanTotals(
            links_to_mint=len(to_mint),
            amount_to_mint_cents=sum(item.amount_cents for item in to_mint),
            currency=to_mint[0].currency if to_mint else "usd",
            prices_to_create=len(needs_price),
            tiers_to_create=len(needs_tier),
            already_linked=actions[PlanAction.ALREADY_LINKED],
            already_paid=actions[PlanAction.ALREADY_PAID],
            waiting=actions[PlanAction.WAITING],
            blocked=actions[PlanAction.BLOCKED],
            players=self.signed_players,
        )


class ItemStatus(str, enum.Enum):
    MINTED = "minted"
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


@dataclass
class BackfillResult:
    """What a commit did, item by item."""

    outcomes: list[ItemOutcome] = field(default_factory=list)
    prices_created: int = 0
    tiers_created: int = 0

    def _with(self, status: ItemStatus) -> list[ItemOutcome]:
        return [outcome for outcome in self.outcomes if outcome.status is status]

    @property
    def minted(self) -> list[ItemOutcome]:
        return self._with(ItemStatus.MINTED)

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
        return not self.failed

    def summary(self) -> str:
        return (
            f"{len(self.minted)} minted, {len(self.reused)} already minted by another run, "
            f"{len(self.skipped)} skipped, {len(self.failed)} failed; "
            f"{self.prices_created} Stripe prices created"
        )


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
        session.execute(
            select(PaymentLink.id, PaymentLink.player_id, PaymentLink.product_id, PaymentLink.order_id,
                   PaymentLink.status, PaymentLink.amount_cents, PaymentLink.currency)
            .where(PaymentLink.tenant_id == user.tenant_id)
            .order_by(PaymentLink.id)
        ).all()
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
        tenant_id=tenant.id, tenant_slug=tenant.slug, items=tuple(items), signed_players=len(players)
    )


class _LinkIndex:
    """The league's existing links, indexed the ways the plan asks about them."""

    def __init__(self, rows: Sequence[tuple]) -> None:  # type: ignore[type-arg]
        self.active: dict[tuple[int, int], tuple] = {}  # type: ignore[type-arg]
        self.paid: dict[tuple[int, int], tuple] = {}  # type: ignore[type-arg]
        self.by_order: dict[int, tuple] = {}  # type: ignore[type-arg]
        self.count: Counter[tuple[int, int]] = Counter()
        for row in rows:
            _id, player_id, product_id, order_id, status, _amount, _currency = row
            pair = (player_id, product_id)
            self.count[pair] += 1
            if status is LinkStatus.ACTIVE:
                self.active[pair] = row
            elif status is LinkStatus.PAID:
                self.paid[pair] = row
            if order_id is not None and status is not LinkStatus.DEACTIVATED:
                self.by_order[order_id] = row


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
        if pair in self.links.active:
            return self._existing(product, self.links.active[pair], PlanAction.ALREADY_LINKED, "has an active link")
        if pair in self.links.paid:
            return self._existing(product, self.links.paid[pair], PlanAction.ALREADY_PAID, "already paid")
        if tier is None:
            return self._item(product, 0, "usd", PlanAction.BLOCKED,
                              f"{product.name} has no default price: set one, then run the backfill again")
        return self._to_mint(product, tier.amount_cents, tier.currency, tier, order=None)

    def order_item(self, product: Product, order: Order) -> BackfillItem:
        pair = (self.player.id, product.id)
        if order.id in self.links.by_order:
            row = self.links.by_order[order.id]
            action = PlanAction.ALREADY_LINKED if row[4] is LinkStatus.ACTIVE else PlanAction.ALREADY_PAID
            return self._existing(product, row, action, f"order #{order.id} is linked", order=order)
        if pair in self.links.active:
            row = self.links.active[pair]
            return self._item(
                product, order.amount_cents, order.currency, PlanAction.WAITING,
                f"order #{order.id} waits: an active {product.name} link "
                f"({format_cents(row[5], row[6])}) must be paid or deactivated first",
                order=order, existing_link_id=row[0],
            )
        if product.id in self.planned:
            first = self.planned[product.id]
            return self._item(
                product, order.amount_cents, order.currency, PlanAction.WAITING,
                f"order #{order.id} waits for order #{first.order_id}: one active link per player and product",
                order=order,
            )
        tier = next(
            (t for t in product.price_tiers
             if t.amount_cents == order.amount_cents and t.currency == order.currency),
            None,
        )
        return self._to_mint(product, order.amount_cents, order.currency, tier, order=order)

    def _to_mint(self, product: Product, amount: int, currency: str,
                 tier: Optional[PriceTier], *, order: Optional[Order]) -> BackfillItem:
        if tier is None:
            source, reason = PriceSource.NEW_TIER, f"new price tier at {format_cents(amount, currency)}"
        elif tier.stripe_price_id is None:
            source, reason = PriceSource.NEW_PRICE, "the tier gets its Stripe price"
        else:
            source, reason = PriceSource.EXISTING, "price exists"
        what = f"order #{order.id}" if order else ("monthly dues" if product.kind is ProductKind.MONTHLY else "required")
        item = self._item(
            product, amount, currency, PlanAction.MINT, f"{what}; {reason}",
            order=order, price_source=source, tier_id=tier.id if tier else None,
        )
        self.planned[product.id] = item
        return item

    def _existing(self, product: Product, row: tuple, action: PlanAction, reason: str,  # type: ignore[type-arg]
                  *, order: Optional[Order] = None) -> BackfillItem:
        return self._item(product, row[5], row[6], action, reason, order=order, existing_link_id=row[0])

    def _item(self, product: Product, amount: int, currency: str, action: PlanAction, reason: str, *,
              order: Optional[Order] = None, price_source: Optional[PriceSource] = None,
              tier_id: Optional[int] = None, existing_link_id: Optional[int] = None) -> BackfillItem:
        key = f"t{self.tenant_id}-pl{self.player.id}-pr{product.id}" + (f"-o{order.id}" if order else "")
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
            order_id=order.id if order else None,
            existing_link_id=existing_link_id,
            earlier_links=self.links.count[(self.player.id, product.id)],
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
    """Mint the plan's links through Stripe. **Commits the session once per item.**

    Each link row is written and committed as soon as Stripe returns the link, so a crash
    loses at most the links in flight, and those come back on the rerun: every request
    carries a deterministic idempotency key, and Stripe answers a repeated key with the
    link it already made. Missing price tiers and Stripe Prices are created (and committed)
    first. If another backfill records the same link first, the database's one-active-link
    rule refuses the second row and this run reuses the winner's link. One failing item is
    recorded with its reason and the others go on. ``progress(done, total, outcome)`` is
    called after each item, in the caller's thread. An audit entry is committed at the end.
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
            "reused": len(result.reused),
            "skipped": len(result.skipped),
            "failed": [{"item": o.item.key, "reason": o.reason} for o in result.failed],
            "prices_created": result.prices_created,
            "tiers_created": result.tiers_created,
        },
    )
    session.commit()
    return result


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

    def execute(self) -> BackfillResult:
        for item in self.plan.items:
            if item.action is PlanAction.MINT:
                continue
            if item.action is PlanAction.BLOCKED:
                self._done(ItemOutcome(item, ItemStatus.FAILED, item.reason))
            else:
                self._done(ItemOutcome(item, ItemStatus.SKIPPED, item.reason, link_id=item.existing_link_id))
        to_mint = self._still_unlinked(self.plan.to_mint)
        prices = self._prices_for(to_mint)
        ready = []
        for item in to_mint:
            price = prices.get(_tier_key(item))
            if isinstance(price, str):
                self._done(ItemOutcome(item, ItemStatus.FAILED, price))
            else:
                ready.append((item, price))
        self._mint(ready)
        return self.result

    # items whose pair got an active link since the plan was made

    def _still_unlinked(self, items: Sequence[BackfillItem]) -> list[BackfillItem]:
        active = {
            (player_id, product_id): link_id
            for link_id, player_id, product_id in self.session.execute(
                select(PaymentLink.id, PaymentLink.player_id, PaymentLink.product_id).where(
                    PaymentLink.tenant_id == self.user.tenant_id, PaymentLink.status == LinkStatus.ACTIVE
                )
            )
        }
        fresh = []
        for item in items:
            link_id = active.get((item.player_id, item.product_id))
            if link_id is None:
                fresh.append(item)
            else:
                self._done(ItemOutcome(item, ItemStatus.SKIPPED, "linked since the plan was made", link_id=link_id))
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
        return stored or price_id

    # links

    def _mint(self, ready: Sequence[tuple[BackfillItem, "_Price"]]) -> None:
        by_key = {item.key: (item, price) for item, price in ready}
        tasks = [(item.key, self._link_task(item, price)) for item, price in ready]

        def record(key: str, minted: Optional[MintedLink], error: Optional[PaymentProviderError]) -> None:
            item, price = by_key[key]
            if error is not None:
                self._done(ItemOutcome(item, ItemStatus.FAILED, str(error)))
            else:
                assert minted is not None
                self._done(self._store_link(item, price, minted))

        _run_concurrently(tasks, concurrency=self.concurrency, on_done=record)

    def _link_task(self, item: BackfillItem, price: "_Price") -> Callable[[], MintedLink]:
        assert price.stripe_price_id is not None
        metadata = {
            "tenant": self.plan.tenant_slug,
            "tenant_id": str(self.plan.tenant_id),
            "player_id": str(item.player_id),
            "product_id": str(item.product_id),
            "link_key": item.key,
        }
        if item.order_id is not None:
            metadata["order_id"] = str(item.order_id)
        request = PaymentLinkRequest(
            price_id=price.stripe_price_id,
            success_url=self.success_url,
            metadata=metadata,
            single_payment=item.product_kind is ProductKind.ONE_TIME,
            save_payment_method=item.product_kind is ProductKind.MONTHLY,
        )
        key = item.idempotency_key(self.plan.tenant_id)
        return lambda: self.gateway.create_payment_link(request, idempotency_key=key)

    def _store_link(self, item: BackfillItem, price: "_Price", minted: MintedLink) -> ItemOutcome:
        link = PaymentLink(
            tenant_id=self.plan.tenant_id,
            player_id=item.player_id,
            product_id=item.product_id,
            price_tier_id=price.tier_id,
            order_id=item.order_id,
            amount_cents=item.amount_cents,
            currency=item.currency,
            stripe_payment_link_id=minted.id,
            url=minted.url,
            status=LinkStatus.ACTIVE,
        )
        self.session.add(link)
        try:
            self.session.commit()
        except IntegrityError as exc:
            self.session.rollback()
            return self._reuse_winner(item, minted, exc)
        return ItemOutcome(item, ItemStatus.MINTED, link_id=link.id, url=link.url)

    def _reuse_winner(self, item: BackfillItem, minted: MintedLink, exc: IntegrityError) -> ItemOutcome:
        winner = self.session.scalars(
            select(PaymentLink).where(
                PaymentLink.tenant_id == self.plan.tenant_id,
                PaymentLink.player_id == item.player_id,
                PaymentLink.product_id == item.product_id,
                PaymentLink.status == LinkStatus.ACTIVE,
            )
        ).first()
        if winner is None:
            reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
            return ItemOutcome(item, ItemStatus.FAILED, f"the database refused the link: {reason}")
        if winner.stripe_payment_link_id != minted.id:
            self._retire_orphan(minted)
        return ItemOutcome(
            item, ItemStatus.REUSED, "another backfill recorded this link first", link_id=winner.id, url=winner.url
        )

    def _retire_orphan(self, minted: MintedLink) -> None:
        """Our Stripe link lost to another one: switch it off so nobody can pay through it."""
        try:
            self.gateway.deactivate_payment_link(minted.id)
        except PaymentProviderError as exc:
            log.warning("Could not deactivate unused payment link %s: %s", minted.id, exc)

    def _done(self, outcome: ItemOutcome) -> None:
        self.result.outcomes.append(outcome)
        if outcome.status is ItemStatus.FAILED:
            log.warning("Backfill item %s failed: %s", outcome.item.key, outcome.reason)
        if self.progress is not None:
            self.progress(len(self.result.outcomes), self.total, outcome)


@dataclass(frozen=True)
class _Price:
    tier_id: int
    stripe_price_id: Optional[str]


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
    """The plan as table rows: player, parent, product, amount, price, link exists?, action."""
    return [
        {
            "Player": item.player_name,
            "Parent": item.parent_name,
            "Product": item.product_name,
            "Amount": format_cents(item.amount_cents, item.currency) if item.amount_cents else "—",
            "Price": item.price_source.value if item.price_source else "—",
            "Link exists?": "yes" if item.link_exists else "no",
            "Action": item.action.value,
            "Note": item.reason,
        }
        for item in plan.items
    ]


def describe_totals(totals: PlanTotals) -> str:
    """One line of plan totals for people."""
    return (
        f"{_count(totals.links_to_mint, 'link')} to mint "
        f"({format_cents(totals.amount_to_mint_cents, totals.currency)}), "
        f"{_count(totals.prices_to_create, 'Stripe price')} to create "
        f"({_count(totals.tiers_to_create, 'new tier')}); "
        f"{totals.already_linked} already linked, {totals.already_paid} already paid, "
        f"{totals.waiting} waiting, {totals.blocked} blocked; {_count(totals.players, 'signed player')}"
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
