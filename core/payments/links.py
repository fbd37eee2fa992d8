"""Payment links: how a link is minted exactly once, how one is switched off, and every change of its status.

    reserve ──> minting ──activate──> active ──mark_paid──> paid
                  │                     └──retire──> deactivated, switch-off pending ──Stripe──> deactivated
                  ├──set aside (its Stripe link is not used)──> deactivated, switch-off pending
                  └──drop (Stripe was never asked, or refused outright): the row is removed

Minted exactly once. ``reserve`` writes the link's row (``minting``, no Stripe id yet, a random
``mint_attempt``), and the caller commits it before Stripe is asked. The request's idempotency
key is made from the row's id and attempt (``link_idempotency_key``) and the link's metadata
names the row (``link_id``), so a crash between Stripe's answer and our write costs nothing: the
rerun finds the reservation and sends the very same request, and Stripe answers with the link it
made. Stripe forgets keys after a day, so the backfill first looks for an older reservation's
link among the account's links by ``link_id``. One reservation per (player, product) (a partial
unique index) keeps two runs from minting a pair at once; one active link per pair decides
between two runs that did, and ``lose_the_pair`` sets the loser's link aside. A reservation Stripe
refused outright is dropped, and the next one gets a new attempt, hence a new key: Stripe
replays a refusal to the key that got it, and SQLite gives a deleted row's id to the next row.

Switched off database first. A link to switch off is retired here first (``deactivated`` and
marked ``stripe_deactivation_pending``) and the caller commits that; only then is Stripe asked
(``SwitchOffs``, ``switch_off``), and the mark is cleared once Stripe has switched the link off
or says it has no such link (nothing can be paid through it). A crash or a refusal in between
leaves the mark, and every later backfill (payment sync, for withdrawn players' links) asks
again. Meanwhile the family is not billed for it, and payment sync records and flags a payment
made through it. The functions that take a ``Session`` never commit; ``SwitchOffs`` and
``switch_off`` take ``Sessions`` and commit each cleared mark in a unit of work of their own.
A link becomes active only in ``activate`` and is paid only in ``mark_paid``.
"""

from __future__ import annotations

import enum
import logging
import secrets
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Generic, Protocol, TypeVar

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import Session

from core.access.permissions import ActingUser
from core.db import Sessions, unit_of_work
from core.errors import PaymentProviderError
from core.models import (
    LinkStatus,
    Order,
    OrderStatus,
    Parent,
    PaymentLink,
    Player,
    PlayerStatus,
    Product,
    utcnow,
)
from core.payments.gateway import CompletedCheckout, MintedLink, PaymentGateway

log = logging.getLogger(__name__)


# -- minting: reserve, then activate -------------------------------------------------------------


def new_mint_attempt() -> str:
    """A random token naming one attempt to mint a reserved link."""
    return secrets.token_hex(8)


def link_idempotency_key(league_key: str, link_id: int, mint_attempt: str | None) -> str:
    """The key of the Stripe request minting the link reserved as row ``link_id`` in ``mint_attempt``.

    One reservation, one key: a rerun that finishes the row replays the request, and a new
    attempt (a new row after a refusal, a payment or a price change) has a new key, so Stripe
    never answers it with the old link or the old refusal. ``league_key`` (``Tenant.league_key``)
    keeps another database's league on the same Stripe account from sharing the key. A row
    reserved before attempts existed (``None``) keeps the key it was first sent with.
    """
    key = f"backfill-link:{league_key}:l{link_id}"
    return key if mint_attempt is None else f"{key}:{mint_attempt}"


@dataclass(frozen=True)
class LinkToReserve:
    """What a new link is for: a player, a product at a price tier (and an order), an amount."""

    player_id: int
    product_id: int
    price_tier_id: int
    order_id: int | None
    amount_cents: int
    currency: str


