"""Payment sync: bring the payments made through our links back from Stripe.

``sync_payments`` is the one entry point (dashboard button, ``python -m core
sync-payments``, and the send to everyone, which syncs first so a parent who paid is not
reminded).

Incremental by default. It lists the account's completed Checkout Sessions created since
the league's last complete sync minus an overlap, page by page, and matches them to our
links by payment link id: a few Stripe calls whatever the number of links. The overlap is
a day, not minutes, on purpose: a session's ``created`` is when the parent *opened* the
link, and Checkout keeps a session open for up to 24 hours, so a payment finished just
before this sync can belong to a session created almost a day before the last one.
Delayed payment methods settle days later on a session whose ``created`` does not move,
so links marked processing are checked again one by one (there are few of them).

``full=True`` checks every active link explicitly instead (one list call per link, several
in flight under the gateway's pacer): for the first sync of a league or an audit.

Durable per item: each link's change is committed as soon as it is recorded, so a sync
that fails half-way keeps what it recorded. The league's ``payments_synced_at`` advances
only after a complete pass, so a rerun covers the same window again and changes nothing
that is already recorded. This function therefore commits the caller's session.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, Permission, require
from core.audit import record_action
from core.errors import BillingError, PaymentProviderError
from core.ledger.stripe_payments import follow_stripe_link
from core.models import (
    AuditEntry,
    LinkStatus,
    Order,
    OrderStatus,
    PaymentLink,
    Player,
    PlayerStatus,
    Product,
    ProductKind,
    Tenant,
    utcnow,
)
from core.money import format_cents
from core.payments.gateway import CompletedCheckout, PaymentGateway, names_league
from core.payments.provider_calls import run_concurrently
from core.payments.reconciliation import FlagKind, FlagNote, LinkDecision, LinkState, reconcile_link
from core.reporting.balances import outstanding_balances, summarise

__all__ = [
    "DEFAULT_OVERLAP",
    "DeactivatedLink",
    "FlagKind",
    "RecordedPayment",
    "SyncFlag",
    "SyncIncomplete",
    "SyncProgress",
    "SyncResult",
    "sync_payments",
]

log = logging.getLogger(__name__)

# Checkout Sessions stay open up to 24 hours after creation; ten minutes more for clock skew.
DEFAULT_OVERLAP = timedelta(hours=24, minutes=10)
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
    """A link of a withdrawn player this sync deactivated, in Stripe and here."""

    link_id: int
    player_name: str
    product_name: str
    stripe_payment_link_id: str


@dataclass(frozen=True)
class SyncFlag:
    """A payment a person should look at. ``new`` is False when an earlier sync reported it."""

    kind: FlagKind
    checkout_session_id: str
    stripe_payment_link_id: str | None
    link_id: int | None
    player_name: str | None
    product_name: str | None
    message: str
    payment_status: str = "paid"
    new: bool = True

    def describe(self) -> str:
        who = f"{self.player_name} / {self.product_name}" if self.player_name else (
            f"payment link {self.stripe_payment_link_id}" if self.stripe_payment_link_id else "no payment link"
        )
        return f"{self.kind.label}: {who}: {self.message} (Checkout Session {self.checkout_session_id})"


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
    still_owed_count: int = 0
    still_owed_cents: int = 0
    processing_count: int = 0
    currency: str = "usd"

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
        mode = "full check of every link" if self.full else "incremental"
        parts = [
            f"{self.paid_count} paid ({format_cents(self.paid_cents, self.currency)})",
            f"{self.still_owed_count} still owed ({format_cents(self.still_owed_cents, self.currency)})",
            f"{self.processing_count} processing",
            f"{len(self.flags)} flagged",
            f"{len(self.deactivated)} deactivated",
        ]
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
    session: Session,
    user: ActingUser,
    gateway: PaymentGateway,
    *,
    full: bool = False,
    progress: ProgressCallback | None = None,
    overlap: timedelta = DEFAULT_OVERLAP,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> SyncResult:
    """Mark links paid from Stripe's completed Checkout Sessions; deactivate withdrawn players' links.

    Commits as it goes (durable per item, see the module docstring): every link it marks
    paid, processing or deactivated is committed on its own, the league's
    ``payments_synced_at`` advances only after a complete pass, and an audit row records
    the run. Stripe failures do not raise: they are in ``result.errors`` (call
    ``result.raise_for_errors()`` to stop on them) and a rerun completes the work.
    Needs ``Permission.SYNC_PAYMENTS`` (treasurer, admin).
    """
    require(user, Permission.SYNC_PAYMENTS)
    return _PaymentSync(
        session, user, gateway, full=full, progress=progress, overlap=overlap, concurrency=concurrency
    ).run()


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
        session: Session,
        user: ActingUser,
        gateway: PaymentGateway,
        *,
        full: bool,
        progress: ProgressCallback | None,
        overlap: timedelta,
        concurrency: int,
    ) -> None:
        self.session = session
        self.user = user
        self.gateway = gateway
        self.overlap = overlap
        self.concurrency = max(1, concurrency)
        self._progress = progress
        self.league_key = session.get_one(Tenant, user.tenant_id).league_key
        self.result = SyncResult(full=full, started_at=utcnow())
        self._reported = self._flags_reported_since(self.result.started_at - overlap)

    def run(self) -> SyncResult:
        if self.result.full:
            self._check_each_link(self._links_to_check(), phase="Checking every link")
        else:
            self._list_window()
            self._check_each_link(self._processing_links(), phase="Checking processing payments")
        self._deactivate_withdrawn()
        self._finish()
        return self.result

    # -- incremental: one listing for the whole window ---------------------------------------

    def _list_window(self) -> None:
        since = self._window_start()
        self.result.window_start = since
        if since is None:
            return  # the league has no links: nothing can have been paid
        matched: dict[int, list[CompletedCheckout]] = defaultdict(list)
        refs: dict[int, _LinkRef] = {}
        batch: list[CompletedCheckout] = []
        self._report("Listing payments from Stripe", 0)
        try:
            for checkout in self.gateway.list_completed_checkout_sessions(created_since=since):
                self.result.sessions_seen += 1
                batch.append(checkout)
                if len(batch) >= _MATCH_BATCH:
                    self._match(batch, matched, refs)
                    batch = []
                    self._report("Listing payments from Stripe", self.result.sessions_seen)
            self._match(batch, matched, refs)
        except PaymentProviderError as exc:
            self._match(batch, matched, refs)
            self._error(f"listing completed Checkout Sessions: {exc}")
        # What was matched before a failure is still recorded: it is true, and durable.
        ordered = sorted(matched, key=lambda link_id: min(c.created for c in matched[link_id]))
        for done, link_id in enumerate(ordered, start=1):
            self._record(refs[link_id], matched[link_id], complete_history=False)
            self._report("Recording payments", done, len(ordered))

    def _window_start(self) -> datetime | None:
        tenant = self.session.get(Tenant, self.user.tenant_id)
        assert tenant is not None
        mark = tenant.payments_synced_at
        if mark is None:  # never synced: every session since the league's first link
            mark = self.session.scalar(
                select(func.min(PaymentLink.created_at)).where(PaymentLink.tenant_id == self.user.tenant_id)
            )
            if mark is None:
                return None
        return mark - self.overlap

    def _match(
        self,
        batch: Sequence[CompletedCheckout],
        matched: dict[int, list[CompletedCheckout]],
        refs: dict[int, _LinkRef],
    ) -> None:
        """Sort one page of sessions into ours (by payment link id), unknown-but-ours, not ours."""
        if not batch:
            return
        stripe_ids = sorted({c.payment_link_id for c in batch if c.payment_link_id})
        known = {ref.stripe_id: ref for ref in self._link_refs(PaymentLink.stripe_payment_link_id.in_(stripe_ids))}
        for checkout in batch:
            ref = known.get(checkout.payment_link_id or "")
            if ref is not None:
                refs[ref.id] = ref
                matched[ref.id].append(checkout)
            elif self._claims_our_league(checkout):
                self._flag(
                    FlagNote(FlagKind.UNKNOWN_LINK, checkout,
                             f"{_amount(checkout)} paid through a link this league has no record of"),
                    None,
                )
            else:
                self.result.sessions_not_ours += 1  # another league's or another sale on the account

    def _claims_our_league(self, checkout: CompletedCheckout) -> bool:
        # The backfill puts the league on every link's metadata, and Checkout copies it.
        return names_league(checkout.metadata, tenant_id=self.user.tenant_id, league_key=self.league_key)

    # -- per-link checks: a full pass, or the links still processing --------------------------

    def _links_to_check(self) -> list[_LinkRef]:
        return self._link_refs(or_(PaymentLink.status == LinkStatus.ACTIVE, self._still_processing()))

    def _processing_links(self) -> list[_LinkRef]:
        return self._link_refs(self._still_processing())

    @staticmethod
    def _still_processing():  # type: ignore[no-untyped-def]
        return (PaymentLink.processing.is_(True)) & (PaymentLink.status != LinkStatus.PAID)

    def _check_each_link(self, links: Sequence[_LinkRef], *, phase: str) -> None:
        if not links:
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
            self._report(phase, done, len(links))

        run_concurrently(
            ((ref, fetch(ref)) for ref in links),
            concurrency=self.concurrency,
            on_done=record,
            should_stop=self._too_many_errors,
            thread_name_prefix="payment-sync",
        )
        if done < len(links):
            self._error(f"stopped after {MAX_ERRORS} errors; {len(links) - done} links were not checked")

    # -- recording one link --------------------------------------------------------------------

    def _record(self, ref: _LinkRef, checkouts: Sequence[CompletedCheckout], *, complete_history: bool) -> None:
        """Apply what the sessions mean to one link and commit it (durable per item)."""
        decision = reconcile_link(ref.state, checkouts, complete_history=complete_history)
        if decision.changes_link:
            # Decide again on the locked, current row: the read may be minutes old in a full
            # pass, and another sync may have recorded the payment meanwhile.
            link = self._locked_link(ref.id)
            current = replace(ref.state, status=link.status, checkout_session_id=link.checkout_session_id,
                              processing=bool(link.processing))
            decision = reconcile_link(current, checkouts, complete_history=complete_history)
            self._apply(link, ref, decision)
            follow_stripe_link(self.session, self.user, link, checkouts)  # the ledger records the payment
            self.session.commit()
        # Sessions already recorded (the overlap reads them again) cost no write at all.
        for note in decision.flags:
            self._flag(note, ref)

    def _apply(self, link: PaymentLink, ref: _LinkRef, decision: LinkDecision) -> None:
        if decision.processing is not None:
            link.processing = decision.processing
        winner = decision.pay_with
        if winner is None:
            return
        link.status = LinkStatus.PAID
        link.paid_at = winner.created
        link.paid_amount_cents = winner.amount_total
        link.checkout_session_id = winner.id
        link.amount_mismatch = decision.amount_mismatch
        if link.order_id is not None:
            order = self.session.scalars(
                select(Order).where(Order.id == link.order_id, Order.tenant_id == self.user.tenant_id)
                .with_for_update()
            ).one_or_none()
            if order is not None and order.status is OrderStatus.PENDING:
                order.status = OrderStatus.PAID
        self.result.paid.append(RecordedPayment(
            link_id=link.id, player_name=ref.player_name, product_name=ref.product_name,
            amount_cents=winner.amount_total, currency=(winner.currency or link.currency).lower(),
            paid_at=winner.created, checkout_session_id=winner.id, amount_mismatch=decision.amount_mismatch,
        ))

    def _locked_link(self, link_id: int) -> PaymentLink:
        # Locked and re-read: a concurrent sync (cron and the dashboard) waits here and then
        # sees what the first one recorded, so it records nothing twice.
        return self.session.scalars(
            select(PaymentLink)
            .where(PaymentLink.id == link_id, PaymentLink.tenant_id == self.user.tenant_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).one()

    # -- withdrawn players ------------------------------------------------------------------

    def _deactivate_withdrawn(self) -> None:
        links = self._link_refs(
            (PaymentLink.status == LinkStatus.ACTIVE) & (Player.status == PlayerStatus.WITHDRAWN)
        )
        if not links or self._too_many_errors():
            return
        done = 0

        def deactivate(ref: _LinkRef) -> Callable[[], object]:
            return lambda: self.gateway.deactivate_payment_link(ref.stripe_id)

        def record(ref: _LinkRef, _: object, error: PaymentProviderError | None) -> None:
            nonlocal done
            done += 1
            if error is not None:
                self._error(f"deactivating {ref.player_name} / {ref.product_name} ({ref.stripe_id}): {error}")
            else:
                link = self._locked_link(ref.id)
                if link.status is LinkStatus.ACTIVE:
                    link.status = LinkStatus.DEACTIVATED
                    link.deactivated_at = utcnow()
                    self.session.commit()
                    self.result.deactivated.append(
                        DeactivatedLink(ref.id, ref.player_name, ref.product_name, ref.stripe_id)
                    )
                else:
                    self.session.commit()  # paid meanwhile: keep what was recorded
            self._report("Deactivating links of withdrawn players", done, len(links))

        run_concurrently(
            ((ref, deactivate(ref)) for ref in links),
            concurrency=self.concurrency,
            on_done=record,
            should_stop=self._too_many_errors,
            thread_name_prefix="payment-sync",
        )
        if done < len(links):
            self._error(f"stopped after {MAX_ERRORS} errors; {len(links) - done} links were not deactivated")

    # -- the end of a pass -------------------------------------------------------------------

    def _finish(self) -> None:
        result = self.result
        if not result.errors:
            self._advance_mark(result.started_at)
            result.synced_at = result.started_at
        # The one balances implementation answers "still owed", as on the Balances page.
        balances = outstanding_balances(self.session, self.user)
        summary = summarise(balances)
        result.still_owed_count = summary.line_items
        result.still_owed_cents = summary.total_cents
        result.currency = summary.currency
        result.processing_count = sum(item.processing for balance in balances for item in balance.items)
        record_action(self.session, self.user, "sync", result.summary(), details=_audit_details(result))
        self.session.commit()
        log.info("%s", result.summary())

    def _advance_mark(self, started_at: datetime) -> None:
        # Only forward: a slower sync that started earlier must not move it back.
        self.session.execute(
            update(Tenant)
            .where(
                Tenant.id == self.user.tenant_id,
                or_(Tenant.payments_synced_at.is_(None), Tenant.payments_synced_at < started_at),
            )
            .values(payments_synced_at=started_at)
            .execution_options(synchronize_session=False)
        )
        tenant = self.session.get(Tenant, self.user.tenant_id)
        if tenant is not None:
            self.session.refresh(tenant, ["payments_synced_at"])

    # -- helpers --------------------------------------------------------------------------------

    def _link_refs(self, condition) -> list[_LinkRef]:  # type: ignore[no-untyped-def]
        rows = self.session.execute(
            select(PaymentLink.id, PaymentLink.stripe_payment_link_id, Player.first_name, Player.last_name,
                   Product.name, Product.kind, PaymentLink.status, PaymentLink.amount_cents, PaymentLink.currency,
                   PaymentLink.checkout_session_id, PaymentLink.processing)
            .join(Player, Player.id == PaymentLink.player_id)
            .join(Product, Product.id == PaymentLink.product_id)
            .where(PaymentLink.tenant_id == self.user.tenant_id, condition)
            .order_by(PaymentLink.id)
        )
        return [
            _LinkRef(link_id, stripe_id, f"{first} {last}".strip(), product, LinkState(
                status=status, amount_cents=amount, currency=currency, checkout_session_id=session_id,
                processing=bool(processing), single_payment=kind is ProductKind.ONE_TIME,
            ))
            for (link_id, stripe_id, first, last, product, kind, status, amount, currency, session_id,
                 processing) in rows
        ]

    def _flag(self, note: FlagNote, ref: _LinkRef | None) -> None:
        key = _flag_key(note.kind.value, note.checkout.id, note.checkout.payment_status)
        self.result.flags.append(SyncFlag(
            kind=note.kind,
            checkout_session_id=note.checkout.id,
            stripe_payment_link_id=note.checkout.payment_link_id,
            link_id=ref.id if ref else None,
            player_name=ref.player_name if ref else None,
            product_name=ref.product_name if ref else None,
            message=note.message,
            payment_status=note.checkout.payment_status,
            new=key not in self._reported,
        ))

    def _flags_reported_since(self, since: datetime) -> set[str]:
        """Flags earlier syncs already reported (the overlap sees the same sessions again)."""
        rows = self.session.scalars(
            select(AuditEntry.details).where(
                AuditEntry.tenant_id == self.user.tenant_id,
                AuditEntry.action == "sync",
                AuditEntry.created_at >= since,
            )
        )
        return {flag.get("key", "") for details in rows for flag in (details or {}).get("flags", [])}

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


def _amount(checkout: CompletedCheckout) -> str:
    if checkout.amount_total is None:
        return "an unknown amount"
    return format_cents(checkout.amount_total, checkout.currency or "usd")


def _flag_key(kind: str, session_id: str, payment_status: str) -> str:
    return f"{kind}:{session_id}:{payment_status}"


def _audit_details(result: SyncResult) -> dict[str, object]:
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
                "key": _flag_key(flag.kind.value, flag.checkout_session_id, flag.payment_status),
                "kind": flag.kind.value,
                "session": flag.checkout_session_id,
                "link_id": flag.link_id,
                "message": flag.message,
            }
            for flag in result.flags[:_AUDITED_FLAGS]
        ],
        "errors": result.errors[:MAX_ERRORS],
    }
