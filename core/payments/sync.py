"""Payment sync: bring the payments made through our links back from Stripe.

``sync_payments`` is the one entry point (dashboard button, ``python -m core
sync-payments``, and the send to everyone, which syncs first so a parent who paid is not
reminded).

Incremental by default: Stripe's events (``GET /v1/events``, ``core.payments.events``)
since the league's cursor, page by page, a few Stripe calls whatever the number of links.
Checkout Sessions completed, or whose delayed payment succeeded or failed, are matched to
our links by payment link id and recorded as below; a refund made in Stripe's dashboard and
a dispute are applied by ``core.payments.events``. Each event is applied once, marked seen in
the transaction of its effect. Links still processing are also checked again one by one
(there are few of them), in case an event was missed.

``full=True`` checks every active link explicitly instead (one list call per link, several
in flight under the gateway's pacer), and every family balance link: for the first sync of a
league, for what is older than the 30 days of events Stripe keeps, or an audit. It then
compares the ledger with every completed Checkout Session of the account and reports each
difference (``core.payments.ledger_check``).

Durable per item: each link's change is committed as soon as it is recorded, so a sync
that fails half-way keeps what it recorded. The league's ``payments_synced_at`` advances
only after a complete pass, so a rerun covers the same window again and changes nothing
that is already recorded. So ``sync_payments`` takes a session factory and opens its own
units of work; no transaction is held while Stripe is asked.

A link's status changes only through ``core.payments.links`` (``mark_paid``; the links of
withdrawn players are retired there and switched off in Stripe, the database first). A payment
that needs a look is recorded in ``payment_flags`` the first time a sync sees it
(``core.payments.flags``) and reported as new only then.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import cast

from sqlalchemy import ColumnElement, Engine, or_, select, update
from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, Permission, require
from core.audit import record_action
from core.db import Sessions, as_sessions, unit_of_work
from core.errors import BillingError, PaymentProviderError
from core.ledger.stripe_payments import follow_family_checkout, follow_stripe_link
from core.models import (
    DEFAULT_CURRENCY,
    FamilyLink,
    FlagKind,
    LedgerEntry,
    LinkStatus,
    Payment,
    PaymentLink,
    PaymentMethod,
    Player,
    PlayerStatus,
    Product,
    ProductKind,
    Tenant,
    utcnow,
)
from core.money import format_cents
from core.payments import events, links
from core.payments.events import RecordedRefund
from core.payments.family_links import FamilyLinkMinting, refresh_family_links
from core.payments.flags import SyncFlag, record_flag
from core.payments.gateway import CompletedCheckout, PaymentGateway, ProviderEvent, RefundReceipt, names_league
from core.payments.ledger_check import LedgerDifference, compare_ledger_with_stripe, ledger_stripe_payments
from core.payments.provider_calls import run_concurrently
from core.payments.reconciliation import FlagNote, LinkDecision, LinkState, reconcile_link
from core.reporting.balances import outstanding_balances, summarise

__all__ = [
    "DeactivatedLink",
    "FailedPayment",
    "FlagKind",
    "RecordedPayment",
    "SyncFlag",
    "SyncIncomplete",
    "SyncProgress",
    "SyncResult",
    "sync_payments",
]

log = logging.getLogger(__name__)

# Requests in flight for per-link checks. The gateway's pacer sets the rate; this only has
# to cover Stripe's latency (at 100 ms and 24 requests/s, about three are needed).
DEFAULT_CONCURRENCY = 8
# Per-link errors after which a pass stops asking (a revoked key would fail every link).
MAX_ERRORS = 20
_MATCH_BATCH = 100
_AUDITED_FLAGS = 1000


class SyncIncomplete(BillingError):
    """A sync could not finish; what it recorded is kept, and a rerun picks up the rest."""


@dataclass(frozen=True)
class SyncProgress:
    """Where a sync is, for a progress bar. ``total`` is None while unknown (listing)."""

    phase: str
    done: int
    total: int | None = None

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return min(1.0, self.done / self.total)


@dataclass(frozen=True)
class RecordedPayment:
    """A link this sync marked paid."""

    link_id: int
    player_name: str
    product_name: str
    amount_cents: int | None  # what was paid; None if Stripe did not say
    currency: str
    paid_at: datetime
    checkout_session_id: str
    amount_mismatch: bool


@dataclass(frozen=True)
class DeactivatedLink:
    """A link of a withdrawn player this sync switched off in Stripe (retired here first)."""

    link_id: int
    player_name: str
    product_name: str
    stripe_payment_link_id: str


@dataclass(frozen=True)
class FailedPayment:
    """A link whose delayed payment failed: what it was paying is owed again."""

    link_id: int
    player_name: str
    product_name: str
    checkout_session_id: str


@dataclass
class SyncResult:
    """What one sync did. ``ok`` only when the whole pass completed without an error."""

    full: bool
    started_at: datetime
    window_start: datetime | None = None
    synced_at: datetime | None = None  # set when the pass completed and the mark advanced
    sessions_seen: int = 0
    sessions_not_ours: int = 0
    links_checked: int = 0
    paid: list[RecordedPayment] = field(default_factory=list)
    deactivated: list[DeactivatedLink] = field(default_factory=list)
    flags: list[SyncFlag] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    events_read: int = 0  # Stripe events applied for the first time
    failed: list[FailedPayment] = field(default_factory=list)
    refunds: list[RecordedRefund] = field(default_factory=list)
    differences: list[LedgerDifference] = field(default_factory=list)  # the full sweep's ledger check
    still_owed_count: int = 0
    still_owed_cents: int = 0
    processing_count: int = 0
    currency: str = DEFAULT_CURRENCY  # the league's (``Tenant.currency``), set when the sync starts

    @property
    def ok(self) -> bool:
        return not self.errors and self.synced_at is not None

    @property
    def paid_count(self) -> int:
        return len(self.paid)

    @property
    def paid_cents(self) -> int:
        return sum(payment.amount_cents or 0 for payment in self.paid)

    @property
    def new_flags(self) -> list[SyncFlag]:
        return [flag for flag in self.flags if flag.new]

    def summary(self) -> str:
        """One line for logs, the CLI and the audit log."""
        mode = "every link checked" if self.full else "new payments since the last check"
        parts = [
            f"{self.paid_count} paid ({format_cents(self.paid_cents, self.currency)})",
            f"{self.still_owed_count} still owed ({format_cents(self.still_owed_cents, self.currency)})",
            f"{self.processing_count} processing",
            f"{len(self.flags)} to look at",
            f"{len(self.deactivated)} deactivated",
        ]
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        if self.refunds:
            parts.append(f"{len(self.refunds)} refunded in Stripe")
        if self.full:
            parts.append(f"{len(self.differences)} differences between the ledger and Stripe")
        if self.errors:
            parts.append(f"{len(self.errors)} errors, incomplete")
        return f"Payment sync ({mode}): " + ", ".join(parts)

    def raise_for_errors(self) -> None:
        """Raise ``SyncIncomplete`` unless the pass completed (what was recorded stays)."""
        if self.ok:
            return
        first = self.errors[0] if self.errors else "the pass did not complete"
        more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
        raise SyncIncomplete(
            f"payment sync incomplete: {first}{more}. What was recorded is kept; run it again."
        )


ProgressCallback = Callable[[SyncProgress], None]


def sync_payments(
    sessions: Engine | Sessions,
    user: ActingUser,
    gateway: PaymentGateway,
    *,
    full: bool = False,
    progress: ProgressCallback | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    family_links: FamilyLinkMinting | None = None,
) -> SyncResult:
    """Mark links paid from Stripe's completed Checkout Sessions; switch off withdrawn players' links.

    Payments through a family's "Pay the balance" link are recorded by the ledger's one entry
    point for them (``core.ledger.stripe_payments.follow_family_checkout``). With
    ``family_links``, a family whose balance this sync changed gets its balance link replaced
    at the new balance afterwards (``core.payments.family_links.refresh_family_links``).

    **Opens its own units of work from ``sessions`` (an engine or a session factory) and
    commits as it goes** (durable per item, see the module docstring): every link it marks
    paid or processing is committed on its own; withdrawn players' links are retired and
    committed before Stripe is asked to switch them off; the league's ``payments_synced_at``
    advances only after a complete pass, and an audit row records the run. Stripe failures do
    not raise: they are in ``result.errors`` (call ``result.raise_for_errors()`` to stop on
    them) and a rerun completes the work. Needs ``Permission.SYNC_PAYMENTS`` (treasurer, admin).
    """
    require(user, Permission.SYNC_PAYMENTS)
    result = _PaymentSync(
        as_sessions(sessions), user, gateway, full=full, progress=progress,
        concurrency=concurrency,
    ).run()
    if family_links is not None:
        kept = refresh_family_links(sessions, user, family_links, mint_missing=False)
        result.errors.extend(f"keeping balance links at the balance: {error}" for error in kept.errors)
    return result


@dataclass(frozen=True)
class _LinkRef:
    """A link as read (without a lock) when the pass looked it up."""

    id: int
    stripe_id: str
    player_name: str
    product_name: str
    state: LinkState


class _PaymentSync:
    def __init__(
        self,
        sessions: Sessions,
        user: ActingUser,
        gateway: PaymentGateway,
        *,
        full: bool,
        progress: ProgressCallback | None,
        concurrency: int,
    ) -> None:
        self.sessions = sessions
        self.user = user
        self.gateway = gateway
        self.concurrency = max(1, concurrency)
        self._progress = progress
        with unit_of_work(sessions) as session:
            tenant = session.get_one(Tenant, user.tenant_id)
            self.league_key, currency = tenant.league_key, tenant.currency
        self.result = SyncResult(full=full, started_at=utcnow(), currency=currency)

    def run(self) -> SyncResult:
        if self.result.full:
            self._check_each_link(self._links_to_check(), phase="Checking every link")
            self._check_family_links()
            self._compare_ledger_with_stripe()
        else:
            self._read_events()
            self._check_each_link(self._processing_links(), phase="Checking processing payments")
        self._switch_off_withdrawn()
        self._finish()
        return self.result

    # -- incremental: Stripe's events since the cursor -----------------------------------------

    def _read_events(self) -> None:
        with unit_of_work(self.sessions) as session:
            cursor = events.read_cursor(session, self.user)
        since = cursor - events.EVENT_OVERLAP if cursor is not None else None  # None: all Stripe keeps
        self.result.window_start = since
        listed: list[ProviderEvent] = []
        self._report("Reading Stripe's events", 0)
        try:
            for event in self.gateway.list_events(types=events.EVENT_TYPES, created_since=since):
                listed.append(event)
                if len(listed) % _MATCH_BATCH == 0:
                    self._report("Reading Stripe's events", len(listed))
        except PaymentProviderError as exc:
            # What was read is applied (each event is true on its own); the cursor stays.
            self._error(f"reading Stripe's events: {exc}")
        with unit_of_work(self.sessions) as session:
            fresh = events.unseen(session, self.user, listed)
        self.result.events_read = len(fresh)
        self._apply_checkout_events([e for e in fresh if e.type in events.CHECKOUT_TYPES and e.checkout])
        self._apply_money_events([e for e in fresh if e.type not in events.CHECKOUT_TYPES])

    def _apply_checkout_events(self, checkout_events: Sequence[ProviderEvent]) -> None:
        """Record the sessions of ``checkout_events`` on their links, each link once, the events
        marked seen with it. A session's latest state wins: paid over processing, and one whose
        delayed payment failed is not processing any more."""
        by_session: dict[str, list[ProviderEvent]] = defaultdict(list)
        for event in checkout_events:
            assert event.checkout is not None
            by_session[event.checkout.id].append(event)
        snapshots = [_latest_state(group) for group in by_session.values()]
        self.result.sessions_seen += len(snapshots)
        matched: dict[int, list[CompletedCheckout]] = defaultdict(list)
        refs: dict[int, _LinkRef] = {}
        family: list[CompletedCheckout] = []
        for start in range(0, len(snapshots), _MATCH_BATCH):
            family.extend(self._match(snapshots[start:start + _MATCH_BATCH], matched, refs))
        applied: set[str] = set()
        for checkout in sorted(family, key=lambda c: (c.created, c.id)):
            seen = by_session[checkout.id]
            self._record_family(checkout, seen=seen, failed_now=any(e.type == events.CHECKOUT_FAILED for e in seen))
            applied.update(e.id for e in seen)
        ordered = sorted(matched, key=lambda link_id: min(c.created for c in matched[link_id]))
        for done, link_id in enumerate(ordered, start=1):
            sessions = {checkout.id for checkout in matched[link_id]}
            link_events = [e for sid in sorted(sessions) for e in by_session[sid]]
            failed = {sid for sid in sessions if any(e.type == events.CHECKOUT_FAILED for e in by_session[sid])}
            self._record(refs[link_id], matched[link_id], complete_history=False, seen=link_events, failed=failed)
            applied.update(e.id for e in link_events)
            self._report("Recording payments", done, len(ordered))
        rest = [e for e in checkout_events if e.id not in applied]  # not ours, or flagged as unknown
        if rest:
            with unit_of_work(self.sessions) as session:
                events.mark_seen(session, self.user, rest)

    def _apply_money_events(self, money_events: Sequence[ProviderEvent]) -> None:
        """Refunds and disputes. Which payment each is about comes from the session events
        already applied (no Stripe call); Stripe is asked only about payments those do not name
        (made before the events were read, or not this league's). The refunds are listed once for
        all the refund events. Then each event is recorded in a transaction of its own."""
        if not money_events:
            return
        intents = sorted({e.payment_intent_id for e in money_events if e.payment_intent_id})
        with unit_of_work(self.sessions) as session:
            known = events.sessions_of_payment_intents(session, self.user, intents)
            checkouts = {intent: self._recorded_checkout(session, session_id) for intent, session_id in known.items()}
        mine = {intent for intent, checkout in checkouts.items() if checkout is not None}
        refunds: dict[str, list[RefundReceipt]] = defaultdict(list)
        try:
            for intent in intents:
                if checkouts.get(intent) is None:
                    checkouts[intent] = self.gateway.checkout_for_payment_intent(intent)
            refund_events = [e for e in money_events if e.type == events.CHARGE_REFUNDED and e.payment_intent_id
                             and checkouts.get(e.payment_intent_id) is not None]
            if refund_events:
                since = min(e.created for e in refund_events) - events.EVENT_OVERLAP
                for refund in self.gateway.list_refunds(created_since=since):
                    refunds[refund.payment_intent_id or ""].append(refund)
        except PaymentProviderError as exc:
            self._error(f"looking up the payments of {len(money_events)} refund or dispute events: {exc}")
            return  # applied by the next sync (they stay unseen)
        for done, event in enumerate(money_events, start=1):
            intent = event.payment_intent_id or ""
            checkout = checkouts.get(intent)
            with unit_of_work(self.sessions) as session:
                if intent not in mine and not self._ours(checkout, session):
                    events.mark_seen(session, self.user, [event])  # another league's or another sale
                    continue
                if event.type == events.CHARGE_REFUNDED:
                    recorded, flags = events.apply_refunds(session, self.user, event, checkout, refunds[intent])
                else:
                    recorded, flags = [], events.apply_dispute(session, self.user, event, checkout)
            self.result.refunds.extend(recorded)
            self.result.flags.extend(flags)
            self._report("Recording refunds and disputes", done, len(money_events))

    def _recorded_checkout(self, session: Session, session_id: str) -> CompletedCheckout | None:
        """The league's Stripe payment of ``session_id`` as a checkout, if the ledger holds one."""
        row = session.execute(
            select(Payment.reference, Payment.amount_cents, Payment.currency, PaymentLink.stripe_payment_link_id,
                   LedgerEntry.recorded_at)
            .join(LedgerEntry, LedgerEntry.id == Payment.id)
            .outerjoin(PaymentLink, PaymentLink.id == Payment.payment_link_id)
            .where(Payment.tenant_id == self.user.tenant_id, Payment.method == PaymentMethod.STRIPE,
                   Payment.reference == session_id)
        ).first()
        if row is None:
            return None
        reference, cents, currency, link_id, recorded_at = row
        return CompletedCheckout(id=str(reference), payment_link_id=link_id, payment_status="paid",
                                 amount_total=cents, currency=currency, created=recorded_at)

    def _ours(self, checkout: CompletedCheckout | None, session: Session) -> bool:
        """A session paid through one of this league's links, or naming this league."""
        if checkout is None:
            return False
        if self._claims_our_league(checkout):
            return True
        if not checkout.payment_link_id:
            return False
        return session.scalar(select(PaymentLink.id).where(
            PaymentLink.tenant_id == self.user.tenant_id,
            PaymentLink.stripe_payment_link_id == checkout.payment_link_id)) is not None

    # -- the full sweep: do the ledger and Stripe agree? -----------------------------------------

    def _compare_ledger_with_stripe(self) -> None:
        if self._too_many_errors():
            return
        self._report("Comparing the ledger with Stripe", 0)
        try:
            checkouts = list(self.gateway.list_completed_checkout_sessions())
        except PaymentProviderError as exc:
            self._error(f"listing completed Checkout Sessions to compare with the ledger: {exc}")
            return
        with unit_of_work(self.sessions) as session:
            ledger = ledger_stripe_payments(session, self.user)
            league_links = set(session.scalars(
                select(PaymentLink.stripe_payment_link_id).where(PaymentLink.tenant_id == self.user.tenant_id,
                                                                 PaymentLink.stripe_payment_link_id.is_not(None))))
            league_links |= set(session.scalars(
                select(FamilyLink.stripe_payment_link_id).where(FamilyLink.tenant_id == self.user.tenant_id,
                                                                FamilyLink.stripe_payment_link_id.is_not(None))))
        ours = [c for c in checkouts if c.payment_link_id in league_links or self._claims_our_league(c)]
        self.result.differences = compare_ledger_with_stripe(ledger, ours)
        self._report("Comparing the ledger with Stripe", len(checkouts), len(checkouts))

    def _match(
        self,
        batch: Sequence[CompletedCheckout],
        matched: dict[int, list[CompletedCheckout]],
        refs: dict[int, _LinkRef],
    ) -> list[CompletedCheckout]:
        """Sort one page of sessions into ours (by payment link id), unknown-but-ours, not ours.
        Returns those of the league's family balance links (recorded by ``_record_family``)."""
        if not batch:
            return []
        stripe_ids = sorted({c.payment_link_id for c in batch if c.payment_link_id})
        flags: list[SyncFlag] = []
        family: list[CompletedCheckout] = []
        with unit_of_work(self.sessions) as session:
            known = {ref.stripe_id: ref for ref in
                     self._link_refs(session, PaymentLink.stripe_payment_link_id.in_(stripe_ids))}
            family_ids = set(session.scalars(select(FamilyLink.stripe_payment_link_id).where(
                FamilyLink.tenant_id == self.user.tenant_id, FamilyLink.stripe_payment_link_id.in_(stripe_ids))))
            for checkout in batch:
                ref = known.get(checkout.payment_link_id or "")
                if ref is not None:
                    refs[ref.id] = ref
                    matched[ref.id].append(checkout)
                elif checkout.payment_link_id in family_ids:
                    family.append(checkout)
                elif self._claims_our_league(checkout):
                    note = FlagNote(FlagKind.UNKNOWN_LINK, checkout,
                                    f"{self._amount(checkout)} paid through a link this league has no record of")
                    flags.append(self._flag(session, note, None))
                else:
                    self.result.sessions_not_ours += 1  # another league's or another sale on the account
        self.result.flags.extend(flags)
        return family

    def _record_family(self, checkout: CompletedCheckout, *, seen: Sequence[ProviderEvent] = (),
                       failed_now: bool = False) -> None:
        """A checkout of a family's balance link: the ledger's one entry point records it,
        committed with the events that told of it marked seen. ``failed_now``: this sync's
        events say its delayed payment failed (else the events applied before say so)."""
        with unit_of_work(self.sessions) as session:
            failed = failed_now or (not checkout.paid and bool(events.failed_sessions(session, self.user,
                                                                                        [checkout.id])))
            outcome = follow_family_checkout(session, self.user, checkout, failed=failed)
            events.mark_seen(session, self.user, seen)
        if outcome is None:
            return
        if failed_now and outcome.failed:
            self.result.failed.append(FailedPayment(outcome.link_id, outcome.parent_name, "Balance", checkout.id))
        if outcome.change is None:
            return
        if outcome.flag is not None:
            self.result.flags.append(outcome.flag)
        if checkout.paid:
            self.result.paid.append(RecordedPayment(
                link_id=outcome.link_id, player_name=outcome.parent_name, product_name="Balance",
                amount_cents=checkout.amount_total, currency=(checkout.currency or self.result.currency).lower(),
                paid_at=checkout.created, checkout_session_id=checkout.id, amount_mismatch=outcome.flag is not None,
            ))

    def _claims_our_league(self, checkout: CompletedCheckout) -> bool:
        # The backfill puts the league on every link's metadata, and Checkout copies it.
        return names_league(checkout.metadata, tenant_id=self.user.tenant_id, league_key=self.league_key)

    # -- per-link checks: a full pass, or the links still processing --------------------------

    def _links_to_check(self) -> list[_LinkRef]:
        with unit_of_work(self.sessions) as session:
            return self._link_refs(session, or_(PaymentLink.status == LinkStatus.ACTIVE, self._still_processing()))

    def _processing_links(self) -> list[_LinkRef]:
        with unit_of_work(self.sessions) as session:
            return self._link_refs(session, self._still_processing())

    @staticmethod
    def _still_processing() -> ColumnElement[bool]:
        return (PaymentLink.processing.is_(True)) & (PaymentLink.status != LinkStatus.PAID)

    def _check_each_link(self, refs: Sequence[_LinkRef], *, phase: str) -> None:
        if not refs:
            return
        done = 0

        def fetch(ref: _LinkRef) -> Callable[[], list[CompletedCheckout]]:
            return lambda: list(self.gateway.list_completed_checkout_sessions(payment_link=ref.stripe_id))

        def record(ref: _LinkRef, checkouts: list[CompletedCheckout] | None,
                   error: PaymentProviderError | None) -> None:
            nonlocal done
            done += 1
            if error is not None:
                self._error(f"checking {ref.player_name} / {ref.product_name} ({ref.stripe_id}): {error}")
            else:
                assert checkouts is not None
                self.result.links_checked += 1
                self.result.sessions_seen += len(checkouts)
                self._record(ref, checkouts, complete_history=True)
            self._report(phase, done, len(refs))

        run_concurrently(
            ((ref, fetch(ref)) for ref in refs),
            concurrency=self.concurrency,
            on_done=record,
            should_stop=self._too_many_errors,
            thread_name_prefix="payment-sync",
        )
        if done < len(refs):
            self._error(f"stopped after {MAX_ERRORS} errors; {len(refs) - done} links were not checked")

    def _check_family_links(self) -> None:
        """A full pass: the sessions of every balance link that can still take a payment (active,
        or retired and not yet switched off in Stripe), asked link by link."""
        with unit_of_work(self.sessions) as session:
            stripe_ids = [stripe_id for stripe_id in session.scalars(
                select(FamilyLink.stripe_payment_link_id).where(
                    FamilyLink.tenant_id == self.user.tenant_id, FamilyLink.stripe_payment_link_id.is_not(None),
                    or_(FamilyLink.status == LinkStatus.ACTIVE, FamilyLink.stripe_deactivation_pending.is_(True)))
                .order_by(FamilyLink.id)) if stripe_id]
        for stripe_id in stripe_ids:
            if self._too_many_errors():
                return
            try:
                checkouts = list(self.gateway.list_completed_checkout_sessions(payment_link=stripe_id))
            except PaymentProviderError as exc:
                self._error(f"checking balance link {stripe_id}: {exc}")
                continue
            self.result.links_checked += 1
            self.result.sessions_seen += len(checkouts)
            for checkout in sorted(checkouts, key=lambda c: (c.created, c.id)):
                self._record_family(checkout)

    # -- recording one link --------------------------------------------------------------------

    def _record(self, ref: _LinkRef, checkouts: Sequence[CompletedCheckout], *, complete_history: bool,
                seen: Sequence[ProviderEvent] = (), failed: set[str] | None = None) -> None:
        """Apply what the sessions mean to one link and commit it (durable per item), with the
        events that told of them marked seen. ``failed``: sessions whose delayed payment failed
        (a failed session stays ``unpaid`` at Stripe: it is not processing any more)."""
        failed_now = set(failed or ())  # told by this sync's events
        failed = set(failed_now)
        pending = [checkout.id for checkout in checkouts if not checkout.paid]
        if pending:
            with unit_of_work(self.sessions) as session:
                failed |= events.failed_sessions(session, self.user, pending)
        checkouts = [checkout for checkout in checkouts if checkout.paid or checkout.id not in failed]
        decision = reconcile_link(ref.state, checkouts, complete_history=complete_history)
        fails = bool(failed) and ref.state.processing and not any(not c.paid for c in checkouts)
        if not decision.changes_link and not decision.flags and not fails and not seen:
            return  # sessions already recorded (a full check sees them again) cost no write at all
        paid: RecordedPayment | None = None
        flags: list[SyncFlag] = []
        with unit_of_work(self.sessions) as session:
            if decision.changes_link or fails:
                # Decide again on the locked, current row: the read may be minutes old in a full
                # pass, and another sync may have recorded the payment meanwhile. Locked, a
                # concurrent sync (cron and the dashboard) waits here and then sees what the
                # first one recorded, so it records nothing twice.
                link = links.locked_link(session, self.user, ref.id)
                assert link is not None  # links are never deleted once minted
                current = replace(ref.state, status=link.status, checkout_session_id=link.checkout_session_id,
                                  processing=bool(link.processing))
                decision = reconcile_link(current, checkouts, complete_history=complete_history)
                paid = self._apply(session, link, ref, decision)
                if fails and link.processing and link.status is not LinkStatus.PAID and decision.processing is None:
                    links.set_processing(link, False)  # its payment failed: owed again
                    if ref.state.single_payment and link.status is LinkStatus.ACTIVE:
                        # Stripe counted the failed session against the link's one-payment limit
                        # and switched it off: retired, so the next backfill mints a payable one.
                        links.retire_row(link)
                follow_stripe_link(session, self.user, link, checkouts)  # the ledger records the payment
            flags = [self._flag(session, note, ref) for note in decision.flags]
            events.mark_seen(session, self.user, seen)
        if paid is not None:
            self.result.paid.append(paid)
        elif failed_now and ref.state.status is not LinkStatus.PAID:
            self.result.failed.append(FailedPayment(ref.id, ref.player_name, ref.product_name, sorted(failed_now)[0]))
        self.result.flags.extend(flags)

    def _apply(self, session: Session, link: PaymentLink, ref: _LinkRef,
               decision: LinkDecision) -> RecordedPayment | None:
        if decision.processing is not None:
            links.set_processing(link, decision.processing)
        winner = decision.pay_with
        if winner is None:
            return None
        links.mark_paid(session, self.user, link, winner, amount_mismatch=decision.amount_mismatch)
        return RecordedPayment(
            link_id=link.id, player_name=ref.player_name, product_name=ref.product_name,
            amount_cents=winner.amount_total, currency=(winner.currency or link.currency).lower(),
            paid_at=winner.created, checkout_session_id=winner.id, amount_mismatch=decision.amount_mismatch,
        )

    # -- withdrawn players ------------------------------------------------------------------

    def _switch_off_withdrawn(self) -> None:
        """Withdrawn players' links: retired here (committed) first, then switched off in Stripe.

        Also asks again for those an earlier sync retired but Stripe did not switch off.
        """
        if self._too_many_errors():
            return
        with unit_of_work(self.sessions) as session:
            for ref in self._link_refs(
                session, (PaymentLink.status == LinkStatus.ACTIVE) & (Player.status == PlayerStatus.WITHDRAWN)
            ):
                links.retire(session, self.user, ref.id)  # paid meanwhile: stays paid
        with unit_of_work(self.sessions) as session:
            waiting = links.links_awaiting_switch_off(session, self.user, withdrawn_players_only=True)
        if not waiting:
            return
        phase = "Deactivating links of withdrawn players"
        self._report(phase, 0, len(waiting))
        switch_offs: links.SwitchOffs[links.PendingSwitchOff] = links.SwitchOffs(
            self.sessions, self.user, self.gateway, concurrency=self.concurrency)
        with switch_offs:
            for link in waiting:
                switch_offs.ask(link)
        for outcome in switch_offs.outcomes:
            link = outcome.link
            if outcome.error is not None:
                self._error(f"deactivating {link.player_name} / {link.product_name} "
                            f"({link.stripe_payment_link_id}): {outcome.error}")
            else:
                self.result.deactivated.append(DeactivatedLink(
                    link.link_id, link.player_name, link.product_name, link.stripe_payment_link_id))
        self._report(phase, len(waiting), len(waiting))

    # -- the end of a pass -------------------------------------------------------------------

    def _finish(self) -> None:
        result = self.result
        with unit_of_work(self.sessions) as session:
            if not result.errors:
                self._advance_mark(session, result.started_at)
                if not result.full:
                    events.advance_cursor(session, self.user, result.started_at)
                    events.forget_old_events(session, self.user, now=result.started_at)
                result.synced_at = result.started_at
            # The one balances implementation answers "still owed", as on the Balances page.
            balances = outstanding_balances(session, self.user)
            summary = summarise(balances)
            result.still_owed_count = summary.line_items
            result.still_owed_cents = summary.total_cents
            if summary.line_items:
                result.currency = summary.currency
            result.processing_count = sum(item.processing for balance in balances for item in balance.items)
            record_action(session, self.user, "sync", result.summary(), details=_audit_details(result))
        log.info("%s", result.summary())

    def _advance_mark(self, session: Session, started_at: datetime) -> None:
        # Only forward: a slower sync that started earlier must not move it back.
        session.execute(
            update(Tenant)
            .where(
                Tenant.id == self.user.tenant_id,
                or_(Tenant.payments_synced_at.is_(None), Tenant.payments_synced_at < started_at),
            )
            .values(payments_synced_at=started_at)
            .execution_options(synchronize_session=False)
        )

    # -- helpers --------------------------------------------------------------------------------

    def _link_refs(self, session: Session, condition: ColumnElement[bool]) -> list[_LinkRef]:
        rows = session.execute(
            select(PaymentLink.id, PaymentLink.stripe_payment_link_id, Player.first_name, Player.last_name,
                   Product.name, Product.kind, PaymentLink.status, PaymentLink.amount_cents, PaymentLink.currency,
                   PaymentLink.checkout_session_id, PaymentLink.processing)
            .join(Player, Player.id == PaymentLink.player_id)
            .join(Product, Product.id == PaymentLink.product_id)
            .where(PaymentLink.tenant_id == self.user.tenant_id, condition)
            .order_by(PaymentLink.id)
        )
        # Only a link still minting has no Stripe id (a check constraint); these are past that.
        return [
            _LinkRef(link_id, cast(str, stripe_id), f"{first} {last}".strip(), product, LinkState(
                status=status, amount_cents=amount, currency=currency, checkout_session_id=session_id,
                processing=bool(processing), single_payment=kind is ProductKind.ONE_TIME,
            ))
            for (link_id, stripe_id, first, last, product, kind, status, amount, currency, session_id,
                 processing) in rows
        ]

    def _flag(self, session: Session, note: FlagNote, ref: _LinkRef | None) -> SyncFlag:
        return record_flag(
            session, self.user, note.kind, note.checkout, note.message, link_id=ref.id if ref else None,
            player_name=ref.player_name if ref else None, product_name=ref.product_name if ref else None,
        )

    def _amount(self, checkout: CompletedCheckout) -> str:
        if checkout.amount_total is None:
            return "an unknown amount"
        return format_cents(checkout.amount_total, checkout.currency or self.result.currency)

    def _error(self, message: str) -> None:
        # info, not warning: the result carries every error to whoever ran the sync (one line
        # on the command line), and the audit entry keeps them.
        log.info("Payment sync: %s", message)
        self.result.errors.append(message)

    def _too_many_errors(self) -> bool:
        return len(self.result.errors) >= MAX_ERRORS

    def _report(self, phase: str, done: int, total: int | None = None) -> None:
        if self._progress is not None:
            self._progress(SyncProgress(phase, done, total))


def _audit_details(result: SyncResult) -> dict[str, object]:
    """What the audit entry shows of a run (written for people; nothing reads it back)."""
    return {
        "full": result.full,
        "complete": result.ok,
        "window_start": result.window_start.isoformat() if result.window_start else None,
        "sessions_seen": result.sessions_seen,
        "links_checked": result.links_checked,
        "paid": result.paid_count,
        "paid_cents": result.paid_cents,
        "still_owed": result.still_owed_count,
        "still_owed_cents": result.still_owed_cents,
        "processing": result.processing_count,
        "deactivated": len(result.deactivated),
        "flags": [
            {
                "key": f"{flag.kind.value}:{flag.checkout_session_id}:{'unpaid' if flag.processing else 'paid'}",
                "kind": flag.kind.value,
                "session": flag.checkout_session_id,
                "link_id": flag.link_id,
                "message": flag.message,
                "new": flag.new,
            }
            for flag in result.flags[:_AUDITED_FLAGS]
        ],
        "events_read": result.events_read,
        "failed": [{"link_id": f.link_id, "session": f.checkout_session_id} for f in result.failed],
        "refunds": [{"refund": r.stripe_refund_id, "payment_id": r.payment_id, "amount_cents": r.amount_cents}
                    for r in result.refunds],
        "differences": [{"kind": d.kind.value, "session": d.checkout_session_id, "payment_id": d.payment_id,
                         "message": d.message} for d in result.differences[:_AUDITED_FLAGS]],
        "errors": result.errors[:MAX_ERRORS],
    }


def _latest_state(group: Sequence[ProviderEvent]) -> CompletedCheckout:
    """The session as its most telling event shows it: paid if any says so, else the newest."""
    snapshots = [event.checkout for event in sorted(group, key=lambda e: (e.created, e.id)) if event.checkout]
    paid = [checkout for checkout in snapshots if checkout.paid]
    return paid[0] if paid else snapshots[-1]
