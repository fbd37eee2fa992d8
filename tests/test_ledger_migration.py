"""Migration 0008 moves the payment links into the ledger: every balance is the same to the cent.

Data is built at revision 0004 (before the ledger) and the balances computed there by the
definition of the time (``balances_before_the_ledger``: the active links of players not
withdrawn, kept here as it was); then the database is upgraded and the page's balances, both
CSV files, every email and the send's audience must be exactly what they were.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, Role
from core.db import downgrade_database, make_engine, session_factory, unit_of_work, upgrade_database
from core.demo import build_demo_league
from core.email.brand import brand_for_tenant
from core.email.campaigns import build_manifest
from core.email.registry import OUTSTANDING_BALANCE
from core.email.rendering import render_email
from core.ledger.entries import record_payment
from core.models import (
    Charge,
    Order,
    Parent,
    PaymentLink,
    PaymentMethod,
    Player,
    PriceTier,
    Product,
    Team,
    Tenant,
)
from core.reporting.balances import LineItem, OutstandingBalance, outstanding_balances
from core.reporting.export import ExportKind, render_csv

BEFORE_THE_LEDGER = "0007"
EMAIL_FROM = "Treasurer <treasurer@league.example>"

_OLD_BALANCES = text("""
    SELECT pa.id, pa.name, pa.email, pa.email_opt_out, l.id, pl.id, trim(pl.first_name || ' ' || pl.last_name),
           t.name, pr.id, pr.name, l.amount_cents, l.currency, l.url, l.processing
    FROM payment_links l
    JOIN players pl ON pl.id = l.player_id
    JOIN parents pa ON pa.id = pl.parent_id
    JOIN products pr ON pr.id = l.product_id
    LEFT JOIN teams t ON t.id = pl.team_id
    WHERE l.tenant_id = :tenant AND l.status = 'active' AND pl.status != 'withdrawn'
""")


def balances_before_the_ledger(session: Session, tenant_id: int) -> list[OutstandingBalance]:
    """The balances as revision 0004's code computed them (one active link, one item)."""
    parents: dict[int, tuple[str, str | None, bool]] = {}
    items: dict[int, list[LineItem]] = defaultdict(list)
    for row in session.execute(_OLD_BALANCES, {"tenant": tenant_id}):
        parents[row[0]] = (row[1], row[2], bool(row[3]))
        items[row[0]].append(LineItem(*row[4:13], processing=bool(row[13])))
    return [
        OutstandingBalance(parent_id=parent_id, parent_name=name, parent_email=email, email_opt_out=opt_out,
                           items=tuple(sorted(items[parent_id], key=lambda i: (i.player_name, i.player_id,
                                                                                i.product_name, i.link_id))))
        for parent_id, (name, email, opt_out) in sorted(parents.items(), key=lambda e: (e[1][0].casefold(), e[0]))
    ]


def what_a_family_sees(balances: list[OutstandingBalance]) -> list[tuple[object, ...]]:
    return [
        (b.parent_id, b.parent_name, b.total_cents, b.processing_cents,
         tuple((i.player_name, i.team_name, i.product_name, i.amount_cents, i.currency, i.pay_url, i.processing)
               for i in b.items))
        for b in balances
    ]


def emails(session: Session, tenant_id: int, balances: list[OutstandingBalance]) -> dict[int, tuple[str, str, str]]:
    brand = brand_for_tenant(session.get_one(Tenant, tenant_id), email_from=EMAIL_FROM)
    rendered = {b.parent_id: render_email(OUTSTANDING_BALANCE, b, brand) for b in balances}
    return {parent_id: (r.subject, r.html, r.text) for parent_id, r in rendered.items()}


def expected_audience(balances: list[OutstandingBalance]) -> dict[int, int]:
    return {b.parent_id: b.total_cents for b in balances
            if b.total_cents > 0 and b.parent_email and "@@" not in b.parent_email and not b.email_opt_out}


