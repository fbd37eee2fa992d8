"""The domain model: every table of the League Billing Dashboard.

Money is always integer minor units (``amount_cents``) plus an ISO currency code.
Timestamps are stored in UTC and always come back timezone-aware, on SQLite too.
"""

from __future__ import annotations

import enum
import secrets
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    Date,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    column,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from core.email.skip_reasons import SkipReason
from core.reporting.name_search import folded

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# A new league's currency unless it says otherwise (``Tenant.currency``).
DEFAULT_CURRENCY = "usd"


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC that is always returned timezone-aware.

    SQLite has no timezone-aware type; without this, values read back from it are naive
    and comparisons with aware values fail.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use timezone-aware UTC timestamps")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _enum(enum_class: type[enum.Enum], name: str) -> Enum:
    """A named enum storing the members' values (native on PostgreSQL, CHECK on SQLite)."""
    return Enum(
        enum_class,
        name=name,
        values_callable=lambda members: [m.value for m in members],
        create_constraint=True,
        validate_strings=True,
    )


class PlayerStatus(str, enum.Enum):
    PROSPECT = "prospect"
    SIGNED = "signed"
    WITHDRAWN = "withdrawn"


class ProductKind(str, enum.Enum):
    ONE_TIME = "one_time"
    MONTHLY = "monthly"


class OrderStatus(str, enum.Enum):
    PENDING = "pending"
    PAID = "paid"
    CANCELED = "canceled"


class LinkStatus(str, enum.Enum):
    ACTIVE = "active"
    PAID = "paid"
    DEACTIVATED = "deactivated"
    # Reserved by the backfill before Stripe is asked (see core.payments.links): the row's id
    # and attempt token make the request's idempotency key, and the row's id is in the link's
    # metadata, so a rerun finds what Stripe made. Not owed yet.
    MINTING = "minting"


class FlagKind(str, enum.Enum):
    """Why a payment needs a person to look at it (``payment_flags.kind``)."""

    AMOUNT_MISMATCH = "amount_mismatch"
    DUPLICATE_PAYMENT = "duplicate_payment"
    PAID_AFTER_DEACTIVATION = "paid_after_deactivation"
    UNKNOWN_LINK = "unknown_link"
    # From Stripe's events (``core.payments.events``):
    DISPUTE = "dispute"  # the card holder disputed the payment with their bank
    DISPUTE_CLOSED = "dispute_closed"  # the bank decided (won: the money stays; lost: it went back)
    REFUND_NOT_RECORDED = "refund_not_recorded"  # a refund made in Stripe the ledger could not take

    @property
    def label(self) -> str:
        """The kind in words, for the page and the command line."""
        return _FLAG_LABELS[self]


_FLAG_LABELS = {
    FlagKind.AMOUNT_MISMATCH: "paid a different amount",
    FlagKind.DUPLICATE_PAYMENT: "paid more than once",
    FlagKind.PAID_AFTER_DEACTIVATION: "paid on a deactivated link",
    FlagKind.UNKNOWN_LINK: "payment for a link we do not know",
    FlagKind.DISPUTE: "disputed with the bank",
    FlagKind.DISPUTE_CLOSED: "dispute closed",
    FlagKind.REFUND_NOT_RECORDED: "refund in Stripe not in the ledger",
}


class EmailPayLinks(str, enum.Enum):
    """What an outstanding-balance email offers to pay (``Tenant.email_pay_links``)."""

    BALANCE_AND_ITEMS = "balance_and_items"  # the family's balance, and each untouched item on its own
    BALANCE_ONLY = "balance_only"  # the family's balance alone

    @property
    def label(self) -> str:
        return _PAY_LINK_LABELS[self]


_PAY_LINK_LABELS = {
    EmailPayLinks.BALANCE_AND_ITEMS: "The balance, and each item on its own",
    EmailPayLinks.BALANCE_ONLY: "The balance only",
}
DEFAULT_EMAIL_PAY_LINKS = EmailPayLinks.BALANCE_AND_ITEMS


