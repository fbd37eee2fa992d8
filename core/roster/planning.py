"""Comparing validated records with the league's data, then applying the difference.

Each plan loads what the league already has once (a few queries, whatever the size of
the file), decides per record whether it is created, updated or unchanged, and keeps only
the changes. ``apply`` writes them in batches inside the caller's transaction. Nothing is
written until ``apply``, so a dry run is the plan without the apply.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from sqlalchemy import Table, insert, select, update
from sqlalchemy.orm import Session, selectinload

from core.models import Base, Order, Parent, Player, PriceTier, Product, Team, Tenant
from core.roster.formats import RosterKind
from core.roster.result import EntityCounts, ErrorList, ImportResult
from core.roster.validation import OrderRecord, PlayerRecord, ProductRecord, RosterRecord

BATCH_SIZE = 2000
T = TypeVar("T")


def _table(model: type[Base]) -> Table:
    """A model's table, for Core inserts (declarative classes type ``__table__`` as any FromClause)."""
    return cast(Table, model.__table__)


def batched(items: Sequence[T], size: int = BATCH_SIZE) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class RosterPlan:
    """The changes one file makes to one league."""

    writes: tuple[str, ...] = ()  # the tables ``apply`` may write

    def __init__(self, session: Session, tenant: Tenant, result: ImportResult, errors: ErrorList) -> None:
        self.session = session
        self.tenant = tenant
        self.result = result
        self.errors = errors

    def counts(self, entity: str) -> EntityCounts:
        return self.result.counts[entity]

    def add(self, record: RosterRecord) -> None:
        raise NotImplementedError

    def apply(self) -> None:
        raise NotImplementedError


@dataclass(slots=True)
class _ExistingParent:
    id: int
    name: str
    email: str | None
    first_name: str | None


@dataclass(slots=True)
class _ExistingPlayer:
    id: int
    first_name: str
    last_name: str
    status: Any
    team_id: int | None
    parent_id: int


