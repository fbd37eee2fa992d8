"""Payment flags: payments a person should look at, kept in ``payment_flags``.

Payment sync records each flag the first time it sees it (``record_flag``), and reports it as
new only then: the overlap of its window and a full check see the same sessions again, and
find the row. ``payment_flags`` lists a league's flags for the Sync page. Each sync also
writes what it saw to the audit log, which is never read back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, Permission, require
from core.models import FlagKind, PaymentFlag, PaymentLink, Player, Product
from core.payments.gateway import CompletedCheckout

__all__ = ["DEFAULT_FLAG_LIMIT", "FlagKind", "SyncFlag", "payment_flags", "record_flag"]

DEFAULT_FLAG_LIMIT = 500


@dataclass(frozen=True)
class SyncFlag:
    """A payment a person should look at, as recorded. ``new`` when this sync recorded it first."""

    kind: FlagKind
    checkout_session_id: str
    stripe_payment_link_id: str | None
    link_id: int | None
    player_name: str | None
    product_name: str | None
    message: str
    processing: bool = False  # the checkout's payment was still processing when flagged
    new: bool = True
    flagged_at: datetime | None = None  # when a sync first recorded it

    @property
    def key(self) -> tuple[FlagKind, str, bool]:
        """What makes two flags the same flag (``payment_flags``' unique key within a league)."""
        return (self.kind, self.checkout_session_id, self.processing)

    def describe(self) -> str:
        who = f"{self.player_name} / {self.product_name}" if self.player_name else (
            f"payment link {self.stripe_payment_link_id}" if self.stripe_payment_link_id else "no payment link"
        )
        return f"{self.kind.label}: {who}: {self.message} (Checkout Session {self.checkout_session_id})"


def record_flag(
    session: Session,
    user: ActingUser,
    kind: FlagKind,
    checkout: CompletedCheckout,
    detail: str,
    *,
    link_id: int | None,
    player_name: str | None = None,
    product_name: str | None = None,
) -> SyncFlag:
    """Record a flag unless the league has it already; the flag as stored, ``new`` if recorded now.

    Nothing is committed. A concurrent sync recording the same flag first is not an error:
    its row is the one returned, not new.
    """
    processing = not checkout.paid
    stored = _find(session, user, kind, checkout.id, processing)
    new = False
    if stored is None:
        row = PaymentFlag(
            tenant_id=user.tenant_id, payment_link_id=link_id, stripe_payment_link_id=checkout.payment_link_id,
            checkout_session_id=checkout.id, kind=kind, processing=processing, detail=detail,
        )
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:  # another sync recorded it between the look and the insert
            stored = _find(session, user, kind, checkout.id, processing)
            assert stored is not None
        else:
            stored, new = row, True
    return SyncFlag(
        kind=stored.kind, checkout_session_id=stored.checkout_session_id,
        stripe_payment_link_id=stored.stripe_payment_link_id, link_id=stored.payment_link_id,
        player_name=player_name, product_name=product_name, message=stored.detail,
        processing=stored.processing, new=new, flagged_at=stored.created_at,
    )


def payment_flags(session: Session, user: ActingUser, *, limit: int = DEFAULT_FLAG_LIMIT) -> list[SyncFlag]:
    """The league's flagged payments, newest first (at most ``limit``). Treasurer and admin."""
    require(user, Permission.SYNC_PAYMENTS)
    rows = session.execute(
        select(PaymentFlag, Player.first_name, Player.last_name, Product.name)
        .outerjoin(PaymentLink, (PaymentLink.id == PaymentFlag.payment_link_id)
                   & (PaymentLink.tenant_id == PaymentFlag.tenant_id))
        .outerjoin(Player, Player.id == PaymentLink.player_id)
        .outerjoin(Product, Product.id == PaymentLink.product_id)
        .where(PaymentFlag.tenant_id == user.tenant_id)
        .order_by(PaymentFlag.created_at.desc(), PaymentFlag.id.desc())
        .limit(limit)
    ).all()
    return [
        SyncFlag(
            kind=flag.kind, checkout_session_id=flag.checkout_session_id,
            stripe_payment_link_id=flag.stripe_payment_link_id, link_id=flag.payment_link_id,
            player_name=f"{first} {last}".strip() if first is not None else None, product_name=product,
            message=flag.detail, processing=flag.processing, new=False, flagged_at=flag.created_at,
        )
        for flag, first, last, product in rows
    ]


def _find(session: Session, user: ActingUser, kind: FlagKind, checkout_session_id: str,
          processing: bool) -> PaymentFlag | None:
    return session.scalars(
        select(PaymentFlag).where(
            PaymentFlag.tenant_id == user.tenant_id, PaymentFlag.checkout_session_id == checkout_session_id,
            PaymentFlag.kind == kind, PaymentFlag.processing == processing,
        )
    ).one_or_none()