@dataclass(frozen=True)
class Reservation:
    """A reserved row: what the Stripe request for it is made of."""

    link_id: int
    mint_attempt: str | None
    reserved_at: datetime


def reserve(session: Session, user: ActingUser, wanted: Sequence[LinkToReserve]) -> list[Reservation]:
    """Write a ``minting`` row for each link wanted, in the order given (flushed, not committed).

    The caller commits before Stripe is asked. Raises ``IntegrityError`` when another run is
    minting one of the pairs (one reservation per player and product).
    """
    now = utcnow()
    rows = [
        PaymentLink(
            tenant_id=user.tenant_id, player_id=link.player_id, product_id=link.product_id,
            price_tier_id=link.price_tier_id, order_id=link.order_id, amount_cents=link.amount_cents,
            currency=link.currency, status=LinkStatus.MINTING, created_at=now, mint_attempt=new_mint_attempt(),
        )
        for link in wanted
    ]
    session.add_all(rows)
    session.flush()
    return [Reservation(row.id, row.mint_attempt, now) for row in rows]


def drop_reservations(session: Session, user: ActingUser, link_ids: Sequence[int]) -> None:
    """Remove reservations nothing exists for at Stripe: never asked, or refused outright.

    Only rows still ``minting`` go; the next run reserves again, with a new attempt.
    """
    if link_ids:
        session.execute(
            delete(PaymentLink).where(
                PaymentLink.id.in_(list(link_ids)), PaymentLink.tenant_id == user.tenant_id,
                PaymentLink.status == LinkStatus.MINTING,
            )
        )


class ActivationOutcome(str, enum.Enum):
    ACTIVATED = "activated"  # the reservation is now the pair's active link
    REPLACED = "replaced"  # ... and the link it replaces is retired: switch that one off
    NOT_MINTING = "not minting"  # another run finished or removed the reservation meanwhile
    REPLACED_LINK_CHANGED = "replaced link changed"  # it was paid, is being paid or retired: ours set aside
    SET_ASIDE = "set aside"  # another link of the pair is active: ours set aside, switch it off
    REFUSED = "refused"  # the database refused it for another reason: the reservation is left as it is


@dataclass(frozen=True)
class SwitchOff:
    """A link retired here, to be switched off in Stripe."""

    link_id: int
    stripe_payment_link_id: str


@dataclass(frozen=True)
class Activation:
    """What ``activate`` (or ``lose_the_pair``) did; ``switch_off`` is for the caller to ask
    Stripe once it has committed. ``status``/``stripe_payment_link_id``/``url`` are the
    reservation's row as it is now (``status`` None: the row is gone)."""

    outcome: ActivationOutcome
    link_id: int
    status: LinkStatus | None
    stripe_payment_link_id: str | None = None
    url: str | None = None
    switch_off: SwitchOff | None = None
    winner_id: int | None = None
    winner_url: str | None = None


def activate(session: Session, user: ActingUser, link_id: int, minted: MintedLink, *,
             replaces: int | None = None) -> Activation:
    """Record Stripe's link on the reservation ``link_id`` and make it the pair's active link.

    **A link becomes active here** (the only place). With ``replaces`` (a price change), that
    link is retired in the same transaction, first, so the one-active-link index holds at every
    statement; unless it was paid, is being paid or was retired meanwhile: then the new link is
    set aside instead. Nothing is committed; a flush raises ``IntegrityError`` when another link
    of the pair is active (the caller rolls back and calls ``lose_the_pair``).
    """
    link = locked_link(session, user, link_id)
    if link is None or link.status is not LinkStatus.MINTING:
        return _as_found(ActivationOutcome.NOT_MINTING, link_id, link)
    link.stripe_payment_link_id = minted.id
    link.url = minted.url
    retired: SwitchOff | None = None
    if replaces is not None:
        old = locked_link(session, user, replaces)
        if old is None or old.status is not LinkStatus.ACTIVE or old.processing:
            return _as_found(ActivationOutcome.REPLACED_LINK_CHANGED, link_id, link, switch_off=retire_row(link))
        retired = retire_row(old)
        session.flush()  # the old row leaves the one-active-link index before the new one enters
    link.status = LinkStatus.ACTIVE
    session.flush()
    outcome = ActivationOutcome.ACTIVATED if retired is None else ActivationOutcome.REPLACED
    return _as_found(outcome, link_id, link, switch_off=retired)