class PlayersPlan(RosterPlan):
    """Teams (by name), parents (by parent_ref) and players (by player_ref)."""

    writes = (Team.__tablename__, Parent.__tablename__, Player.__tablename__)

    def __init__(self, session: Session, tenant: Tenant, result: ImportResult, errors: ErrorList) -> None:
        super().__init__(session, tenant, result, errors)
        tid = tenant.id
        self.team_ids: dict[str, int] = dict(
            session.execute(select(Team.name, Team.id).where(Team.tenant_id == tid)).all()
        )
        self.parents: dict[str, _ExistingParent] = {
            cast(str, ref): _ExistingParent(pid, name, email, first_name)  # read where it is not NULL
            for pid, ref, name, email, first_name in session.execute(
                select(Parent.id, Parent.external_ref, Parent.name, Parent.email, Parent.first_name).where(
                    Parent.tenant_id == tid, Parent.external_ref.is_not(None)
                )
            )
        }
        self.players: dict[str, _ExistingPlayer] = {
            cast(str, row[0]): _ExistingPlayer(*row[1:])  # read where it is not NULL
            for row in session.execute(
                select(
                    Player.external_ref,
                    Player.id,
                    Player.first_name,
                    Player.last_name,
                    Player.status,
                    Player.team_id,
                    Player.parent_id,
                ).where(Player.tenant_id == tid, Player.external_ref.is_not(None))
            )
        }
        self._teams_seen: set[str] = set()
        self._parents_seen: set[str] = set()
        self.new_teams: list[str] = []
        self.new_parents: list[dict[str, Any]] = []
        self.changed_parents: list[dict[str, Any]] = []
        self.new_players: list[PlayerRecord] = []
        self.changed_players: list[tuple[int, PlayerRecord]] = []

    def add(self, record: RosterRecord) -> None:
        assert isinstance(record, PlayerRecord)
        self._add_team(record.team)
        self._add_parent(record)
        existing = self.players.get(record.ref)
        if existing is None:
            self.counts("players").created += 1
            self.new_players.append(record)
        elif self._player_differs(existing, record):
            self.counts("players").updated += 1
            self.changed_players.append((existing.id, record))
        else:
            self.counts("players").unchanged += 1

    def _add_team(self, name: str | None) -> None:
        if name is None or name in self._teams_seen:
            return
        self._teams_seen.add(name)
        if name in self.team_ids:
            self.counts("teams").unchanged += 1
        else:
            self.counts("teams").created += 1
            self.new_teams.append(name)

    def _add_parent(self, record: PlayerRecord) -> None:
        # Validation made sure every row of one parent_ref agrees; the first one decides.
        if record.parent_ref in self._parents_seen:
            return
        self._parents_seen.add(record.parent_ref)
        existing = self.parents.get(record.parent_ref)
        # Without a parent_first_name column, the first name stays as it is.
        first_name = (existing.first_name if existing else None) if record.parent_first_name is None else (
            record.parent_first_name or None)
        wanted = {"name": record.parent_name, "email": record.parent_email, "first_name": first_name}
        if existing is None:
            self.counts("parents").created += 1
            self.new_parents.append({"tenant_id": self.tenant.id, "external_ref": record.parent_ref, **wanted})
        elif (existing.name, existing.email, existing.first_name) != (record.parent_name, record.parent_email,
                                                                      first_name):
            self.counts("parents").updated += 1
            self.changed_parents.append({"id": existing.id, **wanted})
        else:
            self.counts("parents").unchanged += 1

    def _player_differs(self, existing: _ExistingPlayer, record: PlayerRecord) -> bool:
        parent = self.parents.get(record.parent_ref)
        if parent is None or parent.id != existing.parent_id:
            return True
        if record.team is None:
            if existing.team_id is not None:
                return True
        elif self.team_ids.get(record.team) != existing.team_id:  # a new team has no id yet
            return True
        return (existing.first_name, existing.last_name, existing.status) != (
            record.first_name,
            record.last_name,
            record.status,
        )

    def apply(self) -> None:
        session, tid = self.session, self.tenant.id
        # Core executemany inserts, then one query for the new ids. Faster than RETURNING
        # here (psycopg pipelines an executemany), and unlike the ORM's bulk insert, Core
        # does not split a batch wherever a parent has no email or a player no team.
        for names in batched(self.new_teams):
            session.execute(insert(_table(Team)), [{"tenant_id": tid, "name": n} for n in names])
        if self.new_teams:
            self.team_ids = dict(session.execute(select(Team.name, Team.id).where(Team.tenant_id == tid)).all())
        for chunk in batched(self.new_parents):
            session.execute(insert(_table(Parent)), list(chunk))
        for chunk in batched(self.changed_parents):
            session.execute(update(Parent), list(chunk))
        parent_ids = {ref: parent.id for ref, parent in self.parents.items()}
        if self.new_parents:
            parent_ids = dict(
                session.execute(
                    select(Parent.external_ref, Parent.id).where(
                        Parent.tenant_id == tid, Parent.external_ref.is_not(None)
                    )
                ).all()  # type: ignore[arg-type]
            )

        def values(record: PlayerRecord) -> dict[str, Any]:
            return {
                "first_name": record.first_name,
                "last_name": record.last_name,
                "status": record.status,
                "team_id": self.team_ids[record.team] if record.team else None,
                "parent_id": parent_ids[record.parent_ref],
            }

        for records in batched(self.new_players):
            session.execute(
                insert(_table(Player)),
                [{"tenant_id": tid, "external_ref": r.ref, **values(r)} for r in records],
            )
        for changes in batched(self.changed_players):
            session.execute(update(Player), [{"id": pid, **values(r)} for pid, r in changes])


class ProductsPlan(RosterPlan):
    """Products (by name) and their default price tier at the league's currency.

    A new amount becomes the default tier; the old tier is kept (links and orders may
    point at it) but is no longer the default.
    """

    writes = (Product.__tablename__, PriceTier.__tablename__)

    def __init__(self, session: Session, tenant: Tenant, result: ImportResult, errors: ErrorList) -> None:
        super().__init__(session, tenant, result, errors)
        self.currency = tenant.currency
        self.products: dict[str, Product] = {
            product.name: product
            for product in session.scalars(
                select(Product).where(Product.tenant_id == tenant.id).options(selectinload(Product.price_tiers))
            )
        }
        self.new_products: list[ProductRecord] = []
        self.changed_products: list[tuple[Product, ProductRecord]] = []

    def add(self, record: RosterRecord) -> None:
        assert isinstance(record, ProductRecord)
        product = self.products.get(record.name)
        if product is None:
            self.counts("products").created += 1
            self.new_products.append(record)
            return
        default = _default_tier(product)
        differs = (product.kind, product.required) != (record.kind, record.required) or default is None or (
            (default.amount_cents, default.currency) != (record.amount_cents, self.currency)
        )
        if differs:
            self.counts("products").updated += 1
            self.changed_products.append((product, record))
        else:
            self.counts("products").unchanged += 1

    def apply(self) -> None:
        session = self.session
        moving: list[tuple[Product, int]] = []
        for product, record in self.changed_products:
            product.kind, product.required = record.kind, record.required
            default = _default_tier(product)
            if default is None or (default.amount_cents, default.currency) != (record.amount_cents, self.currency):
                if default is not None:
                    default.is_default = False
                moving.append((product, record.amount_cents))
        # The partial unique index allows one default per product: clear the old ones first.
        session.flush()
        for product, amount in moving:
            tier = next(
                (t for t in product.price_tiers if (t.amount_cents, t.currency) == (amount, self.currency)),
                None,
            )
            if tier is None:
                product.price_tiers.append(PriceTier(amount_cents=amount, currency=self.currency, is_default=True))
            else:
                tier.is_default = True
        for record in self.new_products:
            product = Product(
                tenant_id=self.tenant.id, name=record.name, kind=record.kind, required=record.required
            )
            product.price_tiers.append(
                PriceTier(amount_cents=record.amount_cents, currency=self.currency, is_default=True)
            )
            session.add(product)
        session.flush()


