"""Family links: one Stripe Payment Link for a family's whole open balance, and every change of its status.

    reserve ──> minting ──activate──> active ──mark_paid──> paid
                  │                     └──retire (balance changed, or nothing owed)──> deactivated,
                  │                                switch-off pending ──Stripe──> deactivated
                  ├──set aside (the balance changed while it was minted)──> deactivated, switch-off pending
                  └──drop (Stripe refused outright): the row is removed

A sibling of ``core.payments.links`` (item links), with the same two protocols, and the only
module that changes a ``family_links`` row:

Minted exactly once. ``refresh_family_links`` reserves a ``minting`` row (a random
``mint_attempt``) and commits it before Stripe is asked; the request's idempotency key is the
row's id and attempt (``family_link_idempotency_key``) and the link's metadata names the row
(``family_link_id``), so a crash between Stripe's answer and our commit costs nothing: the next
run finds the reservation and sends the very same request, and Stripe answers with the link it
made (after Stripe's 24 hours, the account's links are searched for the row's id instead). One
reservation and one active link per family (partial unique indexes) keep two runs from minting
a pair.

Replaced new first, switched off database first. When the family's balance
(``core.reporting.balances.outstanding_balances``, the one figure) is no longer the link's
amount, a new link is minted at the balance; ``activate`` then retires the old one in the same
transaction (deactivated, ``stripe_deactivation_pending``), and only after that commit is Stripe
asked to switch it off; the mark is cleared once it has (or says it has no such link). A crash
or a refusal leaves the mark and every later refresh asks again. A family that owes nothing
any more has its link retired the same way. A payment through a retired link is still recorded
(``core.ledger.stripe_payments.follow_family_link``): what it overpays becomes credit, flagged.

Prices: one Stripe Product per league (``Tenant.stripe_balance_product_id``, the checkout's line
item: "<league> — family balance"), one Price per distinct amount (``balance_prices``), shared by
every family link for it; each is created with a deterministic key and stored once. Checkout
names the family beside its pay button (``submit_message``): Stripe names a line item after its
product, and a product per family would mean a Price per family too.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, Permission, require
from core.db import Sessions, as_sessions, unit_of_work
from core.errors import PaymentProviderError
from core.models import BalancePrice, FamilyLink, LinkStatus, Player, Tenant, utcnow
from core.payments import links
from core.payments.gateway import (
    CompletedCheckout,
    MintedLink,
    PaymentGateway,
    PaymentLinkRequest,
    league_metadata,
    names_league,
)
from core.payments.provider_calls import run_concurrently
from core.reporting.balances import BalanceFilter, OutstandingBalance, outstanding_balances
from core.settings import ConfigurationError, success_url_problem

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 8
# Stripe keeps an idempotency key for at least 24 hours; an hour's margin on top.
KEY_MEMORY = timedelta(hours=23)
# Links activated per transaction: committing each alone would hold up the next requests.
ACTIVATION_BATCH = 10


# -- keys and names ------------------------------------------------------------------------------


def family_link_idempotency_key(league_key: str, link_id: int, mint_attempt: str) -> str:
    """The key of the request minting the family link reserved as row ``link_id`` in ``mint_attempt``."""
    return f"family-link:{league_key}:f{link_id}:{mint_attempt}"


def balance_product_idempotency_key(league_key: str) -> str:
    return f"family-balance-product:{league_key}"


def balance_price_idempotency_key(league_key: str, currency: str, amount_cents: int) -> str:
    return f"family-balance-price:{league_key}:{currency}{amount_cents}"


def balance_product_name(league_name: str) -> str:
    """The checkout's line item: the league's balance product."""
    return f"{league_name} — family balance"


def family_label(parent_name: str, player_last_names: Iterable[str]) -> str:
    """"García family" when the family's players share a last name, else "<parent>'s family"."""
    names = {name.strip() for name in player_last_names if name.strip()}
    return f"{names.pop()} family" if len(names) == 1 else f"{parent_name.strip()}'s family"


# -- the transitions (take a Session, never commit) --------------------------------------------