class CampaignStatus(str, enum.Enum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class MessageStatus(str, enum.Enum):
    PENDING = "pending"
    SENDING = "sending"  # claimed by a worker; the provider may have been called
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"


class Tenant(Base):
    """A league. Brand values here are the single source for every email and page."""

    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3), default=DEFAULT_CURRENCY)
    brand_primary_color: Mapped[str] = mapped_column(String(16), default="#1d3557")
    brand_accent_color: Mapped[str] = mapped_column(String(16), default="#e63946")
    logo_url: Mapped[str | None] = mapped_column(String(500))
    sender_name: Mapped[str | None] = mapped_column(String(200))
    reply_to: Mapped[str | None] = mapped_column(String(320))
    footer_text: Mapped[str | None] = mapped_column(Text)
    # The league's own non-secret settings; NULL: as the environment (or the default) says.
    # Read them through ``core.access.league_settings.effective_settings``, never directly.
    sender_address: Mapped[str | None] = mapped_column(String(320))
    payment_success_url: Mapped[str | None] = mapped_column(String(1000))
    time_zone: Mapped[str | None] = mapped_column(String(64))
    email_cooldown_days: Mapped[int | None] = mapped_column(Integer)
    payments_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # A random token naming this league at Stripe (idempotency keys, link metadata), so two
    # databases on one Stripe account (a trial, a copy) never take each other's requests or
    # links. NULL for leagues created before it existed: they keep ``t<id>`` (``league_key``).
    stripe_namespace: Mapped[str | None] = mapped_column(String(32), default=lambda: secrets.token_hex(8))
    # The league's one Stripe Product for family balance links (``core.payments.family_links``).
    stripe_balance_product_id: Mapped[str | None] = mapped_column(String(255))
    # What the email's Pay buttons are (``EmailPayLinks``); NULL: the default, balance and items.
    email_pay_links: Mapped[str | None] = mapped_column(String(32))

    @property
    def league_key(self) -> str:
        """This league's name in its Stripe idempotency keys and metadata."""
        return self.stripe_namespace or f"t{self.id}"


class Team(Base):
    __tablename__ = "teams"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))


def _search_name(expression: Any) -> Computed:
    """``expression`` folded for the name search (``core.reporting.name_search``), computed and
    stored by the database on every write of the row: whoever writes a name (the roster import,
    the demo, a bulk statement, a person at a SQL prompt) cannot leave it stale, and a search
    compares stored text instead of folding every row."""
    return Computed(folded(expression), persisted=True)


def _trigram_index(table: str) -> Index:
    """``search_name``'s index: a trigram GIN index on PostgreSQL, usable for ``LIKE '%term%'``
    (extension ``pg_trgm``); a plain index on SQLite, which scans for such a pattern anyway."""
    return Index(
        f"ix_{table}_search_name",
        "search_name",
        postgresql_using="gin",
        postgresql_ops={"search_name": "gin_trgm_ops"},
    )


class Parent(Base):
    __tablename__ = "parents"
    __table_args__ = (UniqueConstraint("tenant_id", "external_ref"), _trigram_index("parents"))

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    # The roster's optional parent_first_name: how an email greets them ("Hi Jennifer").
    first_name: Mapped[str | None] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(320))
    email_opt_out: Mapped[bool] = mapped_column(Boolean, default=False)
    external_ref: Mapped[str | None] = mapped_column(String(100))
    search_name: Mapped[str] = mapped_column(Text, _search_name(column("name", String)))

    players: Mapped[list[Player]] = relationship(back_populates="parent")


class Player(Base):
    __tablename__ = "players"
    __table_args__ = (UniqueConstraint("tenant_id", "external_ref"), _trigram_index("players"))

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    parent_id: Mapped[int] = mapped_column(ForeignKey("parents.id"), index=True)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"), index=True)
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    status: Mapped[PlayerStatus] = mapped_column(
        _enum(PlayerStatus, "player_status"), default=PlayerStatus.PROSPECT
    )
    external_ref: Mapped[str | None] = mapped_column(String(100))
    # First and last name with one space between, as the name search has always matched them.
    search_name: Mapped[str] = mapped_column(
        Text, _search_name(column("first_name", String) + " " + column("last_name", String))
    )

    parent: Mapped[Parent] = relationship(back_populates="players")
    team: Mapped[Team | None] = relationship()

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[ProductKind] = mapped_column(_enum(ProductKind, "product_kind"))
    required: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    price_tiers: Mapped[list[PriceTier]] = relationship(back_populates="product")


