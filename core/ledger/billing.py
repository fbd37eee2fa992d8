"""Charges for what signed players owe: the ledger's side of the backfill.

What a charge is for is its key: ``product:pl<player>:pr<product>`` for a required product,
``order:o<order>`` for an order (``:<period>`` is added for a dues period). The key is unique
in the league, so billing again finds the charge already there. A charge billed again at a new
price keeps its key with ``#2``, ``#3``... after it; the current charge of a key is the one not
reversed.

* ``bill_owed`` records the charges for things owed that have none yet (the backfill calls it
  before minting, so a family's credit settles a new charge before any link is made for it);
* ``attach_link`` ties a link that has just become active to its charge, and when the link
  replaces one at an old price, bills the unpaid charge again at the new price (the old charge
  reversed, reason ``price change``), so "new link first, old one off" holds for the balance too;
* ``league_charges`` is what the plan reads: each key's current charge and what is open on it.

Functions here run inside the backfill's own units of work, after its ``require``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, Permission, require
from core.audit import record_action
from core.errors import NotFound
from core.ledger.accounts import charge_settlements, families_with_credit, reversed_ids
from core.ledger.entries import LedgerWriter, league_today
from core.ledger.links import retire_link, retire_unmatched_links
from core.ledger.positions import mark_written
from core.models import (
    Charge,
    ChargePurpose,
    EntryOrigin,
    LedgerEntry,
    LedgerEntryKind,
    Parent,
    PaymentLink,
    Player,
    Tenant,
)
from core.money import format_cents

log = logging.getLogger(__name__)

BILLING_BATCH = 1000


def charge_key_for(*, player_id: int, product_id: int, order_id: int | None, period: str | None = None) -> str:
    """What a player's charge is for, as its unique key (see the module docstring)."""
    if order_id is not None:
        return f"order:o{order_id}"
    return f"product:pl{player_id}:pr{product_id}" + (f":{period}" if period else "")


def base_key(charge_key: str) -> str:
    return charge_key.split("#", 1)[0]


@dataclass(frozen=True)
class Owed:
    """One thing a signed player owes (from the backfill's plan)."""

    parent_id: int
    player_id: int
    product_id: int
    order_id: int | None
    amount_cents: int
    description: str

    @property
    def key(self) -> str:
        return charge_key_for(player_id=self.player_id, product_id=self.product_id, order_id=self.order_id)


@dataclass(frozen=True)
class CurrentCharge:
    """The current charge of one key and what is left of it (``charge_id`` None: voided)."""

    charge_id: int | None
    amount_cents: int
    open_cents: int
    processing_cents: int
    revisions: int  # charges ever recorded under the key

    @property
    def settled(self) -> bool:
        return self.charge_id is None or (self.open_cents <= 0 and self.processing_cents == 0)

    @property
    def untouched(self) -> bool:
        return self.charge_id is not None and self.open_cents == self.amount_cents


@dataclass(frozen=True)
class BillingResult:
    charges_recorded: int
    credit_applied_cents: int
    links_to_switch_off: tuple[int, ...]


def league_charges(session: Session, user: ActingUser) -> dict[str, CurrentCharge]:
    """Every key of the league's player charges -> its current charge (one statement)."""
    require(user, Permission.MINT_LINKS)
    settled = charge_settlements(user.tenant_id).subquery("settled")
    void = reversed_ids(user.tenant_id).subquery("void")
    rows = session.execute(
        select(Charge.id, Charge.charge_key, Charge.amount_cents, func.coalesce(settled.c.settled_cents, 0),
               func.coalesce(settled.c.processing_cents, 0), void.c.reversed_entry_id.is_not(None))
        .outerjoin(settled, settled.c.charge_id == Charge.id)
        .outerjoin(void, void.c.reversed_entry_id == Charge.id)
        .where(Charge.tenant_id == user.tenant_id, Charge.player_id.is_not(None))
        .order_by(Charge.id)
    ).all()
    current: dict[str, CurrentCharge] = {}
    for charge_id, key, amount, settled_cents, processing_cents, voided in rows:
        base = base_key(key)
        seen = current.get(base)
        revisions = (seen.revisions if seen else 0) + 1
        if voided:
            kept = seen if seen is not None and seen.charge_id is not None else None
            current[base] = (CurrentCharge(kept.charge_id, kept.amount_cents, kept.open_cents,
                                           kept.processing_cents, revisions) if kept
                             else CurrentCharge(None, amount, 0, 0, revisions))
        else:
            current[base] = CurrentCharge(charge_id, amount, amount - settled_cents - processing_cents,
                                          processing_cents, revisions)
    return current