def reserve(session: Session, user: ActingUser, *, parent_id: int, amount_cents: int, currency: str) -> FamilyLink:
    """Write a ``minting`` row for ``parent_id`` at ``amount_cents`` (flushed, not committed).

    Raises ``IntegrityError`` when another run is minting for the family."""
    row = FamilyLink(tenant_id=user.tenant_id, parent_id=parent_id, amount_cents=amount_cents, currency=currency,
                     status=LinkStatus.MINTING, mint_attempt=secrets.token_hex(8), created_at=utcnow())
    session.add(row)
    session.flush()
    return row


def drop_reservation(session: Session, user: ActingUser, link_id: int) -> None:
    """Remove a reservation Stripe refused outright (the next run reserves again, with a new key)."""
    session.execute(delete(FamilyLink).where(FamilyLink.id == link_id, FamilyLink.tenant_id == user.tenant_id,
                                             FamilyLink.status == LinkStatus.MINTING))


@dataclass(frozen=True)
class FamilySwitchOff:
    """A family link retired here, to be switched off in Stripe once the caller has committed."""

    link_id: int
    stripe_payment_link_id: str


def activate(session: Session, user: ActingUser, link_id: int, minted: MintedLink, *,
             balance_cents: int) -> tuple[bool, list[FamilySwitchOff]]:
    """Record Stripe's link on reservation ``link_id``; make it the family's active link if the
    family still owes exactly its amount (``balance_cents``), retiring the one it replaces first.
    Otherwise it is set aside (retired, to switch off). Returns (activated, what to switch off).
    **A family link becomes active here** (the only place). Nothing is committed."""
    link = locked(session, user, link_id)
    if link is None or link.status is not LinkStatus.MINTING:
        return False, []
    link.stripe_payment_link_id, link.url = minted.id, minted.url
    if link.amount_cents != balance_cents:
        return False, [retire_row(link)]
    switch_offs = [retire_row(old) for old in session.scalars(
        select(FamilyLink).where(FamilyLink.tenant_id == user.tenant_id, FamilyLink.parent_id == link.parent_id,
                                 FamilyLink.status == LinkStatus.ACTIVE).with_for_update())]
    session.flush()  # the old row leaves the one-active index before the new one enters
    link.status = LinkStatus.ACTIVE
    session.flush()
    return True, switch_offs


def retire(session: Session, user: ActingUser, link_id: int) -> FamilySwitchOff | None:
    """Retire the active family link ``link_id`` (None when it is no longer active). Nothing is committed."""
    link = locked(session, user, link_id)
    if link is None or link.status is not LinkStatus.ACTIVE:
        return None
    return retire_row(link)


def retire_row(link: FamilyLink) -> FamilySwitchOff:
    """Retire a locked family link row: deactivated here, marked to be switched off in Stripe."""
    link.status = LinkStatus.DEACTIVATED
    link.retired_at = utcnow()
    link.stripe_deactivation_pending = True  # cleared once Stripe has switched it off
    assert link.stripe_payment_link_id is not None
    return FamilySwitchOff(link.id, link.stripe_payment_link_id)


def mark_paid(link: FamilyLink, checkout: CompletedCheckout) -> None:
    """Record that ``checkout`` paid ``link`` (a locked row). **A family link is paid here** (the only
    place). A retired link keeps its switch-off mark; one paid while active needs no switch-off
    (its one completed session is Stripe's limit). Nothing is committed."""
    if link.status is LinkStatus.ACTIVE:
        link.status = LinkStatus.PAID
    link.paid_at = checkout.created
    link.checkout_session_id = checkout.id


def locked(session: Session, user: ActingUser, link_id: int) -> FamilyLink | None:
    """The league's family link ``link_id``, locked for this transaction and read afresh."""
    return session.scalars(
        select(FamilyLink).where(FamilyLink.id == link_id, FamilyLink.tenant_id == user.tenant_id)
        .with_for_update().execution_options(populate_existing=True)
    ).one_or_none()


def family_link_by_stripe_id(session: Session, user: ActingUser, stripe_payment_link_id: str) -> FamilyLink | None:
    """The league's family link that Stripe calls ``stripe_payment_link_id``, locked; None if none."""
    return session.scalars(
        select(FamilyLink).where(FamilyLink.tenant_id == user.tenant_id,
                                 FamilyLink.stripe_payment_link_id == stripe_payment_link_id)
        .with_for_update().execution_options(populate_existing=True)
    ).one_or_none()


