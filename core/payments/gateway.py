"""The payment provider port: what the product asks of Stripe, in the product's own terms.

Domain code (the backfill, payment sync) depends on ``PaymentGateway`` and the small
value types below, never on the Stripe SDK. The one real implementation lives in
``core.payments.stripe_gateway``; the composition root (``core.composition``) builds it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from core.errors import BillingError


class WebhookRejected(BillingError):
    """A webhook request that is not a genuine Stripe event for this endpoint (bad signature, not an event)."""


class StripeNotConfigured(BillingError):
    """Minting or syncing was asked for, but no Stripe API key is configured."""

    def __init__(self, action: str = "talk to Stripe") -> None:
        super().__init__(
            f"STRIPE_API_KEY is not set: add it to the environment or .streamlit/secrets.toml "
            f"to {action}."
        )


@dataclass(frozen=True)
class PaymentLinkRequest:
    """One persistent Payment Link for one Price, quantity one.

    ``single_payment`` lets the link be paid once only (one-time products);
    ``save_payment_method`` keeps the card on a new Stripe Customer for later off-session
    charges (monthly products).
    """

    price_id: str
    success_url: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    single_payment: bool = False
    save_payment_method: bool = False
    # Shown beside Checkout's pay button (a family link names the family there: its line item
    # is the league's shared balance product).
    submit_message: str | None = None


@dataclass(frozen=True)
class MintedLink:
    """A Payment Link as Stripe returned it."""

    id: str
    url: str
    active: bool = True
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CompletedCheckout:
    """One completed Checkout Session (someone finished paying through a link)."""

    id: str
    payment_link_id: str | None
    payment_status: str  # "paid", "unpaid" (payment still processing) or "no_payment_required"
    amount_total: int | None
    currency: str | None
    created: datetime
    metadata: Mapping[str, str] = field(default_factory=dict)
    customer_id: str | None = None
    payment_intent_id: str | None = None  # where the money moves (refunds and disputes name it)

    @property
    def paid(self) -> bool:
        return self.payment_status in {"paid", "no_payment_required"}


@dataclass(frozen=True)
class RefundReceipt:
    """A refund as the provider made it. ``status``: ``succeeded``, ``pending`` (money on its
    way back), ``requires_action``, ``failed`` or ``canceled``."""

    id: str
    amount_cents: int
    currency: str
    status: str
    payment_intent_id: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)  # as it was asked (``refund``'s)


# A refund Stripe made (or is making): not one that failed or was canceled.
REFUND_MADE_STATUSES = frozenset({"succeeded", "pending", "requires_action"})


@dataclass(frozen=True)
class DisputeNotice:
    """A card holder's dispute of a payment, as Stripe reported it. ``status``: Stripe's
    (``needs_response``, ``under_review``, ``won``, ``lost``, ...)."""

    id: str
    amount_cents: int
    currency: str
    reason: str
    status: str


@dataclass(frozen=True)
class ProviderEvent:
    """One of Stripe's events, in the product's terms: what happened, to what, when.

    ``checkout`` is the Checkout Session as it was when the event happened (``checkout.session.*``);
    ``payment_intent_id`` names the payment a charge or a dispute event is about; ``dispute``
    is the dispute of a ``charge.dispute.*`` event.
    """

    id: str
    type: str
    created: datetime
    object_id: str | None = None
    checkout: CompletedCheckout | None = None
    payment_intent_id: str | None = None
    dispute: DisputeNotice | None = None


class PaymentGateway(Protocol):
    """What the product needs from the payment provider. Errors are ``PaymentProviderError``."""

    live_mode: bool  # whether what it creates takes real money

    def create_price(
        self,
        *,
        amount_cents: int,
        currency: str,
        product_name: str,
        metadata: Mapping[str, str],
        idempotency_key: str,
        product_id: str | None = None,
    ) -> str:
        """Create a one-time Price (on ``product_id``, else with its own provider product named
        ``product_name``); return the Price id."""
        ...

    def create_product(self, *, name: str, metadata: Mapping[str, str], idempotency_key: str) -> str:
        """Create a provider Product; return its id (the same key returns the same product)."""
        ...

    def create_payment_link(self, request: PaymentLinkRequest, *, idempotency_key: str) -> MintedLink:
        """Create a Payment Link; the same key returns the same link instead of a second one."""
        ...

    def deactivate_payment_link(self, link_id: str) -> MintedLink:
        """Stop a link from taking payments (it keeps existing at the provider)."""
        ...

    def list_payment_links(self, *, active: bool | None = None) -> Iterator[MintedLink]:
        """Every Payment Link of the account (only active or inactive ones if asked), newest
        first, fetched page by page as iterated. The provider cannot search links by metadata."""
        ...

    def list_completed_checkout_sessions(
        self, *, payment_link: str | None = None, created_since: datetime | None = None
    ) -> Iterator[CompletedCheckout]:
        """Every completed Checkout Session, newest first, fetched page by page as iterated."""
        ...

    def list_events(
        self, *, types: Sequence[str], created_since: datetime | None = None
    ) -> Iterator[ProviderEvent]:
        """The account's events of ``types`` created since ``created_since`` (all Stripe keeps,
        30 days, when None), newest first, fetched page by page as iterated."""
        ...

    def checkout_for_payment_intent(self, payment_intent_id: str) -> CompletedCheckout | None:
        """The completed Checkout Session whose payment is ``payment_intent_id``, if any."""
        ...

    def payment_intent_of(self, checkout_session: str) -> str:
        """The PaymentIntent of the payment made in ``checkout_session`` (what a refund names)."""
        ...

    def list_refunds(
        self, *, payment_intent_id: str | None = None, created_since: datetime | None = None
    ) -> Iterator[RefundReceipt]:
        """The account's refunds (made here or in Stripe's dashboard), of one PaymentIntent and/or
        created since a time, newest first, fetched page by page as iterated."""
        ...

    def refund(
        self,
        *,
        amount_cents: int,
        idempotency_key: str,
        checkout_session: str | None = None,
        payment_intent: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> RefundReceipt:
        """Give back ``amount_cents`` of the payment made in a Checkout Session (or of a
        PaymentIntent); the same key returns the same refund instead of a second one."""
        ...


def league_metadata(*, tenant_id: int, league_key: str) -> dict[str, str]:
    """The metadata naming the league on what the backfill creates at Stripe.

    A league still on ``t<id>`` (created before ``stripe_namespace``) gets no ``league_key``:
    its requests must stay exactly as they were, or a reservation an interrupted run left
    would be refused by Stripe (same idempotency key, other parameters).
    """
    metadata = {"tenant_id": str(tenant_id)}
    if league_key != f"t{tenant_id}":
        metadata["league_key"] = league_key
    return metadata


def names_league(metadata: Mapping[str, str], *, tenant_id: int, league_key: str) -> bool:
    """Whether metadata this product wrote (the backfill's, on a Price, a Payment Link, or the
    Checkout Sessions it is copied to; a refund's) names this league: by ``league_key``, or, on links minted before
    the key existed, by ``tenant_id`` alone when the league still uses ``t<id>``."""
    if "league_key" in metadata:
        return metadata["league_key"] == league_key
    return league_key == f"t{tenant_id}" and metadata.get("tenant_id") == str(tenant_id)