class PriceTier(Base):
    """A price a product is sold at. ``stripe_price_id`` stays NULL until the Price is minted."""

    __tablename__ = "price_tiers"
    __table_args__ = (
        UniqueConstraint("product_id", "amount_cents", "currency"),
        CheckConstraint("amount_cents > 0", name="amount_positive"),
        # One default tier per product: the one required products are billed at.
        Index(
            "uq_price_tiers_default_per_product",
            "product_id",
            unique=True,
            postgresql_where=text("is_default"),
            sqlite_where=text("is_default"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"), index=True)
    amount_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    stripe_price_id: Mapped[str | None] = mapped_column(String(255), unique=True)

    product: Mapped[Product] = relationship(back_populates="price_tiers")


class Order(Base):
    """Something a family bought outside the required products (e.g. a uniform)."""

    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("tenant_id", "external_ref"),
        CheckConstraint("amount_cents > 0", name="amount_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    player_id: Mapped[int] = mapped_column(ForeignKey("players.id"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    amount_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[OrderStatus] = mapped_column(
        _enum(OrderStatus, "order_status"), default=OrderStatus.PENDING
    )
    external_ref: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class PaymentLink(Base):
    """One persistent Stripe Payment Link for one player and one product.

    ``product_id`` is NOT NULL and a partial unique index allows at most one *active*
    link per (tenant, player, product): a NULL can never slip past it, and a price change
    is a new link with the old one deactivated.

    A ``minting`` row is the backfill's reservation: written and committed before Stripe is
    asked, without a Stripe id or URL yet. A second partial unique index allows one
    reservation per (tenant, player, product), so two backfills cannot both mint for a pair.
    It is a separate index, not the active one widened, because a price change reserves the
    new link while the old one is still active (the family keeps a working link throughout).
    """

    __tablename__ = "payment_links"
    __table_args__ = (
        CheckConstraint("amount_cents > 0", name="amount_positive"),
        CheckConstraint(
            "status = 'minting' OR (stripe_payment_link_id IS NOT NULL AND url IS NOT NULL)",
            name="stripe_link_once_minted",
        ),
        Index(
            "uq_payment_links_one_active_per_player_product",
            "tenant_id",
            "player_id",
            "product_id",
            unique=True,
            postgresql_where=text("status = 'active'"),
            sqlite_where=text("status = 'active'"),
        ),
        Index(
            "uq_payment_links_one_minting_per_player_product",
            "tenant_id",
            "player_id",
            "product_id",
            unique=True,
            postgresql_where=text("status = 'minting'"),
            sqlite_where=text("status = 'minting'"),
        ),
        Index("ix_payment_links_tenant_status", "tenant_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    player_id: Mapped[int] = mapped_column(ForeignKey("players.id"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    price_tier_id: Mapped[int] = mapped_column(ForeignKey("price_tiers.id"), index=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)
    amount_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    # NULL only while ``minting`` (the CHECK above): Stripe has not answered yet.
    stripe_payment_link_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    url: Mapped[str | None] = mapped_column(String(1000))
    status: Mapped[LinkStatus] = mapped_column(
        _enum(LinkStatus, "payment_link_status"), default=LinkStatus.ACTIVE
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    deactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    checkout_session_id: Mapped[str | None] = mapped_column(String(255))
    paid_amount_cents: Mapped[int | None] = mapped_column(Integer)
    # A completed session whose payment is still processing (delayed methods): still owed.
    processing: Mapped[bool] = mapped_column(Boolean, default=False)
    # A payment whose amount differs from the link's: flagged for the treasurer, never hidden.
    amount_mismatch: Mapped[bool] = mapped_column(Boolean, default=False)
    # Deactivated here but not yet switched off in Stripe (a replaced or unused link): its
    # address may still take a payment until the backfill's next run switches it off.
    stripe_deactivation_pending: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # A random token naming this reservation's attempt at Stripe, in its idempotency key: a
    # reservation Stripe refused is removed, and SQLite can give the next one the same id, so
    # the id alone would have Stripe replay the refusal. NULL on rows reserved before 0006
    # (they keep the key they were first sent with). Set by ``core.payments.links.reserve``.
    mint_attempt: Mapped[str | None] = mapped_column(String(32))
    # The ledger charge this link pays (NULL while minting, and for links from before the
    # ledger that were already deactivated).
    charge_id: Mapped[int | None] = mapped_column(ForeignKey("charges.id"), index=True)

    player: Mapped[Player] = relationship()
    product: Mapped[Product] = relationship()
    price_tier: Mapped[PriceTier] = relationship()
    order: Mapped[Order | None] = relationship()


class BalancePrice(Base):
    """A Stripe Price of the league's balance product at one amount, shared by every family
    link for that amount. ``stripe_price_id`` stays NULL until Stripe has made it."""

    __tablename__ = "balance_prices"
    __table_args__ = (
        UniqueConstraint("tenant_id", "amount_cents", "currency"),
        CheckConstraint("amount_cents > 0", name="amount_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    amount_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    stripe_price_id: Mapped[str | None] = mapped_column(String(255), unique=True)


class FamilyLink(Base):
    """One Stripe Payment Link for a family's whole open balance (``core.payments.family_links``).

    The same life as a ``PaymentLink`` (minting, active, paid, deactivated) for a parent instead
    of a (player, product): at most one active and one minting per family (partial unique
    indexes). ``amount_cents`` is the balance it was minted for; when the balance changes a new
    link is minted and this one retired (and switched off in Stripe, the database first).
    """

    __tablename__ = "family_links"
    __table_args__ = (
        CheckConstraint("amount_cents > 0", name="amount_positive"),
        CheckConstraint(
            "status = 'minting' OR (stripe_payment_link_id IS NOT NULL AND url IS NOT NULL)",
            name="stripe_link_once_minted",
        ),
        Index(
            "uq_family_links_one_active_per_parent",
            "tenant_id",
            "parent_id",
            unique=True,
            postgresql_where=text("status = 'active'"),
            sqlite_where=text("status = 'active'"),
        ),
        Index(
            "uq_family_links_one_minting_per_parent",
            "tenant_id",
            "parent_id",
            unique=True,
            postgresql_where=text("status = 'minting'"),
            sqlite_where=text("status = 'minting'"),
        ),
        Index("ix_family_links_tenant_status", "tenant_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    parent_id: Mapped[int] = mapped_column(ForeignKey("parents.id"), index=True)
    amount_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    stripe_price_id: Mapped[str | None] = mapped_column(String(255))
    stripe_payment_link_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    url: Mapped[str | None] = mapped_column(String(1000))
    status: Mapped[LinkStatus] = mapped_column(
        _enum(LinkStatus, "payment_link_status"), default=LinkStatus.MINTING
    )
    mint_attempt: Mapped[str] = mapped_column(String(32))
    stripe_deactivation_pending: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    checkout_session_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class PaymentFlag(Base):
    """A payment a person should look at, recorded the first time payment sync sees it.

    One row per (league, Checkout Session, kind, still processing or not): a sync that sees
    the same session again (the overlap of its window, a full check) finds the row and does
    not report it as new; a duplicate first seen processing is reported again once it is
    paid. ``detail`` is the sentence shown to people; nothing is decided on it.
    """

    __tablename__ = "payment_flags"
    __table_args__ = (UniqueConstraint("tenant_id", "checkout_session_id", "kind", "processing"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    # NULL for a payment through a link this league has no record of.
    payment_link_id: Mapped[int | None] = mapped_column(ForeignKey("payment_links.id"), index=True)
    stripe_payment_link_id: Mapped[str | None] = mapped_column(String(255))
    checkout_session_id: Mapped[str] = mapped_column(String(255))
    kind: Mapped[FlagKind] = mapped_column(_enum(FlagKind, "payment_flag_kind"))
    # The checkout's payment was still processing when it was flagged.
    processing: Mapped[bool] = mapped_column(Boolean, default=False)
    detail: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class StripeEventCursor(Base):
    """Where a league's reading of Stripe's events has got to (``core.payments.events``).

    ``read_until`` is when the last complete pass started; the next pass lists the events
    created since then minus an overlap (events become visible a little after their
    ``created`` time). None until the first complete pass.
    """

    __tablename__ = "stripe_event_cursor"

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    read_until: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class StripeEventSeen(Base):
    """A Stripe event a league has applied: Stripe delivers events at least once, in no fixed
    order, so each is applied once, in the same transaction as its effect.

    ``object_id`` is what the event is about (a Checkout Session, a charge, a dispute), so a
    session whose delayed payment failed is known as failed when an older snapshot of it
    arrives late.
    """

    __tablename__ = "stripe_events_seen"
    __table_args__ = (
        UniqueConstraint("tenant_id", "event_id"),
        Index("ix_stripe_events_seen_tenant_object", "tenant_id", "object_id"),
        Index("ix_stripe_events_seen_tenant_payment_intent", "tenant_id", "payment_intent_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(255))
    event_type: Mapped[str] = mapped_column(String(100))
    object_id: Mapped[str | None] = mapped_column(String(255))
    # The PaymentIntent of the session, charge or dispute: a refund or a dispute names only
    # that, and a session's event tells which session it belongs to without asking Stripe.
    payment_intent_id: Mapped[str | None] = mapped_column(String(255))
    event_created: Mapped[datetime] = mapped_column(UTCDateTime())
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class EmailCampaign(Base):
    """One send run: a test send to one address, or a send to everyone.

    The typed columns are what the outbox and the pages use; ``audience`` repeats them (and the
    scope) for display only and is never read to decide anything.
    """

    __tablename__ = "email_campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    email_type: Mapped[str] = mapped_column(String(64))
    audience: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Families reminded within this many days are skipped; None for a test send (never held back).
    cooldown_days: Mapped[int | None] = mapped_column(Integer)
    # What was queued when it started: emails, families skipped, and the total of the emails.
    recipient_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    skipped_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    total_cents: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # The run that queued it or last resumed it (``core.email.senders``): is anyone still sending it?
    sender: Mapped[str | None] = mapped_column(String(200))
    test_address: Mapped[str | None] = mapped_column(String(320))
    started_by: Mapped[str] = mapped_column(String(320))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[CampaignStatus] = mapped_column(
        _enum(CampaignStatus, "email_campaign_status"), default=CampaignStatus.RUNNING
    )

    messages: Mapped[list[EmailMessage]] = relationship(
        back_populates="campaign", foreign_keys="EmailMessage.campaign_id"
    )

    @property
    def is_test(self) -> bool:
        return self.test_address is not None


class EmailMessage(Base):
    """One recipient of one campaign: the outbox row and the audit record of what was sent."""

    __tablename__ = "email_messages"
    __table_args__ = (
        UniqueConstraint("campaign_id", "parent_id"),
        Index("ix_email_messages_parent_status", "parent_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("email_campaigns.id", ondelete="CASCADE"))
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    parent_id: Mapped[int] = mapped_column(ForeignKey("parents.id"))
    to_address: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(500), default="")
    amount_cents: Mapped[int] = mapped_column(Integer, default=0)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[MessageStatus] = mapped_column(
        _enum(MessageStatus, "email_message_status"), default=MessageStatus.PENDING
    )
    # Why the family was skipped (the words: ``core.email.skip_reasons.describe_skip``), and the
    # campaign of the other reminder when that is why.
    skip_reason: Mapped[SkipReason | None] = mapped_column(_enum(SkipReason, "email_skip_reason"))
    skip_campaign_id: Mapped[int | None] = mapped_column(ForeignKey("email_campaigns.id", ondelete="SET NULL"))
    message_id_header: Mapped[str] = mapped_column(String(320))
    provider_message_id: Mapped[str | None] = mapped_column(String(320))
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    html_body: Mapped[str | None] = mapped_column(Text)
    text_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The run that claimed it (``core.email.senders``): a claim of a run that died is interrupted.
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    campaign: Mapped[EmailCampaign] = relationship(back_populates="messages", foreign_keys=[campaign_id])
    parent: Mapped[Parent] = relationship()


class AuditEntry(Base):
    """Who did what, when: backfill commits, syncs, sends, exports, imports."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    actor: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64))
    summary: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


# -- the ledger ---------------------------------------------------------------------------------
#
# Every money row is a ledger entry: its id comes from ``ledger_entries``, which the charge,
# payment, allocation, adjustment or reversal row shares one to one. So one id names one entry
# whatever its kind (``python -m core reverse ENTRY_ID``), and who recorded it, when, and how
# (by hand, by the backfill, by payment sync) is kept once, on the entry. Money rows are never
# updated or deleted (the migration adds triggers that refuse it); a correction is a reversal,
# and the one column that changes is a payment's ``state``. See ``core.ledger``.


class LedgerEntryKind(str, enum.Enum):
    CHARGE = "charge"
    PAYMENT = "payment"
    ALLOCATION = "allocation"
    ADJUSTMENT = "adjustment"
    REVERSAL = "reversal"


class EntryOrigin(str, enum.Enum):
    """How an entry came to be written."""

    MANUAL = "manual"  # a treasurer or admin recorded it (page or command line)
    BACKFILL = "backfill"  # the backfill billed what a signed player owes
    PAYMENT_SYNC = "payment_sync"  # a payment made through a Stripe link
    CREDIT = "credit"  # the family's credit applied to a charge
    PRICE_CHANGE = "price_change"  # an unpaid charge billed again at a new price
    REFUND = "refund"  # what a refund re-opened
    MIGRATION = "migration"  # moved from the payment links by migration 0008


class ChargePurpose(str, enum.Enum):
    PRODUCT = "product"  # a required product of a signed player
    ORDER = "order"  # a pending order
    PERIOD = "period"  # one period of recurring dues
    INSTALLMENT = "installment"
    FEE = "fee"  # anything else the league bills a family for


class PaymentMethod(str, enum.Enum):
    STRIPE = "stripe"
    CASH = "cash"
    CHECK = "check"
    BANK = "bank"
    OTHER = "other"


class PaymentState(str, enum.Enum):
    PROCESSING = "processing"  # a delayed method (a bank debit) that has not settled yet
    SETTLED = "settled"
    FAILED = "failed"


class AdjustmentKind(str, enum.Enum):
    DISCOUNT = "discount"
    WAIVER = "waiver"
    AID = "aid"  # financial aid, a scholarship
    WRITE_OFF = "write_off"
    REFUND = "refund"  # money given back: of a payment, through Stripe or outside it


class LedgerEntry(Base):
    """The id, author and time of every money row, whatever its kind."""

    __tablename__ = "ledger_entries"
    __table_args__ = (Index("ix_ledger_entries_tenant_parent", "tenant_id", "parent_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    parent_id: Mapped[int] = mapped_column(ForeignKey("parents.id"))
    kind: Mapped[LedgerEntryKind] = mapped_column(_enum(LedgerEntryKind, "ledger_entry_kind"))
    origin: Mapped[EntryOrigin] = mapped_column(_enum(EntryOrigin, "ledger_entry_origin"))
    recorded_by: Mapped[str] = mapped_column(String(320))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Charge(Base):
    """What a family owes for one thing: a product, an order, a dues period, a fee.

    ``charge_key`` names what it is for (``product:pl12:pr3``, ``order:o7``) and is unique in
    the league, so billing it twice (a rerun of the backfill) finds the charge already there.
    It is a plain non-NULL column because a NULL (no period, no player) never collides in a
    unique constraint. A charge billed again at a new price is a new charge with the key of
    the one it replaces and ``#2``, ``#3``, ... after it.
    """

    __tablename__ = "charges"
    __table_args__ = (
        UniqueConstraint("tenant_id", "charge_key"),
        CheckConstraint("amount_cents > 0", name="amount_positive"),
        Index("ix_charges_tenant_parent", "tenant_id", "parent_id"),
    )

    id: Mapped[int] = mapped_column(ForeignKey("ledger_entries.id"), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    parent_id: Mapped[int] = mapped_column(ForeignKey("parents.id"))
    player_id: Mapped[int | None] = mapped_column(ForeignKey("players.id"), index=True)
    purpose: Mapped[ChargePurpose] = mapped_column(_enum(ChargePurpose, "charge_purpose"))
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id"), index=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)
    period: Mapped[str | None] = mapped_column(String(16))
    charge_key: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(300))
    amount_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    due_on: Mapped[date] = mapped_column(Date)

    entry: Mapped[LedgerEntry] = relationship()


class Payment(Base):
    """Money a family paid. ``state`` is the one column of a money row that may change."""

    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("amount_cents > 0", name="amount_positive"),
        Index("ix_payments_tenant_parent", "tenant_id", "parent_id"),
        # The balances look up the league's few payments not settled (processing, failed).
        Index("ix_payments_tenant_state", "tenant_id", "state"),
        # A Checkout Session is recorded once, however often payment sync sees it.
        Index(
            "uq_payments_stripe_reference",
            "tenant_id",
            "reference",
            unique=True,
            postgresql_where=text("method = 'stripe'"),
            sqlite_where=text("method = 'stripe'"),
        ),
    )

    id: Mapped[int] = mapped_column(ForeignKey("ledger_entries.id"), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    parent_id: Mapped[int] = mapped_column(ForeignKey("parents.id"))
    method: Mapped[PaymentMethod] = mapped_column(_enum(PaymentMethod, "payment_method"))
    amount_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    received_on: Mapped[date] = mapped_column(Date)
    # A check number, a bank reference, a Checkout Session id (for Stripe).
    reference: Mapped[str | None] = mapped_column(String(255))
    state: Mapped[PaymentState] = mapped_column(_enum(PaymentState, "payment_state"))
    # The Stripe link it was paid through.
    payment_link_id: Mapped[int | None] = mapped_column(ForeignKey("payment_links.id"), index=True)
    note: Mapped[str | None] = mapped_column(Text)

    entry: Mapped[LedgerEntry] = relationship()


class Adjustment(Base):
    """A discount, waiver, financial aid or write-off (reducing charges, through allocations),
    or a refund of ``payment_id`` (through Stripe when ``stripe_refund_id`` is set)."""

    __tablename__ = "adjustments"
    __table_args__ = (
        CheckConstraint("amount_cents > 0", name="amount_positive"),
        CheckConstraint(
            "(kind = 'refund' AND payment_id IS NOT NULL AND charge_id IS NULL) "
            "OR (kind <> 'refund' AND payment_id IS NULL AND stripe_refund_id IS NULL)",
            name="refund_of_a_payment",
        ),
        Index("ix_adjustments_tenant_parent", "tenant_id", "parent_id"),
    )

    id: Mapped[int] = mapped_column(ForeignKey("ledger_entries.id"), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    parent_id: Mapped[int] = mapped_column(ForeignKey("parents.id"))
    kind: Mapped[AdjustmentKind] = mapped_column(_enum(AdjustmentKind, "adjustment_kind"))
    amount_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    # The charge a reduction was asked for (NULL: spread over the family's open charges).
    charge_id: Mapped[int | None] = mapped_column(ForeignKey("charges.id"), index=True)
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"), index=True)
    # Stripe's id of the money given back: a refund's (re_...), or a lost dispute's (dp_...).
    stripe_refund_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    reason: Mapped[str] = mapped_column(Text)

    entry: Mapped[LedgerEntry] = relationship()


class RefundRequest(Base):
    """A refund of a Stripe payment as it was asked of Stripe: on record (committed) before
    Stripe is asked, finished once Stripe's answer is in the ledger, or once it is known that
    Stripe never made it. Not a money row (the refund itself is an ``Adjustment``): the request's
    bookkeeping, so that a request whose answer was lost (the process stopped after Stripe
    refunded) is finished from Stripe's own record of it, never made a second time
    (``core.ledger.refunds``). One unfinished request per payment at a time."""

    __tablename__ = "refund_requests"
    __table_args__ = (
        CheckConstraint("amount_cents > 0", name="amount_positive"),
        Index("ix_refund_requests_unfinished", "payment_id", unique=True,
              postgresql_where=text("finished_at IS NULL"), sqlite_where=text("finished_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"))
    amount_cents: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(255))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # What the refund re-opens is waived with it (``refund_payment``'s ``waive_reopened``).
    waive_reopened: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Set when finished: the refund Stripe made (None: Stripe made none for it).
    stripe_refund_id: Mapped[str | None] = mapped_column(String(255))
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Allocation(Base):
    """Part of a payment (or a reduction) settling part of a charge.

    Positive: ``payment_id`` or ``adjustment_id`` settles ``amount_cents`` of the charge.
    Negative: a refund (``adjustment_id``) re-opens that much of what ``payment_id`` had settled.
    """

    __tablename__ = "allocations"
    __table_args__ = (
        CheckConstraint(
            "(amount_cents > 0 AND (payment_id IS NULL) <> (adjustment_id IS NULL)) "
            "OR (amount_cents < 0 AND payment_id IS NOT NULL AND adjustment_id IS NOT NULL)",
            name="settles_or_reopens",
        ),
        Index("ix_allocations_tenant_charge", "tenant_id", "charge_id"),
        # A family's account (every write reads it) finds the family's allocations alone.
        Index("ix_allocations_tenant_parent", "tenant_id", "parent_id"),
    )

    id: Mapped[int] = mapped_column(ForeignKey("ledger_entries.id"), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    parent_id: Mapped[int] = mapped_column(ForeignKey("parents.id"))
    charge_id: Mapped[int] = mapped_column(ForeignKey("charges.id"), index=True)
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"), index=True)
    adjustment_id: Mapped[int | None] = mapped_column(ForeignKey("adjustments.id"), index=True)
    amount_cents: Mapped[int] = mapped_column(Integer)

    entry: Mapped[LedgerEntry] = relationship()


class ChargePositionRow(Base):
    """What the ledger leaves of one counting charge: ``open_cents`` (still to pay, before the
    family's credit) and ``processing_cents`` (paid by payments still processing). A charge
    with nothing left has no row.

    Not a money row: a stored reading of the ledger (``core.ledger.positions``), rewritten from
    it for a family in the transaction of every write to that family's account, so the league's
    balances read a few rows per open charge instead of every allocation.

    With the figures, a copy of what the balances show of the charge itself (whose player,
    which product, its description, currency and due date): a charge is never edited, so the
    copy cannot go stale, and the balances need not read the league's charges at all.
    """

    __tablename__ = "charge_positions"
    __table_args__ = (Index("ix_charge_positions_tenant_parent", "tenant_id", "parent_id"),)

    charge_id: Mapped[int] = mapped_column(ForeignKey("charges.id"), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    parent_id: Mapped[int] = mapped_column(ForeignKey("parents.id"))
    open_cents: Mapped[int] = mapped_column(BigInteger)
    processing_cents: Mapped[int] = mapped_column(BigInteger)
    # The charge's own, copied (``Charge``'s columns of the same names).
    player_id: Mapped[int | None] = mapped_column(Integer)
    product_id: Mapped[int | None] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(String(300))
    currency: Mapped[str] = mapped_column(String(3))
    due_on: Mapped[date] = mapped_column(Date)


class FamilyCreditRow(Base):
    """A family's credit, the settled money no charge took, where it is positive: like
    ``ChargePositionRow``, a stored reading of the ledger, not a money row."""

    __tablename__ = "family_credits"

    parent_id: Mapped[int] = mapped_column(ForeignKey("parents.id"), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    credit_cents: Mapped[int] = mapped_column(BigInteger)


class Reversal(Base):
    """A correction: ``reversed_entry_id`` counts for nothing from now on. Once per entry."""

    __tablename__ = "reversals"
    __table_args__ = (
        UniqueConstraint("reversed_entry_id"),
        CheckConstraint("reversed_entry_id <> id", name="not_itself"),
        Index("ix_reversals_tenant_parent", "tenant_id", "parent_id"),
    )

    id: Mapped[int] = mapped_column(ForeignKey("ledger_entries.id"), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    parent_id: Mapped[int] = mapped_column(ForeignKey("parents.id"))
    reversed_entry_id: Mapped[int] = mapped_column(ForeignKey("ledger_entries.id"))
    reason: Mapped[str] = mapped_column(Text)

    entry: Mapped[LedgerEntry] = relationship(foreign_keys=[id])
