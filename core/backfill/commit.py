"""The commit: mint a plan's links through Stripe (``commit_backfill``).

Every link goes through ``core.payments.links`` (the one module that changes a link's status,
and explains how a link is minted exactly once and how one is switched off): reserved and
committed before Stripe is asked, activated as soon as Stripe returns it, a replaced link
retired in the same transaction and then switched off in Stripe. Each step is a unit of work of
its own, so a rerun finishes what a crash left.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, Permission, require
from core.audit import record_action
from core.backfill.billing import bill_plan
from core.backfill.plan import BackfillItem, BackfillPlan, PendingSwitchOff, PlanAction, _tier_key, _TierKey
from core.backfill.result import BackfillResult, ItemOutcome, ItemStatus, OldLinkStillActive
from core.db import Sessions, analyze_tables, as_sessions, unit_of_work
from core.errors import PaymentProviderError, PermissionDenied
from core.ledger.billing import attach_link
from core.models import Charge, ChargePositionRow, LedgerEntry, LinkStatus, PaymentLink, PriceTier, ProductKind, utcnow
from core.payments import links
from core.payments.family_links import FamilyLinkMinting, refresh_family_links
from core.payments.gateway import MintedLink, PaymentGateway, PaymentLinkRequest, league_metadata, names_league
from core.payments.links import Activation, ActivationOutcome, LinkToReserve, link_idempotency_key
from core.payments.provider_calls import run_concurrently
from core.settings import success_url_problem

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_CONCURRENCY",
    "IDEMPOTENCY_KEY_MEMORY",
    "RESERVATION_BATCH",
    "ProgressCallback",
    "commit_backfill",
    "link_idempotency_key",
    "price_idempotency_key",
]

DEFAULT_CONCURRENCY = 8  # requests in flight; the gateway paces them under Stripe's limit
# Stripe keeps an idempotency key for at least 24 hours; an hour's margin on top.
IDEMPOTENCY_KEY_MEMORY = timedelta(hours=23)
RESERVATION_BATCH = 500  # reservations written per commit


def price_idempotency_key(league_key: str, product_id: int, currency: str, amount_cents: int) -> str:
    """The key of the Stripe request creating the Price of a product at an amount."""
    return f"backfill-price:{league_key}:pr{product_id}:{currency}{amount_cents}"


ProgressCallback = Callable[[int, int, ItemOutcome], None]


def commit_backfill(
    sessions: Engine | Sessions,
    user: ActingUser,
    gateway: PaymentGateway,
    plan: BackfillPlan,
    *,
    success_url: str,
    progress: ProgressCallback | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    family_links: bool = False,
) -> BackfillResult:
    """Mint the plan's links through Stripe. **Opens its own units of work from ``sessions`` and
    commits as it goes**; the caller's session, if any, is not used.

    ``success_url`` is the thank-you page the links send a family to after paying
    (``PAYMENT_SUCCESS_URL``); the placeholder is refused for live links. Missing price tiers
    and Stripe Prices are created (and committed) first. Then every link's row is reserved and
    committed before Stripe is asked, and each is activated and committed as soon as Stripe
    returns its link; a replacement retires the old row in the same transaction, and then the
    old link is switched off in Stripe (a failure there is in ``old_links_still_active``, and
    makes the result not ``ok``). Old links an earlier run could not switch off are asked again
    first. A crash therefore leaves reservations, which the next run finishes without a second
    Stripe link, and retired links, which the next run switches off (``core.payments.links``).
    If another backfill records the same pair first, this run reuses the winner's link and
    switches its own off. One failing item is recorded with its reason and the others go on;
    when Stripe refused an item outright, its reservation is removed so the next run starts
    afresh. ``progress(done, total, outcome)`` is called after each link minted, replaced or
    failed (``total``: the links to mint or replace), in the caller's thread. An audit entry is
    committed at the end, or when the run is stopped part-way; at the end the tables written
    are analyzed (``core.db.analyze_tables``), so the balances are planned on their new rows.
    With ``family_links`` (the command line and the Backfill page), every family that owes then
    gets its "Pay the balance" link at exactly its balance (``core.payments.family_links``).
    """
    require(user, Permission.MINT_LINKS)
    if plan.tenant_id != user.tenant_id:
        raise PermissionDenied("This plan belongs to another league.")
    if plan.to_change:  # only switching old links off needs no thank-you page
        success_url_problem(success_url, live=gateway.live_mode)  # refuses the placeholder for live links
    factory = as_sessions(sessions)
    with unit_of_work(factory) as session:
        plan = bill_plan(session, user, plan)  # the ledger: what is owed is charged before links are minted
    run = _CommitRun(factory, user, gateway, plan, progress, success_url, concurrency)
    try:
        result = run.execute()
        if family_links:  # then each family's balance link, at the balance just billed
            family = refresh_family_links(factory, user, FamilyLinkMinting(gateway, success_url, concurrency))
            result.family_links_minted, result.family_link_errors = family.minted, family.errors
    except BaseException:
        # Stopped part-way (Ctrl-C, the admin leaving the page, a crash): what was done is
        # committed item by item, and the audit log says so too.
        try:
            with unit_of_work(factory) as session:
                _audit(session, user, run.result, interrupted=True)
        except Exception:  # noqa: BLE001 - the original error is the one to report
            log.warning("Could not record the interrupted backfill in the audit log", exc_info=True)
        raise
    with unit_of_work(factory) as session:
        _audit(session, user, result, interrupted=False)
    # The links and prices it wrote, and the charges (with their ledger entries and positions) it billed first.
    analyze_tables(factory, (PaymentLink.__tablename__, PriceTier.__tablename__, Charge.__tablename__,
                             LedgerEntry.__tablename__, ChargePositionRow.__tablename__))
    return result


def _audit(session: Session, user: ActingUser, result: BackfillResult, *, interrupted: bool) -> None:
    summary = result.summary()
    if interrupted:
        summary = f"stopped part-way (a rerun finishes it): {summary}"
    record_action(
        session, user, "backfill.commit", f"Payment link backfill: {summary}",
        details={
            "interrupted": interrupted,
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


@dataclass(frozen=True)
class _Price:
    tier_id: int
    stripe_price_id: str | None


@dataclass(frozen=True)
class _Job:
    """One reserved row to complete with a Stripe link."""

    item: BackfillItem
    price: _Price
    link_id: int
    mint_attempt: str | None
    reserved_at: datetime
    resumed: bool


class _CommitRun:
    def __init__(self, sessions: Sessions, user: ActingUser, gateway: PaymentGateway, plan: BackfillPlan,
                 progress: ProgressCallback | None, success_url: str, concurrency: int) -> None:
        self.sessions = sessions
        self.user = user
        self.gateway = gateway
        self.plan = plan
        self.progress = progress
        self.success_url = success_url
        self.concurrency = max(1, concurrency)
        self.result = BackfillResult()
        # Progress counts what the run asks Stripe for (what the admin confirmed: links to
        # mint or replace), not the plan's already-linked or waiting rows.
        self.total = len(plan.to_change)
        self.changed = 0
        self.attempts: dict[int, str | None] = {}  # reservations found: link id -> its mint attempt
        self.switch_offs: links.SwitchOffs[PendingSwitchOff] | None = None

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
        ready: list[tuple[BackfillItem, _Price]] = []
        for item in work:
            price = prices[_tier_key(item)]  # every tier has a price or the reason it has none
            if isinstance(price, str):
                self._done(ItemOutcome(item, ItemStatus.FAILED, price))
            else:
                ready.append((item, price))
        # Old links an earlier run left on in Stripe go first; replaced links are switched off
        # as soon as each replacement is recorded, alongside the minting. Leaving the block
        # waits for the last of them, and records those Stripe switched off even if the run
        # stops part-way, so they are not reported as still on.
        with unit_of_work(self.sessions) as session:
            earlier = links.links_awaiting_switch_off(session, self.user)
        switch_offs: links.SwitchOffs[PendingSwitchOff] = links.SwitchOffs(
            self.sessions, self.user, self.gateway, concurrency=self.concurrency)
        try:
            with switch_offs:
                self.switch_offs = switch_offs
                for old in earlier:
                    switch_offs.ask(old, retry=True)
                self._mint(self._reserve(ready))
        finally:
            self._report_switch_offs(switch_offs.outcomes)
        return self.result

    # items whose pair changed since the plan was made

    def _still_needed(self, items: Sequence[BackfillItem]) -> list[BackfillItem]:
        with unit_of_work(self.sessions) as session:  # ended before Stripe is asked: no snapshot is held
            rows = session.execute(
                select(PaymentLink.id, PaymentLink.player_id, PaymentLink.product_id, PaymentLink.status,
                       PaymentLink.processing, PaymentLink.mint_attempt).where(
                    PaymentLink.tenant_id == self.user.tenant_id,
                    PaymentLink.status.in_([LinkStatus.ACTIVE, LinkStatus.MINTING]),
                )
            ).all()
        active = {(r.player_id, r.product_id): r for r in rows if r.status is LinkStatus.ACTIVE}
        minting = {(r.player_id, r.product_id): r.id for r in rows if r.status is LinkStatus.MINTING}
        self.attempts = {r.id: r.mint_attempt for r in rows if r.status is LinkStatus.MINTING}
        fresh = []
        for item in items:
            pair = (item.player_id, item.product_id)
            current = active.get(pair)
            skip: str | None = None
            if item.reserved_link_id is not None:
                if item.reserved_link_id not in self.attempts:
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

    def _prices_for(self, items: Sequence[BackfillItem]) -> dict[_TierKey, _Price | str]:
        """(product, amount, currency) -> the tier and its Stripe price id, or why there is none."""
        first_item: dict[_TierKey, BackfillItem] = {}
        for item in items:
            first_item.setdefault(_tier_key(item), item)
        tier_ids = {key: item.tier_id or self._find_or_create_tier(item) for key, item in first_item.items()}
        with unit_of_work(self.sessions) as session:
            stored = dict(
                session.execute(
                    select(PriceTier.id, PriceTier.stripe_price_id).where(PriceTier.id.in_(list(tier_ids.values())))
                ).all()
            )
        prices: dict[_TierKey, _Price | str] = {
            key: _Price(tier_id, stored[tier_id]) for key, tier_id in tier_ids.items() if stored.get(tier_id)
        }

        def record(key: _TierKey, price_id: str | None, error: PaymentProviderError | None) -> None:
            if error is not None:
                prices[key] = f"could not create the Stripe price: {error}"
            else:
                assert price_id is not None
                prices[key] = _Price(tier_ids[key], self._store_price(tier_ids[key], price_id))

        missing = [key for key in tier_ids if key not in prices]
        tasks = [(key, self._price_task(first_item[key], tier_ids[key])) for key in missing]
        run_concurrently(tasks, concurrency=self.concurrency, on_done=record, thread_name_prefix="stripe")
        return prices

    def _price_task(self, item: BackfillItem, tier_id: int) -> Callable[[], str]:
        metadata = {
            "tenant": self.plan.tenant_slug,
            **league_metadata(tenant_id=self.plan.tenant_id, league_key=self.plan.league_key),
            "product_id": str(item.product_id),
            "price_tier_id": str(tier_id),
        }
        key = price_idempotency_key(self.plan.league_key, item.product_id, item.currency, item.amount_cents)
        return lambda: self.gateway.create_price(
            amount_cents=item.amount_cents, currency=item.currency, product_name=item.product_name,
            metadata=metadata, idempotency_key=key,
        )

    def _find_or_create_tier(self, item: BackfillItem) -> int:
        def find() -> int | None:
            with unit_of_work(self.sessions) as session:
                return session.scalars(
                    select(PriceTier.id).where(
                        PriceTier.product_id == item.product_id,
                        PriceTier.amount_cents == item.amount_cents,
                        PriceTier.currency == item.currency,
                    )
                ).first()

        existing = find()
        if existing is not None:
            return existing
        try:
            with unit_of_work(self.sessions) as session:
                tier = PriceTier(product_id=item.product_id, amount_cents=item.amount_cents,
                                 currency=item.currency, is_default=False)
                session.add(tier)
                session.flush()
                tier_id = tier.id
        except IntegrityError:  # another backfill made the same tier first
            winner = find()
            if winner is None:
                raise
            return winner
        self.result.tiers_created += 1
        return tier_id

    def _store_price(self, tier_id: int, price_id: str) -> str:
        with unit_of_work(self.sessions) as session:
            updated = session.execute(
                update(PriceTier)
                .where(PriceTier.id == tier_id, PriceTier.stripe_price_id.is_(None))
                .values(stripe_price_id=price_id)
                .execution_options(synchronize_session=False)
            )
        if updated.rowcount:  # type: ignore[attr-defined]
            self.result.prices_created += 1
            return price_id
        with unit_of_work(self.sessions) as session:
            stored = session.scalars(select(PriceTier.stripe_price_id).where(PriceTier.id == tier_id)).one()
        return stored or price_id

    # reservations: the rows exist, and are committed, before Stripe is asked

    def _reserve(self, ready: Sequence[tuple[BackfillItem, _Price]]) -> list[_Job]:
        jobs = []
        fresh = []
        for item, price in ready:
            if item.reserved_link_id is not None:
                assert item.reserved_at is not None
                jobs.append(_Job(item, price, item.reserved_link_id, self.attempts[item.reserved_link_id],
                                 item.reserved_at, resumed=True))
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
        with unit_of_work(self.sessions) as session:
            active = {
                (player_id, product_id): link_id
                for player_id, product_id, link_id in session.execute(
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
            links.drop_reservations(session, self.user, dropped)
        return kept

    def _reserve_batch(self, batch: Sequence[tuple[BackfillItem, _Price]]) -> list[_Job]:
        try:
            with unit_of_work(self.sessions) as session:
                reservations = links.reserve(session, self.user, [_to_reserve(item, price) for item, price in batch])
        except IntegrityError:  # another backfill reserved some of these pairs: one by one
            return [job for item, price in batch if (job := self._reserve_one(item, price)) is not None]
        return [_Job(item, price, r.link_id, r.mint_attempt, r.reserved_at, resumed=False)
                for (item, price), r in zip(batch, reservations, strict=True)]

    def _reserve_one(self, item: BackfillItem, price: _Price) -> _Job | None:
        try:
            with unit_of_work(self.sessions) as session:
                [reservation] = links.reserve(session, self.user, [_to_reserve(item, price)])
        except IntegrityError as exc:
            # The other run may already have finished its link by now: minting or active, the
            # pair is taken care of, and this run leaves it alone.
            with unit_of_work(self.sessions) as session:
                taken = session.execute(
                    select(PaymentLink.id, PaymentLink.status).where(
                        PaymentLink.tenant_id == self.plan.tenant_id,
                        PaymentLink.player_id == item.player_id,
                        PaymentLink.product_id == item.product_id,
                        PaymentLink.status.in_([LinkStatus.MINTING, LinkStatus.ACTIVE]),
                    ).order_by(PaymentLink.id.desc())
                ).first()
            if taken is not None and item.replaces_link_id != taken.id:
                reason = ("another backfill is minting this link" if taken.status is LinkStatus.MINTING
                          else "another backfill minted this link meanwhile")
                self._done(ItemOutcome(item, ItemStatus.SKIPPED, reason, link_id=taken.id))
            else:
                self._done(ItemOutcome(item, ItemStatus.FAILED, f"the database refused the link: {_reason(exc)}"))
            return None
        return _Job(item, price, reservation.link_id, reservation.mint_attempt, reservation.reserved_at,
                    resumed=False)

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

        def record(link_id: int, minted: MintedLink | None, error: PaymentProviderError | None) -> None:
            job = by_id[link_id]
            if error is not None:
                self._done(self._not_minted(job, error))
            else:
                assert minted is not None
                self._done(self._complete(job, minted))

        tasks = [(job.link_id, self._link_task(job)) for job in to_create]
        run_concurrently(tasks, concurrency=self.concurrency, on_done=record, thread_name_prefix="stripe")

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
                ours = names_league(metadata, tenant_id=self.plan.tenant_id, league_key=self.plan.league_key)
                if ours and metadata.get("link_id") in wanted:
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
            **league_metadata(tenant_id=self.plan.tenant_id, league_key=self.plan.league_key),
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
        key = link_idempotency_key(self.plan.league_key, job.link_id, job.mint_attempt)
        return lambda: self.gateway.create_payment_link(request, idempotency_key=key)

    def _complete(self, job: _Job, minted: MintedLink) -> ItemOutcome:
        """Activate the reserved row with Stripe's link (one unit of work), then switch off what it retired."""
        item = job.item
        try:
            with unit_of_work(self.sessions) as session:
                activation = links.activate(session, self.user, job.link_id, minted, replaces=item.replaces_link_id)
                if activation.outcome in (ActivationOutcome.ACTIVATED, ActivationOutcome.REPLACED):
                    self._attach_to_charge(session, job.link_id, item.replaces_link_id)
        except IntegrityError as exc:  # another link of the pair is active
            with unit_of_work(self.sessions) as session:
                activation = links.lose_the_pair(session, self.user, job.link_id, minted)
            return self._lost_the_pair(job, minted, activation, exc)
        if activation.outcome is ActivationOutcome.NOT_MINTING:
            return self._finished_elsewhere(job, activation, minted)
        if activation.outcome is ActivationOutcome.REPLACED_LINK_CHANGED:
            assert activation.switch_off is not None
            links.switch_off(self.sessions, self.user, self.gateway, activation.switch_off)
            return ItemOutcome(
                item, ItemStatus.SKIPPED,
                "the link to replace was paid, is being paid or was deactivated meanwhile; "
                "the new link was switched off",
                link_id=item.replaces_link_id,
            )
        if activation.outcome is ActivationOutcome.REPLACED:
            old = activation.switch_off
            assert old is not None and self.switch_offs is not None
            self.switch_offs.ask(PendingSwitchOff(old.link_id, old.stripe_payment_link_id, item.player_name,
                                                  item.parent_name, item.product_name))
            return ItemOutcome(item, ItemStatus.REPLACED, link_id=job.link_id, url=activation.url)
        return ItemOutcome(item, ItemStatus.MINTED, link_id=job.link_id, url=activation.url)

    def _attach_to_charge(self, session: Session, link_id: int, replaced_id: int | None) -> None:
        """The ledger: tie the link that just became active to its charge, in the same unit of work."""
        link = session.get(PaymentLink, link_id)
        assert link is not None
        replaced = session.get(PaymentLink, replaced_id) if replaced_id is not None else None
        attach_link(session, self.user, link, replaces=replaced)

    def _finished_elsewhere(self, job: _Job, found: Activation, minted: MintedLink) -> ItemOutcome:
        """The reservation is no longer ``minting``: another run finished (or removed) it."""
        if found.status is not None and found.stripe_payment_link_id == minted.id:
            if found.status is LinkStatus.ACTIVE:
                return ItemOutcome(job.item, ItemStatus.REUSED, "another backfill recorded this link first",
                                   link_id=job.link_id, url=found.url)
            return ItemOutcome(job.item, ItemStatus.SKIPPED,
                               f"another backfill finished this link ({found.status.value})", link_id=job.link_id)
        links.switch_off_unrecorded(self.gateway, minted.id)  # nobody must be able to pay through it
        return ItemOutcome(job.item, ItemStatus.FAILED,
                           "its reservation was finished or removed by another run; the Stripe link was switched off",
                           link_id=job.link_id)

    def _lost_the_pair(self, job: _Job, minted: MintedLink, activation: Activation,
                       exc: IntegrityError) -> ItemOutcome:
        """The database refused to activate the row: another link of the pair is active (kept),
        and ours is set aside and switched off; or it was refused for another reason."""
        if activation.outcome is ActivationOutcome.NOT_MINTING:
            return self._finished_elsewhere(job, activation, minted)
        if activation.outcome is ActivationOutcome.REFUSED:
            return ItemOutcome(job.item, ItemStatus.FAILED, f"the database refused the link: {_reason(exc)}",
                               link_id=job.link_id)
        assert activation.switch_off is not None
        links.switch_off(self.sessions, self.user, self.gateway, activation.switch_off)
        return ItemOutcome(job.item, ItemStatus.REUSED, "another backfill recorded a link for this pair first",
                           link_id=activation.winner_id, url=activation.winner_url)

    def _not_minted(self, job: _Job, error: PaymentProviderError) -> ItemOutcome:
        if error.changed_nothing:
            # Stripe refused the request itself: nothing exists to find later. Without the
            # reservation the next run reserves again, with a new attempt and so a new key,
            # and Stripe does not replay the refusal it remembers under the old one.
            with unit_of_work(self.sessions) as session:
                links.drop_reservations(session, self.user, [job.link_id])
            return ItemOutcome(job.item, ItemStatus.FAILED, str(error))
        if job.resumed and error.http_status == 409:
            return ItemOutcome(job.item, ItemStatus.SKIPPED, "another backfill is minting this link right now",
                               link_id=job.link_id)
        return ItemOutcome(job.item, ItemStatus.FAILED,
                           f"{error}; the link stays reserved and the next run finishes it", link_id=job.link_id)

    def _report_switch_offs(self, outcomes: Sequence[links.SwitchOffOutcome[PendingSwitchOff]]) -> None:
        self.result.switched_off_again = sum(1 for o in outcomes if o.retry and o.switched_off)
        for outcome in outcomes:
            if outcome.error is None:
                continue
            failure = OldLinkStillActive(outcome.link, str(outcome.error))
            self.result.old_links_still_active.append(failure)
            log.warning("%s", failure.describe())

    def _done(self, outcome: ItemOutcome) -> None:
        self.result.outcomes.append(outcome)
        if outcome.status is ItemStatus.FAILED:
            # info, not warning: the caller reports every failure to the person who ran it.
            log.info("Backfill item %s failed: %s", outcome.item.key, outcome.reason)
        if outcome.item.action not in (PlanAction.MINT, PlanAction.REPLACE):
            return
        self.changed += 1
        if self.progress is not None:
            self.progress(self.changed, self.total, outcome)


def _to_reserve(item: BackfillItem, price: _Price) -> LinkToReserve:
    return LinkToReserve(player_id=item.player_id, product_id=item.product_id, price_tier_id=price.tier_id,
                         order_id=item.order_id, amount_cents=item.amount_cents, currency=item.currency)


def _reason(exc: IntegrityError) -> str:
    return str(getattr(exc, "orig", exc)).strip().splitlines()[0]