def lose_the_pair(session: Session, user: ActingUser, link_id: int, minted: MintedLink) -> Activation:
    """The database refused to activate the reservation ``link_id``: keep the pair's active link.

    Ours is set aside (Stripe's link recorded on it, retired, to be switched off). If no other
    link of the pair is active the refusal was something else, and the reservation is left as
    it is, to be looked at: switching its Stripe link off would make the next run finish the
    row with a dead link. Nothing is committed.
    """
    link = locked_link(session, user, link_id)
    if link is None or link.status is not LinkStatus.MINTING:
        return _as_found(ActivationOutcome.NOT_MINTING, link_id, link)
    winner = session.execute(
        select(PaymentLink.id, PaymentLink.url).where(
            PaymentLink.tenant_id == user.tenant_id, PaymentLink.player_id == link.player_id,
            PaymentLink.product_id == link.product_id, PaymentLink.status == LinkStatus.ACTIVE,
        )
    ).first()
    if winner is None:
        return _as_found(ActivationOutcome.REFUSED, link_id, link)
    link.stripe_payment_link_id, link.url = minted.id, minted.url
    switch_off = retire_row(link)
    return _as_found(ActivationOutcome.SET_ASIDE, link_id, link, switch_off=switch_off,
                     winner_id=winner.id, winner_url=winner.url)


# -- paying ------------------------------------------------------------------------------------


def mark_paid(session: Session, user: ActingUser, link: PaymentLink, checkout: CompletedCheckout, *,
              amount_mismatch: bool) -> None:
    """Record that ``checkout`` paid ``link`` (a row the caller locked). Nothing is committed.

    **A link is paid here** (the only place): paid time, amount and session are kept, and a
    pending order the link was made for is paid with it. A link retired and still waiting to be
    switched off keeps its mark, so Stripe is still asked to switch it off.
    """
    link.status = LinkStatus.PAID
    link.paid_at = checkout.created
    link.paid_amount_cents = checkout.amount_total
    link.checkout_session_id = checkout.id
    link.amount_mismatch = amount_mismatch
    if link.order_id is not None:
        order = session.scalars(
            select(Order).where(Order.id == link.order_id, Order.tenant_id == user.tenant_id).with_for_update()
        ).one_or_none()
        if order is not None and order.status is OrderStatus.PENDING:
            order.status = OrderStatus.PAID


def set_processing(link: PaymentLink, processing: bool) -> None:
    """Whether a payment on ``link`` is still processing (a delayed method): it stays owed meanwhile."""
    link.processing = processing


# -- switching off: the database first, then Stripe ----------------------------------------------


def retire(session: Session, user: ActingUser, link_id: int) -> SwitchOff | None:
    """Retire the active link ``link_id``: deactivated here, marked to be switched off in Stripe.

    Returns what to switch off once the caller has committed; ``None`` when the link is no
    longer active (paid meanwhile: what was recorded stays). Nothing is committed.
    """
    link = locked_link(session, user, link_id)
    if link is None or link.status is not LinkStatus.ACTIVE:
        return None
    return retire_row(link)


@dataclass(frozen=True)
class PendingSwitchOff:
    """A link retired here (replaced at a new price, minted and not used, a withdrawn player's)
    that Stripe has not switched off yet: its row is marked ``stripe_deactivation_pending``."""

    link_id: int
    stripe_payment_link_id: str
    player_name: str
    parent_name: str
    product_name: str