def assert_balances_survive_the_upgrade(database_url: str, tenant_id: int) -> None:
    engine = make_engine(database_url)
    try:
        with session_factory(engine)() as session:
            before = balances_before_the_ledger(session, tenant_id)
        assert before and any(b.processing_cents for b in before)
        upgrade_database(database_url)
        with session_factory(engine)() as session:
            # The old balances' emails, rendered once the league row has today's columns (the
            # brand they are made of is the same before and after).
            before_emails = emails(session, tenant_id, before)
            admin = ActingUser("admin@example.org", Role.ADMIN, tenant_id)
            after = outstanding_balances(session, admin)
            assert what_a_family_sees(after) == what_a_family_sees(before)
            for kind in ExportKind:
                assert render_csv(after, kind) == render_csv(before, kind)
            assert emails(session, tenant_id, after) == before_emails
            manifest = build_manifest(session, admin, OUTSTANDING_BALANCE)
            assert {e.parent_id: e.amount_cents for e in manifest.recipients} == expected_audience(before)
    finally:
        engine.dispose()
        upgrade_database(database_url)


def _at(engine, table, **values) -> int:  # type: ignore[no-untyped-def]
    """A row inserted with the columns revision 0004 has (nothing the ledger added)."""
    with engine.begin() as connection:
        return connection.execute(insert(table.__table__).values(**values).returning(table.__table__.c.id)).scalar_one()


def build_league_before_the_ledger(engine) -> int:  # type: ignore[no-untyped-def]
    """Every kind of link the payment links knew: active, paid, processing, replaced, paid after
    being replaced, a reservation, a withdrawn player's, an order's; families with no email,
    opted out, all paid, all processing."""
    now = datetime.now(UTC)
    tenant = _at(engine, Tenant, slug="before", name="Before Hoops", currency="usd",
                 brand_primary_color="#1d3557", brand_accent_color="#e63946", created_at=now)
    red = _at(engine, Team, tenant_id=tenant, name="Red")
    products = {}
    tiers = {}
    for name, kind, required, cents in (("Registration", "one_time", True, 15000), ("Monthly dues", "monthly", True, 6000),
                                        ("Uniform", "one_time", False, 4500)):
        products[name] = _at(engine, Product, tenant_id=tenant, name=name, kind=kind, required=required, active=True)
        tiers[name] = _at(engine, PriceTier, product_id=products[name], amount_cents=cents, currency="usd",
                          is_default=True)
    counter = iter(range(1, 1000))

    def parent(name: str, email: str | None, *, opt_out: bool = False) -> int:
        return _at(engine, Parent, tenant_id=tenant, name=name, email=email, email_opt_out=opt_out,
                   external_ref=f"P-{name}")

    def player(parent_id: int, first: str, status: str = "signed") -> int:
        return _at(engine, Player, tenant_id=tenant, parent_id=parent_id, team_id=red, first_name=first,
                   last_name="Kid", status=status, external_ref=f"K-{first}")

    def link(player_id: int, product: str, status: str, cents: int | None = None, **fields) -> int:  # type: ignore[no-untyped-def]
        n = next(counter)
        minted = {} if status == "minting" else {"stripe_payment_link_id": f"plink_before_{n}",
                                                 "url": f"https://buy.stripe.com/before_{n}"}
        paid = ({"paid_at": now - timedelta(days=2), "checkout_session_id": f"cs_before_{n}",
                 "paid_amount_cents": cents or 15000} if status == "paid" else {})
        return _at(engine, PaymentLink, tenant_id=tenant, player_id=player_id, product_id=products[product],
                   price_tier_id=tiers[product], amount_cents=cents or {"Registration": 15000, "Monthly dues": 6000,
                                                                        "Uniform": 4500}[product],
                   currency="usd", status=status, created_at=now - timedelta(days=n),
                   **{"processing": False, "amount_mismatch": False, **minted, **paid, **fields})

    ana = parent("Ana O'Neil", "ana@example.org")
    amy, al = player(ana, "Amy"), player(ana, "Al")
    link(amy, "Registration", "active")
    link(amy, "Monthly dues", "deactivated", 5000, stripe_deactivation_pending=True)  # replaced at a new price
    link(amy, "Monthly dues", "active")
    link(al, "Registration", "paid")
    order = _at(engine, Order, tenant_id=tenant, player_id=al, product_id=products["Uniform"], amount_cents=5500,
                currency="usd", status="pending", external_ref="ORD-1", created_at=now)
    link(al, "Uniform", "active", 5500, order_id=order)
    ben = parent("Ben Zed", "ben@example.org")
    bo = player(ben, "Bo")
    link(bo, "Registration", "active")
    link(bo, "Monthly dues", "paid", 5000)  # replaced, then paid anyway
    link(bo, "Monthly dues", "active")
    link(player(ben, "Gil", "withdrawn"), "Registration", "active")
    cat = parent("Cat Noemail", None)
    cy = player(cat, "Cy")
    link(cy, "Registration", "active")
    link(cy, "Monthly dues", "minting")  # an interrupted backfill's reservation: not owed
    link(player(parent("Dan Optout", "dan@example.org", opt_out=True), "Di"), "Registration", "active")
    ed = player(parent("Eve Paid", "eve@example.org"), "Ed")
    link(ed, "Registration", "paid")
    link(ed, "Monthly dues", "paid", 6000)
    fay = parent("Fay Processing", "fay@example.org")
    fi = player(fay, "Fi")
    link(fi, "Registration", "active", processing=True)
    link(fi, "Monthly dues", "active")
    link(player(parent("Hal Bank", "hal@example.org"), "Hu"), "Registration", "active", processing=True)
    return tenant