# -- the workflow: the family's link at its balance ---------------------------------------------


@dataclass(frozen=True)
class FamilyLinkMinting:
    """What minting family links needs: the Stripe gateway and the thank-you page."""

    gateway: PaymentGateway
    success_url: str
    concurrency: int = DEFAULT_CONCURRENCY


@dataclass
class FamilyLinksResult:
    """What ``refresh_family_links`` did."""

    minted: int = 0  # new links (first ones and replacements)
    replaced: int = 0  # of those, replacing a link at an older balance
    retired: int = 0  # links of families who owe nothing any more
    switched_off: int = 0  # retired links Stripe has switched off
    prices_created: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True)
class _Wanted:
    parent_id: int
    amount_cents: int
    currency: str
    label: str
    active_id: int | None


@dataclass(frozen=True)
class _Job:
    link_id: int
    parent_id: int
    amount_cents: int
    currency: str
    mint_attempt: str
    label: str
    reserved_at: datetime
    replaces: bool


def refresh_family_links(
    sessions: Engine | Sessions,
    user: ActingUser,
    minting: FamilyLinkMinting,
    *,
    parent_ids: Iterable[int] | None = None,
    mint_missing: bool = True,
) -> FamilyLinksResult:
    """Give each family (of ``parent_ids``, else the league) a link at exactly its balance.

    A family whose active link is for another amount gets a new one, and the old one is
    switched off (new first; the database first). A family that owes nothing has its link
    switched off. With ``mint_missing`` (the email send, the backfill: ``MINT_LINKS``) a family
    that owes and has no link gets one; without it (after a ledger change or a sync) only
    families that have one are kept at their balance. **Commits** in units of work of its own,
    and never holds a transaction while Stripe is asked. Stripe's errors do not raise: they are
    in ``result.errors``, and the next refresh finishes the work.
    """
    require(user, Permission.MINT_LINKS if mint_missing else Permission.SYNC_PAYMENTS)
    if mint_missing:
        success_url_problem(minting.success_url, live=minting.gateway.live_mode)  # refuses the placeholder for live links
    return _Refresh(as_sessions(sessions), user, minting, parent_ids=parent_ids, mint_missing=mint_missing).run()