def _default_tier(product: Product) -> PriceTier | None:
    return next((tier for tier in product.price_tiers if tier.is_default), None)


@dataclass(slots=True)
class _ExistingOrder:
    id: int
    player_id: int
    product_id: int
    amount_cents: int
    currency: str
    status: Any


class OrdersPlan(RosterPlan):
    """Orders (by order_ref) for players and products the league already has."""

    writes = (Order.__tablename__,)

    def __init__(self, session: Session, tenant: Tenant, result: ImportResult, errors: ErrorList) -> None:
        super().__init__(session, tenant, result, errors)
        tid = tenant.id
        self.currency = tenant.currency
        self.player_ids: dict[str, int] = dict(
            session.execute(
                select(Player.external_ref, Player.id).where(
                    Player.tenant_id == tid, Player.external_ref.is_not(None)
                )
            ).all()  # type: ignore[arg-type]
        )
        self.product_ids: dict[str, int] = dict(
            session.execute(select(Product.name, Product.id).where(Product.tenant_id == tid)).all()
        )
        self.orders: dict[str, _ExistingOrder] = {
            cast(str, row[0]): _ExistingOrder(*row[1:])  # read where it is not NULL
            for row in session.execute(
                select(
                    Order.external_ref,
                    Order.id,
                    Order.player_id,
                    Order.product_id,
                    Order.amount_cents,
                    Order.currency,
                    Order.status,
                ).where(Order.tenant_id == tid, Order.external_ref.is_not(None))
            )
        }
        self.new_orders: list[dict[str, Any]] = []
        self.changed_orders: list[dict[str, Any]] = []

    def add(self, record: RosterRecord) -> None:
        assert isinstance(record, OrderRecord)
        player_id = self.player_ids.get(record.player_ref)
        product_id = self.product_ids.get(record.product)
        if player_id is None:
            self.errors.add(
                record.line,
                "player_ref",
                f"no player {record.player_ref!r} in this league; import the players file first",
            )
        if product_id is None:
            self.errors.add(
                record.line,
                "product",
                f"no product {record.product!r} in this league; import the products file first",
            )
        if player_id is None or product_id is None:
            return
        wanted = {
            "player_id": player_id,
            "product_id": product_id,
            "amount_cents": record.amount_cents,
            "currency": self.currency,
            "status": record.status,
        }
        existing = self.orders.get(record.ref)
        if existing is None:
            self.counts("orders").created += 1
            self.new_orders.append({"tenant_id": self.tenant.id, "external_ref": record.ref, **wanted})
        elif any(getattr(existing, key) != value for key, value in wanted.items()):
            self.counts("orders").updated += 1
            self.changed_orders.append({"id": existing.id, **wanted})
        else:
            self.counts("orders").unchanged += 1

    def apply(self) -> None:
        for chunk in batched(self.new_orders):
            self.session.execute(insert(_table(Order)), list(chunk))
        for chunk in batched(self.changed_orders):
            self.session.execute(update(Order), list(chunk))


PLANS: dict[RosterKind, type[RosterPlan]] = {
    RosterKind.PLAYERS: PlayersPlan,
    RosterKind.PRODUCTS: ProductsPlan,
    RosterKind.ORDERS: OrdersPlan,
}