def bill_owed(session: Session, user: ActingUser, owed: Sequence[Owed]) -> BillingResult:
    """Record a charge for each thing owed whose key has none yet, due today; then the credit of
    the families billed settles their new charges (and their links follow). One audit row.
    The caller commits."""
    require(user, Permission.MINT_LINKS)
    existing = league_charges(session, user)
    # In key order: two backfills at once insert in the same order, so one waits for the other
    # instead of each holding a key the other wants (a deadlock).
    fresh = sorted({thing.key: thing for thing in owed if thing.key not in existing}.values(), key=lambda t: t.key)
    if not fresh:
        return BillingResult(0, 0, ())
    currency = session.get_one(Tenant, user.tenant_id).currency.lower()
    recorded = 0
    for start in range(0, len(fresh), BILLING_BATCH):
        recorded += _insert_charges(session, user, fresh[start:start + BILLING_BATCH], currency)
    credit = families_with_credit(session, user)
    applied, retired = 0, []
    for parent_id in sorted({thing.parent_id for thing in fresh if thing.parent_id in credit}):
        writer = LedgerWriter(session, user, session.get_one(Parent, parent_id), origin=EntryOrigin.BACKFILL)
        cents, account = writer.settle_with_credit()
        applied += cents
        retired += retire_unmatched_links(session, user, account)
    record_action(
        session, user, "ledger.billing",
        f"Billed {recorded} charges for what signed players owe"
        + (f"; {format_cents(applied, currency)} of families' credit settled them" if applied else ""),
        details={"charges": recorded, "credit_applied_cents": applied, "links_retired": retired},
    )
    return BillingResult(recorded, applied, tuple(retired))


def _insert_charges(session: Session, user: ActingUser, things: Sequence[Owed], currency: str) -> int:
    """Entries and charges in bulk; if another backfill billed one of them first, one by one."""
    try:
        with session.begin_nested():
            _insert(session, user, things, currency)
        return len(things)
    except IntegrityError:
        log.info("Another run billed some of these charges first; billing them one by one")
    recorded = 0
    for thing in things:
        try:
            with session.begin_nested():
                _insert(session, user, [thing], currency)
            recorded += 1
        except IntegrityError:
            pass  # billed by the other run: the key is taken care of
    return recorded


def _insert(session: Session, user: ActingUser, things: Sequence[Owed], currency: str) -> None:
    entry_ids = session.scalars(
        insert(LedgerEntry).returning(LedgerEntry.id, sort_by_parameter_order=True),
        [{"tenant_id": user.tenant_id, "parent_id": thing.parent_id, "kind": LedgerEntryKind.CHARGE,
          "origin": EntryOrigin.BACKFILL, "recorded_by": user.identity} for thing in things],
    ).all()
    due = league_today(session, user)
    session.execute(insert(Charge), [
        {"id": entry_id, "tenant_id": user.tenant_id, "parent_id": thing.parent_id, "player_id": thing.player_id,
         "purpose": ChargePurpose.ORDER if thing.order_id is not None else ChargePurpose.PRODUCT,
         "product_id": thing.product_id, "order_id": thing.order_id, "charge_key": thing.key,
         "description": thing.description[:300], "amount_cents": thing.amount_cents, "currency": currency,
         "due_on": due}
        for entry_id, thing in zip(entry_ids, things, strict=True)
    ])
    mark_written(session, user.tenant_id, {thing.parent_id for thing in things})  # around the ORM