class _Refresh:
    def __init__(self, sessions: Sessions, user: ActingUser, minting: FamilyLinkMinting, *,
                 parent_ids: Iterable[int] | None, mint_missing: bool) -> None:
        self.sessions = sessions
        self.user = user
        self.gateway = minting.gateway
        self.success_url = minting.success_url
        self.concurrency = max(1, minting.concurrency)
        self.parent_ids = frozenset(parent_ids) if parent_ids is not None else None
        self.mint_missing = mint_missing
        self.result = FamilyLinksResult()
        with unit_of_work(sessions) as session:
            tenant = session.get_one(Tenant, user.tenant_id)
            self.league_key, self.league_name = tenant.league_key, tenant.name
            self.product_id = tenant.stripe_balance_product_id

    def run(self) -> FamilyLinksResult:
        switch_offs = self._pending_switch_offs()
        wanted, to_retire = self._plan()
        switch_offs += self._retire(to_retire)
        if wanted and not self.mint_missing:
            try:
                success_url_problem(self.success_url, live=self.gateway.live_mode)
            except ConfigurationError as refused:  # a change of balance: what it committed stands
                self.result.errors.append(str(refused))
                wanted = []
        if wanted:
            prices = self._prices({(w.currency, w.amount_cents) for w in wanted})
            jobs = self._reserve([w for w in wanted if (w.currency, w.amount_cents) in prices])
            switch_offs += self._mint(jobs, prices)
        self._switch_off(switch_offs)
        return self.result

    # -- what is owed, and what there is ---------------------------------------------------------

    def _plan(self) -> tuple[list[_Wanted], list[int]]:
        with unit_of_work(self.sessions) as session:
            balances = {} if self.parent_ids == frozenset() else self._owing(session, self.parent_ids)
            query = select(FamilyLink.id, FamilyLink.parent_id, FamilyLink.amount_cents).where(
                FamilyLink.tenant_id == self.user.tenant_id, FamilyLink.status == LinkStatus.ACTIVE)
            if self.parent_ids is not None:
                query = query.where(FamilyLink.parent_id.in_(sorted(self.parent_ids)))
            active = {parent_id: (link_id, amount) for link_id, parent_id, amount in session.execute(query)}
            last_names: dict[int, list[str]] = {}
            wanted_ids = [p for p in balances if p in active or self.mint_missing]
            for parent_id, last_name in session.execute(
                select(Player.parent_id, Player.last_name).where(
                    Player.tenant_id == self.user.tenant_id, Player.parent_id.in_(wanted_ids))
            ):
                last_names.setdefault(parent_id, []).append(last_name)
        wanted = []
        for parent_id in wanted_ids:
            balance = balances[parent_id]
            link_id, amount = active.get(parent_id, (None, None))
            if amount == balance.total_cents:
                continue
            wanted.append(_Wanted(parent_id, balance.total_cents, balance.currency.lower(),
                                  family_label(balance.parent_name, last_names.get(parent_id, ())), link_id))
        to_retire = [link_id for parent_id, (link_id, _) in active.items() if parent_id not in balances]
        return wanted, to_retire

    def _owing(self, session: Session, parent_ids: frozenset[int] | None) -> dict[int, OutstandingBalance]:
        """The families that owe something (``outstanding_balances``; all of them with ``None``)."""
        scope = BalanceFilter(parent_ids=parent_ids or frozenset())
        return {balance.parent_id: balance for balance in outstanding_balances(session, self.user, scope)
                if balance.total_cents > 0}

    def _retire(self, link_ids: Sequence[int]) -> list[FamilySwitchOff]:
        if not link_ids:
            return []
        with unit_of_work(self.sessions) as session:
            retired = [s for link_id in link_ids if (s := retire(session, self.user, link_id)) is not None]
        self.result.retired += len(retired)
        return retired

    def _pending_switch_offs(self) -> list[FamilySwitchOff]:
        """Links an earlier run retired that Stripe has not switched off yet: asked again."""
        with unit_of_work(self.sessions) as session:
            query = select(FamilyLink.id, FamilyLink.stripe_payment_link_id).where(
                FamilyLink.tenant_id == self.user.tenant_id, FamilyLink.stripe_deactivation_pending.is_(True),
                FamilyLink.stripe_payment_link_id.is_not(None))
            if self.parent_ids is not None:
                query = query.where(FamilyLink.parent_id.in_(sorted(self.parent_ids)))
            return [FamilySwitchOff(link_id, stripe_id) for link_id, stripe_id in session.execute(query) if stripe_id]

    # -- the balance product and its prices -----------------------------------------------------

    def _product(self) -> str | None:
        if self.product_id:
            return self.product_id
        try:
            product_id = self.gateway.create_product(
                name=balance_product_name(self.league_name),
                metadata={**self._league(), "kind": "family_balance"},
                idempotency_key=balance_product_idempotency_key(self.league_key))
        except PaymentProviderError as exc:
            self.result.errors.append(f"creating the league's balance product: {exc}")
            return None
        with unit_of_work(self.sessions) as session:
            session.execute(update(Tenant).where(Tenant.id == self.user.tenant_id,
                                                 Tenant.stripe_balance_product_id.is_(None))
                            .values(stripe_balance_product_id=product_id))
            stored = session.get_one(Tenant, self.user.tenant_id, populate_existing=True).stripe_balance_product_id
        self.product_id = stored or product_id
        return self.product_id

    def _prices(self, amounts: set[tuple[str, int]]) -> dict[tuple[str, int], str]:
        """(currency, amount) -> the Stripe Price of the balance product at it (made if missing)."""
        with unit_of_work(self.sessions) as session:
            known = {(row.currency, row.amount_cents): row.stripe_price_id for row in session.scalars(
                select(BalancePrice).where(BalancePrice.tenant_id == self.user.tenant_id))}
            for currency, amount in sorted(amounts - set(known)):
                try:
                    with session.begin_nested():
                        session.add(BalancePrice(tenant_id=self.user.tenant_id, amount_cents=amount,
                                                 currency=currency))
                except IntegrityError:  # another run wrote the row meanwhile
                    pass
        prices = {key: price for key, price in known.items() if price and key in amounts}
        missing = sorted(amounts - set(prices))
        if not missing:
            return prices
        product_id = self._product()
        if product_id is None:
            return prices

        def task(currency: str, amount: int) -> Callable[[], str]:
            return lambda: self.gateway.create_price(
                amount_cents=amount, currency=currency, product_name=balance_product_name(self.league_name),
                metadata={**self._league(), "kind": "family_balance"}, product_id=product_id,
                idempotency_key=balance_price_idempotency_key(self.league_key, currency, amount))

        def record(key: tuple[str, int], price_id: str | None, error: PaymentProviderError | None) -> None:
            if error is not None:
                self.result.errors.append(f"creating the balance price of {key[1]} {key[0]}: {error}")
                return
            assert price_id is not None
            with unit_of_work(self.sessions) as session:
                stored = cast(CursorResult[Any], session.execute(
                    update(BalancePrice).where(BalancePrice.tenant_id == self.user.tenant_id,
                                               BalancePrice.currency == key[0], BalancePrice.amount_cents == key[1],
                                               BalancePrice.stripe_price_id.is_(None))
                    .values(stripe_price_id=price_id))).rowcount
                if not stored:
                    price_id = session.scalar(select(BalancePrice.stripe_price_id).where(
                        BalancePrice.tenant_id == self.user.tenant_id, BalancePrice.currency == key[0],
                        BalancePrice.amount_cents == key[1])) or price_id
                else:
                    self.result.prices_created += 1
            prices[key] = price_id

        run_concurrently([(key, task(*key)) for key in missing], concurrency=self.concurrency,
                         on_done=record, thread_name_prefix="stripe-price")
        return prices

    # -- reserve, mint, activate ------------------------------------------------------------------

    def _reserve(self, wanted: Sequence[_Wanted]) -> list[_Job]:
        """A reservation per family, committed before Stripe is asked. A reservation left by an
        earlier run (a crash) is reused as it is: its request is sent again, with its key."""
        ids = [w.parent_id for w in wanted]
        jobs: list[_Job] = []
        with unit_of_work(self.sessions) as session:
            left = {row.parent_id: row for row in session.scalars(
                select(FamilyLink).where(FamilyLink.tenant_id == self.user.tenant_id,
                                         FamilyLink.status == LinkStatus.MINTING, FamilyLink.parent_id.in_(ids)))}
            # Another run may have minted the very link wanted since the plan was read.
            done = {(parent_id, amount) for parent_id, amount in session.execute(
                select(FamilyLink.parent_id, FamilyLink.amount_cents).where(
                    FamilyLink.tenant_id == self.user.tenant_id, FamilyLink.status == LinkStatus.ACTIVE,
                    FamilyLink.parent_id.in_(ids)))}
            for w in wanted:
                if (w.parent_id, w.amount_cents) in done:
                    continue
                row = left.get(w.parent_id)
                if row is None:
                    try:
                        with session.begin_nested():
                            row = reserve(session, self.user, parent_id=w.parent_id, amount_cents=w.amount_cents,
                                          currency=w.currency)
                    except IntegrityError:
                        continue  # another run is minting this family's link right now
                jobs.append(_Job(row.id, w.parent_id, row.amount_cents, row.currency, row.mint_attempt, w.label,
                                 row.created_at, w.active_id is not None))
        return jobs

    def _mint(self, jobs: Sequence[_Job], prices: dict[tuple[str, int], str]) -> list[FamilySwitchOff]:
        switch_offs: list[FamilySwitchOff] = []
        found = self._look_up_old([job for job in jobs if utcnow() - job.reserved_at > KEY_MEMORY])
        if found:
            switch_offs += self._complete([(job, found[job.link_id]) for job in jobs if job.link_id in found])
        to_create = [job for job in jobs if job.link_id not in found and (job.currency, job.amount_cents) in prices]
        by_id = {job.link_id: job for job in to_create}
        answered: list[tuple[_Job, MintedLink]] = []

        def record(link_id: int, minted: MintedLink | None, error: PaymentProviderError | None) -> None:
            job = by_id[link_id]
            if error is not None:
                self.result.errors.append(f"minting the balance link of parent {job.parent_id}: {error}")
                if error.changed_nothing:
                    with unit_of_work(self.sessions) as session:
                        drop_reservation(session, self.user, job.link_id)
                return
            assert minted is not None
            answered.append((job, minted))
            if len(answered) >= ACTIVATION_BATCH:
                switch_offs.extend(self._complete(answered))
                answered.clear()

        tasks = [(job.link_id, self._link_task(job, prices[(job.currency, job.amount_cents)])) for job in to_create]
        run_concurrently(tasks, concurrency=self.concurrency, on_done=record,
                         thread_name_prefix="stripe-family-link")
        switch_offs.extend(self._complete(answered))
        return switch_offs

    def _link_task(self, job: _Job, price_id: str) -> Callable[[], MintedLink]:
        request = PaymentLinkRequest(
            price_id=price_id, success_url=self.success_url, single_payment=True,
            submit_message=f"{self.league_name} — {job.label} balance",
            metadata={**self._league(), "family_link_id": str(job.link_id), "parent_id": str(job.parent_id),
                      "balance_cents": str(job.amount_cents)},
        )
        key = family_link_idempotency_key(self.league_key, job.link_id, job.mint_attempt)
        return lambda: self.gateway.create_payment_link(request, idempotency_key=key)

    def _complete(self, answered: Sequence[tuple[_Job, MintedLink]]) -> list[FamilySwitchOff]:
        """Activate the reservations Stripe answered, a few in one transaction (a crash before
        its commit leaves them reserved: the next run replays their requests)."""
        switch_offs: list[FamilySwitchOff] = []
        if not answered:
            return switch_offs
        with unit_of_work(self.sessions) as session:
            # What these families owe now: the one figure, read for them alone (one statement).
            owing = self._owing(session, frozenset(job.parent_id for job, _ in answered))
            for job, minted in answered:
                owed = owing[job.parent_id].total_cents if job.parent_id in owing else 0
                activated, retired = activate(session, self.user, job.link_id, minted, balance_cents=owed)
                switch_offs += retired
                if activated:
                    self.result.minted += 1
                    self.result.replaced += bool(retired)
        return switch_offs

    def _look_up_old(self, jobs: Sequence[_Job]) -> dict[int, MintedLink]:
        """Reservations older than Stripe's memory of their key: the link each made, if any."""
        if not jobs:
            return {}
        wanted = {str(job.link_id) for job in jobs}
        found: dict[int, MintedLink] = {}
        try:
            for link in self.gateway.list_payment_links():
                if link.metadata.get("family_link_id") in wanted and names_league(
                        link.metadata, tenant_id=self.user.tenant_id, league_key=self.league_key):
                    found[int(link.metadata["family_link_id"])] = link
        except PaymentProviderError as exc:
            self.result.errors.append(f"looking up earlier balance links: {exc}")
        return found

    # -- switching off ----------------------------------------------------------------------------

    def _switch_off(self, switch_offs: Sequence[FamilySwitchOff]) -> None:
        if not switch_offs:
            return
        done: list[int] = []

        def record(link_id: int, _: None, error: PaymentProviderError | None) -> None:
            if error is not None:
                self.result.errors.append(f"switching off balance link {link_id}: {error}")
            else:
                done.append(link_id)

        tasks = [(s.link_id, _switch_off_task(self.gateway, s.stripe_payment_link_id)) for s in switch_offs]
        run_concurrently(tasks, concurrency=self.concurrency, on_done=record,
                         thread_name_prefix="stripe-switch-off")
        if done:
            with unit_of_work(self.sessions) as session:
                session.execute(update(FamilyLink).where(FamilyLink.tenant_id == self.user.tenant_id,
                                                         FamilyLink.id.in_(done))
                                .values(stripe_deactivation_pending=False).execution_options(synchronize_session=False))
        self.result.switched_off += len(done)

    def _league(self) -> dict[str, str]:
        return league_metadata(tenant_id=self.user.tenant_id, league_key=self.league_key)


def _switch_off_task(gateway: PaymentGateway, stripe_payment_link_id: str) -> Callable[[], None]:
    return lambda: links.switch_off_at_stripe(gateway, stripe_payment_link_id)