@pytest.fixture
def before_the_ledger(database_url):
    downgrade_database(database_url, BEFORE_THE_LEDGER)
    yield database_url
    upgrade_database(database_url)


def test_a_league_keeps_every_balance_csv_and_email_to_the_cent(before_the_ledger):
    engine = make_engine(before_the_ledger)
    tenant_id = build_league_before_the_ledger(engine)
    engine.dispose()
    assert_balances_survive_the_upgrade(before_the_ledger, tenant_id)


def test_the_demo_league_keeps_every_balance_csv_and_email_to_the_cent(database_url):
    engine = make_engine(database_url)
    with unit_of_work(engine) as session:
        build_demo_league(session, ledger_examples=False)
        tenant_id = session.scalars(select(Tenant.id).where(Tenant.slug == "demo")).one()
    with engine.begin() as connection:  # a payment processing, as payment sync left some before 0008
        connection.execute(text("UPDATE payment_links SET processing = true WHERE id IN "
                                "(SELECT id FROM payment_links WHERE status = 'active' ORDER BY id LIMIT 3)"))
    engine.dispose()
    downgrade_database(database_url, BEFORE_THE_LEDGER)
    assert_balances_survive_the_upgrade(database_url, tenant_id)


def test_each_link_gets_its_charge_and_each_paid_link_its_payment(before_the_ledger):
    engine = make_engine(before_the_ledger)
    tenant_id = build_league_before_the_ledger(engine)
    upgrade_database(before_the_ledger)
    with session_factory(engine)() as session:
        links = session.scalars(select(PaymentLink).where(PaymentLink.tenant_id == tenant_id)).all()
        charged = {link.status.value: 0 for link in links}
        for link in links:
            if link.charge_id is not None:
                charged[link.status.value] += 1
        assert charged == {"active": 11, "paid": 4, "deactivated": 0, "minting": 0}
        keys = session.scalars(select(Charge.charge_key).where(Charge.tenant_id == tenant_id)).all()
        assert sum(key.endswith("#2") for key in keys) == 1  # the replaced link paid anyway, next to its successor
    engine.dispose()


def test_the_downgrade_refuses_to_lose_what_a_treasurer_recorded(database_url, session):
    from tests.factories import acting, make_parent, make_tenant

    tenant = make_tenant(session)
    parent = make_parent(session, tenant)
    record_payment(session, acting(tenant), parent_id=parent.id, amount_cents=500, method=PaymentMethod.CASH)
    session.commit()
    session.close()
    try:
        with pytest.raises(RuntimeError, match="1 entries payment links cannot hold"):
            downgrade_database(database_url, BEFORE_THE_LEDGER)
    finally:
        upgrade_database(database_url)