def attach_link(session: Session, user: ActingUser, link: PaymentLink, *, replaces: PaymentLink | None = None) -> None:
    """Tie ``link``, which has just become active, to its charge (in the caller's transaction).

    No charge yet: one is billed at the link's amount. A price change (``replaces``, on an
    unpaid product charge at another amount): that charge is reversed and billed again at the
    link's amount. A charge reversed: the link is retired. Any other difference is left to
    the links' rule (the link is retired).
    """
    require(user, Permission.MINT_LINKS)
    if link.tenant_id != user.tenant_id:
        raise NotFound(f"There is no payment link {link.id} in this league.")
    player_parent = session.scalars(
        select(Parent).join(Player, Player.parent_id == Parent.id)
        .where(Player.id == link.player_id, Parent.tenant_id == user.tenant_id)
    ).one()
    key = charge_key_for(player_id=link.player_id, product_id=link.product_id, order_id=link.order_id)
    current = _current_for(session, user, key, player_parent.id)
    description = link.product.name if link.product is not None else "payment link"
    if current is not None and current.charge_id is not None and current.open_cents == link.amount_cents:
        link.charge_id = current.charge_id
        session.flush()
        return
    if current is not None and current.charge_id is None:
        retire_link(link)  # its charge was reversed: nothing is owed through it
        session.flush()
        return
    writer = LedgerWriter(session, user, player_parent, origin=EntryOrigin.BACKFILL)
    if current is None:
        charge = writer.charge(amount_cents=link.amount_cents, description=description, due_on=writer.today(),
                               purpose=ChargePurpose.ORDER if link.order_id else ChargePurpose.PRODUCT,
                               charge_key=key,
                               player_id=link.player_id, product_id=link.product_id, order_id=link.order_id)
        link.charge_id = charge.id
        summary = f"Billed {player_parent.name} {writer.money(link.amount_cents)} for {description} (entry {charge.id})"
    elif replaces is not None and link.order_id is None and current.untouched:
        assert current.charge_id is not None
        old = format_cents(current.amount_cents, writer.currency)
        writer.reversal(current.charge_id, f"price changed from {old} to {writer.money(link.amount_cents)}",
                        origin=EntryOrigin.PRICE_CHANGE)
        charge = writer.charge(amount_cents=link.amount_cents, description=description, due_on=writer.today(),
                               purpose=ChargePurpose.PRODUCT, charge_key=f"{key}#{current.revisions + 1}",
                               player_id=link.player_id, product_id=link.product_id, origin=EntryOrigin.PRICE_CHANGE)
        link.charge_id = charge.id
        summary = (f"Billed {player_parent.name} {description} again at the new price "
                   f"{writer.money(link.amount_cents)} (was {old}; entry {charge.id})")
    else:
        link.charge_id = current.charge_id
        summary = ""
    session.flush()
    if summary:
        change_id = writer.entry_ids[-1]
        writer.finish(action="ledger.charge", summary=summary, main_entry_id=change_id, kind=LedgerEntryKind.CHARGE)
    else:
        retire_unmatched_links(session, user, writer.account())


def _current_for(session: Session, user: ActingUser, key: str, parent_id: int) -> CurrentCharge | None:
    settled = charge_settlements(user.tenant_id, [parent_id]).subquery("settled")
    void = reversed_ids(user.tenant_id).subquery("void")
    rows = session.execute(
        select(Charge.id, Charge.amount_cents, func.coalesce(settled.c.settled_cents, 0),
               func.coalesce(settled.c.processing_cents, 0), void.c.reversed_entry_id.is_not(None))
        .outerjoin(settled, settled.c.charge_id == Charge.id)
        .outerjoin(void, void.c.reversed_entry_id == Charge.id)
        .where(Charge.tenant_id == user.tenant_id, Charge.parent_id == parent_id,
               (Charge.charge_key == key) | Charge.charge_key.startswith(f"{key}#", autoescape=True))
        .order_by(Charge.id)
    ).all()
    if not rows:
        return None
    live = [row for row in rows if not row[4]]
    if not live:
        return CurrentCharge(None, rows[-1][1], 0, 0, len(rows))
    charge_id, amount, settled_cents, processing_cents, _ = live[-1]
    return CurrentCharge(charge_id, amount, amount - settled_cents - processing_cents, processing_cents, len(rows))