def links_awaiting_switch_off(session: Session, user: ActingUser, *,
                        withdrawn_players_only: bool = False) -> tuple[PendingSwitchOff, ...]:
    """The league's links retired here that Stripe has not switched off yet (one query)."""
    query = (
        select(PaymentLink.id, PaymentLink.stripe_payment_link_id, Player.first_name, Player.last_name,
               Parent.name, Product.name)
        .join(Player, Player.id == PaymentLink.player_id)
        .join(Parent, Parent.id == Player.parent_id)
        .join(Product, Product.id == PaymentLink.product_id)
        .where(PaymentLink.tenant_id == user.tenant_id, PaymentLink.stripe_deactivation_pending.is_(True),
               PaymentLink.stripe_payment_link_id.is_not(None))
        .order_by(PaymentLink.id)
    )
    if withdrawn_players_only:
        query = query.where(Player.status == PlayerStatus.WITHDRAWN)
    return tuple(
        PendingSwitchOff(link_id, stripe_id, f"{first} {last}".strip(), parent_name, product_name)
        for link_id, stripe_id, first, last, parent_name, product_name in session.execute(query)
        if stripe_id is not None  # (always, by the query: this tells the type checker)
    )


class _SwitchOffTarget(Protocol):
    @property
    def link_id(self) -> int: ...

    @property
    def stripe_payment_link_id(self) -> str: ...


L = TypeVar("L", bound=_SwitchOffTarget)


@dataclass(frozen=True)
class SwitchOffOutcome(Generic[L]):
    link: L
    retry: bool  # the link was retired by an earlier run
    error: PaymentProviderError | None

    @property
    def switched_off(self) -> bool:
        return self.error is None


class SwitchOffs(Generic[L]):
    """Ask Stripe to switch off links already retired here, several at once, and clear each
    one's mark once Stripe has. **Commits** the cleared marks (a unit of work of its own).

    Use it as a context manager: ``ask`` returns at once; leaving the block waits for every
    call asked, records the links Stripe switched off, and then ``outcomes`` holds one per
    link. Left by an exception (Ctrl-C, a crash of the caller), it still waits and records
    what Stripe did, so those links are not reported as still on, and the exception goes on.
    An error that is not Stripe's (a bug) is raised when the block ends.
    """

    def __init__(self, sessions: Engine | Sessions, user: ActingUser, gateway: PaymentGateway, *,
                 concurrency: int) -> None:
        self._sessions = sessions
        self._user = user
        self._gateway = gateway
        self._concurrency = max(1, concurrency)
        self._pool: ThreadPoolExecutor | None = None
        self._asked: list[tuple[L, bool, Future[None]]] = []
        self.outcomes: list[SwitchOffOutcome[L]] = []

    def __enter__(self) -> SwitchOffs[L]:
        self._pool = ThreadPoolExecutor(max_workers=self._concurrency, thread_name_prefix="stripe-switch-off")
        return self

    def ask(self, link: L, *, retry: bool = False) -> None:
        assert self._pool is not None, "use SwitchOffs as a context manager"
        future = self._pool.submit(_switch_off_at_stripe, self._gateway, link.stripe_payment_link_id)
        self._asked.append((link, retry, future))

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        assert self._pool is not None
        self._pool.shutdown(wait=True)
        done = [(link, retry, future.exception()) for link, retry, future in self._asked]
        switched_off = [link.link_id for link, _, error in done if error is None]
        unexpected = next((error for _, _, error in done
                           if error is not None and not isinstance(error, PaymentProviderError)), None)
        for link, retry, error in done:
            if error is None or isinstance(error, PaymentProviderError):
                self.outcomes.append(SwitchOffOutcome(link, retry, error))
        if exc_type is not None:
            try:
                _clear_marks(self._sessions, self._user, switched_off)
            except Exception:  # noqa: BLE001 - the original error is the one to report
                log.warning("Could not record the links Stripe switched off", exc_info=True)
            return
        _clear_marks(self._sessions, self._user, switched_off)
        if unexpected is not None:
            raise unexpected


