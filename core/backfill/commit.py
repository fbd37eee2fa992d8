"""The commit: mint a plan's links through Stripe (``commit_backfill``), reserving each row
before Stripe is asked and committing as it goes, so that a rerun finishes what a crash left."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, Permission, require
from core.audit import record_action
from core.backfill.billing import bill_plan
from core.backfill.plan import (
    BackfillItem,
    BackfillPlan,
    PendingSwitchOff,
    PlanAction,
    _pending_switch_offs,
    _tier_key,
    _TierKey,
)
from core.backfill.result import BackfillResult, ItemOutcome, ItemStatus, OldLinkStillActive
from core.errors import PaymentProviderError, PermissionDenied
from core.ledger.billing import attach_link
from core.models import LinkStatus, PaymentLink, PriceTier, ProductKind, utcnow
from core.payments.gateway import MintedLink, PaymentGateway, PaymentLinkRequest, league_metadata, names_league
from core.payments.provider_calls import run_concurrently
from core.settings import load_settings, success_url_problem

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 8  # requests in flight; the gateway paces them under Stripe's limit
# Stripe keeps an idempotency key for at least 24 hours; an hour's margin on top.
IDEMPOTENCY_KEY_MEMORY = timedelta(hours=23)
RESERVATION_BATCH = 500  # reservations written per commit


def link_idempotency_key(league_key: str, link_id: int) -> str:
    """The key of the Stripe request minting the link reserved as row ``link_id``.

    One row, one key: a rerun that finishes the row replays the request, and a new link for
    the same player and product (after a payment or a price change) is a new row, so Stripe
    never answers it with the old link. ``league_key`` (``Tenant.league_key``) keeps another
    database's league on the same Stripe account from sharing the key.
    """
    return f"backfill-link:{league_key}:l{link_id}"


def price_idempotency_key(league_key: str, product_id: int, currency: str, amount_cents: int) -> str:
    """The key of the Stripe request creating the Price of a product at an amount."""
    return f"backfill-price:{league_key}:pr{product_id}:{currency}{amount_cents}"


ProgressCallback = Callable[[int, int, ItemOutcome], None]


def commit_backfill(
    session: Session,
    user: ActingUser,
    gateway: PaymentGateway,
    plan: BackfillPlan,
    *,
    progress: ProgressCallback | None = None,
    success_url: str | None = None,
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
    ``progress(done, total, outcome)`` is called after each link minted, replaced or failed
    (``total``: the links to mint or replace), in the caller's thread. An
    audit entry is committed at the end.
    """
    require(user, Permission.MINT_LINKS)
    if plan.tenant_id != user.tenant_id:
        raise PermissionDenied("This plan belongs to another league.")
    if success_url is None:
        success_url = load_settings().payment_success_url
    if plan.to_change:  # only switching old links off needs no thank-you page
        success_url_problem(success_url, live=gateway.live_mode)  # refuses the placeholder for live links
    plan = bill_plan(session, user, plan)  # the ledger: what is owed is charged before links are minted
    run = _CommitRun(session, user, gateway, plan, progress, success_url, concurrency)
    try:
        result = run.execute()
    except BaseException:
        # Stopped part-way (Ctrl-C, the admin leaving the page, a crash): what was done is
        # committed item by item, and the audit log says so too.
        session.rollback()
        try:
            _audit(session, user, run.result, interrupted=True)
            session.commit()
        except Exception:  # noqa: BLE001 - the original error is the one to report
            session.rollback()
            log.warning("Could not record the interrupted backfill in the audit log", exc_info=True)
        raise
    _audit(session, user, result, interrupted=False)
    session.commit()
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
    reserved_at: datetime
    resumed: bool


class _CommitRun:
    def __init__(self, session: Session, user: ActingUser, gateway: PaymentGateway, plan: BackfillPlan,
                 progress: ProgressCallback | None, success_url: str, concurrency: int) -> None:
        self.session = session
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
        self.switch_offs: list[tuple[PendingSwitchOff, bool, Future[MintedLink]]] = []
        self.switch_off_pool: ThreadPoolExecutor | None = None

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
        try:
            with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="stripe-switch-off") as pool:
                self.switch_off_pool = pool
                for old in earlier:
                    self._switch_off(old, again=True)
                self._mint(self._reserve(ready))
        except BaseException:
            # Stopped part-way: the pool has waited for the switch-offs already asked; those
            # Stripe did are recorded, so they are not reported as still on.
            self.session.rollback()
            self._record_switched_off()
            raise
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
            skip: str | None = None
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

    def _prices_for(self, items: Sequence[BackfillItem]) -> dict[_TierKey, _Price | str]:
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

    def _reserve_one(self, item: BackfillItem, price: _Price) -> _Job | None:
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
        key = link_idempotency_key(self.plan.league_key, job.link_id)
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
        retirement: PendingSwitchOff | None = None
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
            attach_link(self.session, self.user, link, replaces=old if replaced_id is not None else None)  # the ledger
            self.session.commit()
        except IntegrityError as exc:
            self.session.rollback()
            return self._lost_the_pair(job, minted, exc)
        if retirement is not None:
            self._switch_off(retirement)
            return ItemOutcome(item, ItemStatus.REPLACED, link_id=link.id, url=link.url)
        return ItemOutcome(item, ItemStatus.MINTED, link_id=link.id, url=link.url)

    def _finished_elsewhere(self, job: _Job, link: PaymentLink | None, minted: MintedLink) -> ItemOutcome:
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

    def _locked(self, link_id: int) -> PaymentLink | None:
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

    def _switch_off_orphan(self, minted: MintedLink, *, link_id: int | None = None) -> None:
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

    def _record_switched_off(self) -> None:
        done = [(old, again) for old, again, future in self.switch_offs if future.done() and _is_switched_off(future)]
        if done:
            self._switched_off([old.link_id for old, _ in done])
            self.result.switched_off_again = sum(1 for _, again in done if again)

    def _report_switch_offs(self) -> None:
        self._record_switched_off()
        for old, _, future in self.switch_offs:
            error = future.exception()
            if _is_switched_off(future):
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
        if outcome.item.action not in (PlanAction.MINT, PlanAction.REPLACE):
            return
        self.changed += 1
        if self.progress is not None:
            self.progress(self.changed, self.total, outcome)


def _is_switched_off(future: Future[MintedLink]) -> bool:
    """Stripe switched the link off, or has no such link (nothing can be paid through it)."""
    error = future.exception()
    return error is None or (isinstance(error, PaymentProviderError) and error.http_status == 404)


def _reason(exc: IntegrityError) -> str:
    return str(getattr(exc, "orig", exc)).strip().splitlines()[0]
