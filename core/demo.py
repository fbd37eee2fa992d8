"""A believable demo league, so a fresh checkout has something real to look at.

Deterministic (seeded): several teams, ~150 players, ~100 parents (siblings share a
parent), registration, monthly dues and an optional uniform bought through orders,
links in every status, and the awkward real-world cases: apostrophes, accents,
HTML-looking text, a parent with no email, an opted-out parent, withdrawn players.
Demo links point at Stripe-looking URLs that go nowhere; the backfill mints real ones.

Its ledger holds each link's charge (and the Stripe payment of each paid link), and the things
a treasurer records in the first week, so each kind shows on a family's statement: payments
in cash, by check and by bank transfer, a partial payment, a sibling discount, a scholarship
(financial aid), and an overpayment refunded by check.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, Role
from core.ledger.billing import charge_key_for
from core.models import (
    AdjustmentKind,
    Allocation,
    Charge,
    ChargePurpose,
    EntryOrigin,
    FamilyLink,
    LedgerEntry,
    LedgerEntryKind,
    LinkStatus,
    Order,
    OrderStatus,
    Parent,
    Payment,
    PaymentLink,
    PaymentMethod,
    PaymentState,
    Player,
    PlayerStatus,
    PriceTier,
    Product,
    ProductKind,
    Team,
    Tenant,
    utcnow,
)

DEMO_SLUG = "demo"
DEMO_CURRENCY = "usd"  # the demo league bills in US dollars; everything in it uses the league's currency

_TEAMS = ("U10 Rockets", "U10 Comets", "U12 Hawks", "U12 Falcons", "U14 Titans", "U14 Storm")
_LAST_NAMES = (
    "Anderson", "O'Brien", "Núñez", "Nguyen", "García", "Smith", "Kowalski", "D'Angelo",
    "Okafor", "Müller", "Johnson", "Lefèvre", "Patel", "Brown", "Søndergaard", "Williams",
    "Martínez", "Chen", "O'Connor", "Jackson", "Rossi", "Dubois", "Kim", "Ali", "Young",
)
_ADULT_FIRST = (
    "Maria", "James", "Aisha", "Chloé", "David", "Priya", "Liam", "Sofía", "Noah", "Fatima",
    "Ethan", "Zoë", "Lucas", "Ingrid", "Omar", "Hannah", "Mateo", "Grace", "Kwame", "Renée",
)
_KID_FIRST = (
    "Ava", "Leo", "Mia", "Eli", "Zara", "Finn", "Nora", "Kai", "Luca", "Ines", "Theo", "Maya",
    "Jonah", "Ruby", "Amir", "Léa", "Owen", "Isla", "Max", "Nia", "Sam", "Jade", "Ben", "Ada",
)


@dataclass(frozen=True)
class DemoSummary:
    tenant_slug: str
    created: bool
    teams: int
    parents: int
    players: int
    links: int


def build_demo_league(session: Session, *, seed: int = 7, ledger_examples: bool = True) -> DemoSummary:
    """Create the demo league (or report the existing one). The caller commits.

    ``ledger_examples=False`` leaves out what a treasurer records by hand (the ledger then
    holds only what the payment links hold, as right after migration 0008).
    """
    existing = session.scalars(select(Tenant).where(Tenant.slug == DEMO_SLUG)).one_or_none()
    if existing is not None:
        return _summary_of(session, existing, created=False)
    rng = random.Random(seed)
    tenant = Tenant(
        slug=DEMO_SLUG,
        name="Westside Youth Basketball",
        currency=DEMO_CURRENCY,
        sender_name="Westside Youth Basketball Treasurer",
        reply_to="treasurer@westside-hoops.example",
        footer_text="Westside Youth Basketball · 100 Court Street · Springfield",
    )
    session.add(tenant)
    session.flush()
    teams = [Team(tenant_id=tenant.id, name=name) for name in _TEAMS]
    session.add_all(teams)
    registration, dues, uniform = _products(session, tenant)
    parents = _parents(session, tenant, rng)
    players = _players(session, tenant, parents, teams, rng)
    _links_and_orders(session, tenant, players, registration, dues, uniform, rng)
    session.flush()
    _charges_of_links(session, tenant)
    if ledger_examples:
        _treasurers_first_week(session, tenant)
    session.flush()
    _family_links(session, tenant)
    session.flush()
    return _summary_of(session, tenant, created=True)


def _family_links(session: Session, tenant: Tenant) -> None:
    """Each family that owes its "Pay the balance" link at its balance, as a send would mint it
    (Stripe-looking addresses that go nowhere, like the demo's item links)."""
    from core.reporting.balances import outstanding_balances

    admin = ActingUser("demo", Role.ADMIN, tenant.id)
    now = utcnow()
    session.add_all(
        FamilyLink(tenant_id=tenant.id, parent_id=balance.parent_id, amount_cents=balance.total_cents,
                   currency=balance.currency, stripe_payment_link_id=f"plink_demo_family_{balance.parent_id:05d}",
                   url=f"https://buy.stripe.com/test_demo_family{balance.parent_id:05d}", status=LinkStatus.ACTIVE,
                   mint_attempt="demo", created_at=now - timedelta(days=1))
        for balance in outstanding_balances(session, admin) if balance.total_cents > 0
    )


def _products(session: Session, tenant: Tenant) -> tuple[Product, Product, Product]:
    registration = Product(tenant_id=tenant.id, name="Registration", kind=ProductKind.ONE_TIME, required=True)
    dues = Product(tenant_id=tenant.id, name="Monthly dues", kind=ProductKind.MONTHLY, required=True)
    uniform = Product(tenant_id=tenant.id, name="Uniform", kind=ProductKind.ONE_TIME, required=False)
    session.add_all([registration, dues, uniform])
    session.flush()
    session.add_all(
        [
            PriceTier(product_id=registration.id, amount_cents=15000, currency=tenant.currency, is_default=True),
            PriceTier(product_id=dues.id, amount_cents=6000, currency=tenant.currency, is_default=True),
            PriceTier(product_id=uniform.id, amount_cents=4500, currency=tenant.currency, is_default=True),
            PriceTier(product_id=uniform.id, amount_cents=5500, currency=tenant.currency),  # adult sizes
        ]
    )
    session.flush()
    return registration, dues, uniform


def _parents(session: Session, tenant: Tenant, rng: random.Random) -> list[Parent]:
    parents: list[Parent] = []
    for index in range(100):
        first, last = rng.choice(_ADULT_FIRST), _LAST_NAMES[index % len(_LAST_NAMES)]
        local = f"{first}.{last}".lower().replace("'", "")
        email = f"{_ascii(local)}.{index}@families.example"
        parents.append(Parent(tenant_id=tenant.id, name=f"{first} {last}", email=email, external_ref=f"PAR-{index + 1:04d}"))
    # The awkward cases a real roster always has.
    parents[3].email = None  # no email on file
    parents[8].email_opt_out = True
    parents[12].name = "Renée <b>D'Angelo</b> & Co"  # HTML-looking text from a form
    session.add_all(parents)
    session.flush()
    return parents


def _players(
    session: Session, tenant: Tenant, parents: list[Parent], teams: list[Team], rng: random.Random
) -> list[Player]:
    players: list[Player] = []
    # 100 parents, 150 players: the first 40 parents have siblings (two or three kids).
    kids_per_parent = [3 if i < 10 else 2 if i < 40 else 1 for i in range(len(parents))]
    for parent, count in zip(parents, kids_per_parent, strict=True):
        last = parent.name.split()[-1] if "<" not in parent.name else "D'Angelo"
        for _ in range(count):
            players.append(
                Player(
                    tenant_id=tenant.id,
                    parent_id=parent.id,
                    team_id=rng.choice(teams).id,
                    first_name=rng.choice(_KID_FIRST),
                    last_name=last,
                    status=PlayerStatus.SIGNED,
                    external_ref=f"PLY-{len(players) + 1:04d}",
                )
            )
    for index in (5, 47, 90):
        players[index].status = PlayerStatus.WITHDRAWN
    for index in (60, 61, 120, 149):
        players[index].status = PlayerStatus.PROSPECT
    session.add_all(players)
    session.flush()
    return players


def _links_and_orders(
    session: Session,
    tenant: Tenant,
    players: list[Player],
    registration: Product,
    dues: Product,
    uniform: Product,
    rng: random.Random,
) -> None:
    tiers = {tier.product_id: tier for tier in session.scalars(select(PriceTier).where(PriceTier.is_default))}
    now = utcnow()
    counter = 0

    def link(player: Player, product: Product, status: LinkStatus, order: Order | None = None) -> None:
        nonlocal counter
        counter += 1
        tier = tiers[product.id]
        amount = order.amount_cents if order else tier.amount_cents
        session.add(
            PaymentLink(
                tenant_id=tenant.id,
                player_id=player.id,
                product_id=product.id,
                price_tier_id=tier.id,
                order_id=order.id if order else None,
                amount_cents=amount,
                currency=tier.currency,
                stripe_payment_link_id=f"plink_demo_{counter:05d}",
                url=f"https://buy.stripe.com/test_demo{counter:05d}",
                status=status,
                created_at=now - timedelta(days=30),
                paid_at=now - timedelta(days=rng.randint(1, 25)) if status is LinkStatus.PAID else None,
                paid_amount_cents=amount if status is LinkStatus.PAID else None,
                deactivated_at=now - timedelta(days=2) if status is LinkStatus.DEACTIVATED else None,
            )
        )

    for index, player in enumerate(players):
        if player.status is PlayerStatus.PROSPECT:
            continue
        if index % 23 == 22:
            continue  # signed late: the backfill still owes them links
        registration_paid = rng.random() < 0.45
        link(player, registration, LinkStatus.PAID if registration_paid else LinkStatus.ACTIVE)
        if index % 17 == 3:
            # Dues price changed: an old deactivated link and a new active one.
            link(player, dues, LinkStatus.DEACTIVATED)
        link(player, dues, LinkStatus.PAID if rng.random() < 0.3 else LinkStatus.ACTIVE)
        if index % 6 == 0:
            order = Order(
                tenant_id=tenant.id,
                player_id=player.id,
                product_id=uniform.id,
                amount_cents=4500,
                currency=tenant.currency,
                status=OrderStatus.PENDING,
                external_ref=f"ORD-{index:04d}",
            )
            session.add(order)
            session.flush()
            if index % 12 == 0:
                link(player, uniform, LinkStatus.ACTIVE, order)
    session.flush()


def _charges_of_links(session: Session, tenant: Tenant) -> None:
    """Each active or paid link's charge, and each paid link's Stripe payment settling it."""
    rows = session.execute(
        select(PaymentLink, Player.parent_id, Product.name)
        .join(Player, Player.id == PaymentLink.player_id)
        .join(Product, Product.id == PaymentLink.product_id)
        .where(PaymentLink.tenant_id == tenant.id, PaymentLink.status.in_([LinkStatus.ACTIVE, LinkStatus.PAID]))
        .order_by(PaymentLink.id)
    ).all()

    def entry(parent_id: int, kind: LedgerEntryKind, origin: EntryOrigin, at: datetime) -> int:
        row = LedgerEntry(tenant_id=tenant.id, parent_id=parent_id, kind=kind, origin=origin,
                          recorded_by="demo", recorded_at=at)
        session.add(row)
        session.flush()
        return row.id

    for link, parent_id, product_name in rows:
        charge_id = entry(parent_id, LedgerEntryKind.CHARGE, EntryOrigin.BACKFILL, link.created_at)
        session.add(Charge(
            id=charge_id, tenant_id=tenant.id, parent_id=parent_id, player_id=link.player_id,
            purpose=ChargePurpose.ORDER if link.order_id else ChargePurpose.PRODUCT, product_id=link.product_id,
            order_id=link.order_id,
            charge_key=charge_key_for(player_id=link.player_id, product_id=link.product_id, order_id=link.order_id),
            description=product_name, amount_cents=link.amount_cents, currency=tenant.currency,
            due_on=link.created_at.date(),
        ))
        session.flush()
        link.charge_id = charge_id
        if link.status is not LinkStatus.PAID:
            continue
        assert link.paid_at is not None
        payment_id = entry(parent_id, LedgerEntryKind.PAYMENT, EntryOrigin.PAYMENT_SYNC, link.paid_at)
        link.checkout_session_id = f"cs_demo_{link.id:05d}"
        session.add(Payment(
            id=payment_id, tenant_id=tenant.id, parent_id=parent_id, method=PaymentMethod.STRIPE,
            amount_cents=link.amount_cents, currency=tenant.currency, received_on=link.paid_at.date(),
            reference=link.checkout_session_id, state=PaymentState.SETTLED, payment_link_id=link.id,
            note="paid through its Pay Now link",
        ))
        session.flush()
        session.add(Allocation(
            id=entry(parent_id, LedgerEntryKind.ALLOCATION, EntryOrigin.PAYMENT_SYNC, link.paid_at),
            tenant_id=tenant.id, parent_id=parent_id, charge_id=charge_id, payment_id=payment_id,
            amount_cents=link.amount_cents,
        ))
    session.flush()


def _treasurers_first_week(session: Session, tenant: Tenant) -> None:
    """What a treasurer records by hand, through the ledger's own services."""
    from core.ledger.entries import record_adjustment, record_payment
    from core.ledger.refunds import refund_payment

    treasurer = ActingUser("treasurer@westside-hoops.example", Role.TREASURER, tenant.id)
    owing = _families_owing_registration(session, tenant)
    siblings = [family for family in owing if family.players >= 2]
    cash, check, bank, partial, scholarship, overpaid = owing[:6]
    sibling = next(family for family in siblings if family not in owing[:6])
    today = utcnow().date()
    record_payment(session, treasurer, parent_id=cash.parent_id, amount_cents=cash.total_cents,
                   method=PaymentMethod.CASH, received_on=today - timedelta(days=6),
                   note="paid at the gym, Saturday practice")
    record_payment(session, treasurer, parent_id=check.parent_id, amount_cents=check.total_cents,
                   method=PaymentMethod.CHECK, reference="1042", received_on=today - timedelta(days=5))
    record_payment(session, treasurer, parent_id=bank.parent_id, amount_cents=bank.total_cents,
                   method=PaymentMethod.BANK, reference="WX-20931", received_on=today - timedelta(days=4))
    record_payment(session, treasurer, parent_id=partial.parent_id, amount_cents=5000, method=PaymentMethod.CASH,
                   charge_ids=[partial.registration_id], received_on=today - timedelta(days=3),
                   note="the rest at the end of the month")
    record_adjustment(session, treasurer, parent_id=sibling.parent_id, amount_cents=2500,
                      kind=AdjustmentKind.DISCOUNT, reason="sibling discount: second child",
                      charge_id=sibling.registration_id)
    record_adjustment(session, treasurer, parent_id=scholarship.parent_id, amount_cents=10000,
                      kind=AdjustmentKind.AID, reason="league scholarship fund")
    extra = record_payment(session, treasurer, parent_id=overpaid.parent_id, amount_cents=overpaid.total_cents + 2000,
                           method=PaymentMethod.CHECK, reference="311", received_on=today - timedelta(days=2))
    refund_payment(session, treasurer, payment_id=extra.entry_id, amount_cents=2000,
                   reason="paid $20.00 too much; refunded by check 5005", outside_stripe=True)


@dataclass(frozen=True)
class _Owing:
    parent_id: int
    total_cents: int
    registration_id: int  # one of the family's open registration charges
    players: int


def _families_owing_registration(session: Session, tenant: Tenant) -> list[_Owing]:
    """Families with an email address and an open registration, by their roster reference."""
    from core.reporting.balances import outstanding_balances

    admin = ActingUser("demo", Role.ADMIN, tenant.id)
    refs = dict(session.execute(select(Parent.id, Parent.external_ref).where(Parent.tenant_id == tenant.id)).all())
    found = []
    for balance in outstanding_balances(session, admin):
        registration = [item for item in balance.items if item.product_name == "Registration" and not item.processing]
        if registration and balance.parent_email and registration[-1].charge_id is not None:
            found.append((refs[balance.parent_id] or "", _Owing(balance.parent_id, balance.total_cents,
                                                                 registration[-1].charge_id,
                                                                 len({i.player_id for i in balance.items}))))
    return [owing for _, owing in sorted(found, key=lambda pair: pair[0])]


def _summary_of(session: Session, tenant: Tenant, *, created: bool) -> DemoSummary:
    from sqlalchemy import func

    def count(model: type, **where: object) -> int:
        statement = select(func.count()).select_from(model).where(model.tenant_id == tenant.id)  # type: ignore[attr-defined]
        return int(session.scalar(statement) or 0)

    return DemoSummary(
        tenant_slug=tenant.slug,
        created=created,
        teams=count(Team),
        parents=count(Parent),
        players=count(Player),
        links=count(PaymentLink),
    )


def _ascii(text: str) -> str:
    import unicodedata

    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