def switch_off(sessions: Engine | Sessions, user: ActingUser, gateway: PaymentGateway,
               link: SwitchOff) -> PaymentProviderError | None:
    """Ask Stripe to switch off one link retired here (committed), then clear its mark.

    **Commits** the cleared mark. Returns Stripe's error, if any: the mark then stays, and the
    next run asks again.
    """
    try:
        _switch_off_at_stripe(gateway, link.stripe_payment_link_id)
    except PaymentProviderError as exc:
        log.warning("Could not switch off payment link %s: %s", link.stripe_payment_link_id, exc)
        return exc
    _clear_marks(sessions, user, [link.link_id])
    return None


def switch_off_unrecorded(gateway: PaymentGateway, stripe_payment_link_id: str) -> None:
    """Switch off a Stripe link no row records (another run removed its reservation meanwhile).

    The one exception to "the database first": there is no row to mark, so Stripe is asked
    directly, and a failure is logged for the operator (the link is in the account's list).
    """
    try:
        _switch_off_at_stripe(gateway, stripe_payment_link_id)
    except PaymentProviderError as exc:
        log.warning("Could not switch off unused payment link %s: %s", stripe_payment_link_id, exc)


def locked_link(session: Session, user: ActingUser, link_id: int) -> PaymentLink | None:
    """The league's link ``link_id``, locked for this transaction and read afresh."""
    return session.scalars(
        select(PaymentLink)
        .where(PaymentLink.id == link_id, PaymentLink.tenant_id == user.tenant_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()


def retire_row(link: PaymentLink) -> SwitchOff:
    """Retire a locked, active ``link`` row: deactivated here, marked to be switched off in Stripe.
    Nothing is committed; the caller switches it off (``switch_off``) once it has."""
    link.status = LinkStatus.DEACTIVATED
    link.deactivated_at = utcnow()
    link.stripe_deactivation_pending = True  # cleared once Stripe has switched it off
    assert link.stripe_payment_link_id is not None
    return SwitchOff(link.id, link.stripe_payment_link_id)


def _as_found(outcome: ActivationOutcome, link_id: int, link: PaymentLink | None, *,
              switch_off: SwitchOff | None = None, winner_id: int | None = None,
              winner_url: str | None = None) -> Activation:
    if link is None:
        return Activation(outcome, link_id, None)
    return Activation(outcome, link_id, link.status, link.stripe_payment_link_id, link.url,
                      switch_off=switch_off, winner_id=winner_id, winner_url=winner_url)


def switch_off_at_stripe(gateway: PaymentGateway, stripe_payment_link_id: str) -> None:
    """Ask Stripe to switch a link retired here off (item or family link: ``core.payments.family_links``).

    Done when Stripe switches the link off, or has no such link (404: nothing can be paid
    through it); ``PaymentProviderError`` otherwise, and the caller keeps the link's mark."""
    _switch_off_at_stripe(gateway, stripe_payment_link_id)


def _switch_off_at_stripe(gateway: PaymentGateway, stripe_payment_link_id: str) -> None:
    """Stripe switches the link off, or has no such link (404: nothing can be paid through it)."""
    try:
        gateway.deactivate_payment_link(stripe_payment_link_id)
    except PaymentProviderError as exc:
        if exc.http_status != 404:
            raise


def _clear_marks(sessions: Engine | Sessions, user: ActingUser, link_ids: Sequence[int]) -> None:
    """Stripe has switched these links off: nothing is waiting for them any more (commits)."""
    if not link_ids:
        return
    with unit_of_work(sessions) as session:
        session.execute(
            update(PaymentLink)
            .where(PaymentLink.id.in_(list(link_ids)), PaymentLink.tenant_id == user.tenant_id)
            .values(stripe_deactivation_pending=False)
            .execution_options(synchronize_session=False)
        )
