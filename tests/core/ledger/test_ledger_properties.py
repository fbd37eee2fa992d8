"""For random books, every figure agrees: the page, the CSV, the email and the statements.

A random league (fixed seeds, plain ``random``) gets a random sequence of charges, payments,
adjustments, refunds, reversals, and players withdrawing and signing again. After each
sequence:

* the page's total (``outstanding_balances``) = the line-item CSV's total = the per-family
  CSV's total = the sum of the amounts in the send's audience (each rendered email states its
  family's amount) = the sum of what the statements say each family owes;
* each family's page total is what its statement says it owes (its balance, when positive);
* no family whose balance is zero or negative is in the send's audience;
* and after every step, the positions the balances read (``core.ledger.positions``) are what
  the ledger says.
"""

from __future__ import annotations

import csv
import io
import random
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from core.access.permissions import Role
from core.email.brand import brand_for_tenant
from core.email.campaigns import build_manifest
from core.email.registry import OUTSTANDING_BALANCE
from core.email.rendering import render_email
from core.errors import InvalidInput
from core.ledger.accounts import family_account
from core.ledger.entries import record_adjustment, record_charge, record_payment, reverse_entry
from core.ledger.positions import position_differences
from core.ledger.refunds import refund_payment
from core.ledger.statement import family_statement
from core.models import AdjustmentKind, LedgerEntry, Parent, Payment, PaymentMethod, Player, PlayerStatus, Tenant
from core.money import format_cents
from core.reporting.balances import outstanding_balances, summarise
from core.reporting.export import ExportKind, render_csv
from tests.factories import acting, make_parent, make_player, make_team, make_tenant

SEEDS = range(4)  # four random books a database; the kinds of entry they make are checked below
OPERATIONS = 45


def random_league(session, rng: random.Random) -> Tenant:
    tenant = make_tenant(session, name="Random League")
    teams = [make_team(session, tenant, f"Team {n}") for n in range(2)]
    for n in range(rng.randint(4, 8)):
        parent = make_parent(session, tenant, f"Family {n:02d}", f"family{n}@example.org")
        for k in range(rng.randint(1, 3)):
            make_player(session, tenant, parent, rng.choice(teams), first_name=f"Kid{n}{k}")
    session.commit()
    return tenant


def play(session, tenant: Tenant, rng: random.Random) -> None:
    treasurer = acting(tenant, Role.TREASURER)
    parents = session.scalars(select(Parent).where(Parent.tenant_id == tenant.id).order_by(Parent.id)).all()
    start = date(2026, 9, 1)

    def open_charges(parent: Parent) -> list[tuple[int, int]]:
        account = family_account(session, treasurer, parent.id, currency="usd")
        return [(charge.charge_id, charge.open_cents) for charge in account.open_charges]

    for _ in range(OPERATIONS):
        parent = rng.choice(parents)
        kind = rng.choices(["charge", "payment", "adjustment", "refund", "reverse", "roster"],
                           weights=[30, 30, 12, 8, 14, 6])[0]
        try:
            if kind == "charge":
                players = [p.id for p in parent.players]
                record_charge(session, treasurer, parent_id=parent.id, amount_cents=rng.randint(1, 300) * 100,
                              description=rng.choice(["Registration", "Dues", "Uniform", "Tournament fee"]),
                              due_on=start + timedelta(days=rng.randint(0, 90)),
                              player_id=rng.choice([None, *players]))
            elif kind == "payment":
                chosen = [charge_id for charge_id, _ in open_charges(parent) if rng.random() < 0.3]
                record_payment(session, treasurer, parent_id=parent.id, amount_cents=rng.randint(1, 40000),
                               method=rng.choice([PaymentMethod.CASH, PaymentMethod.CHECK, PaymentMethod.BANK]),
                               charge_ids=chosen)
            elif kind == "adjustment":
                charges = open_charges(parent)
                target = rng.choice([None, *(charge_id for charge_id, _ in charges)])
                record_adjustment(session, treasurer, parent_id=parent.id, amount_cents=rng.randint(1, 20000),
                                  kind=rng.choice([AdjustmentKind.DISCOUNT, AdjustmentKind.WAIVER,
                                                   AdjustmentKind.AID, AdjustmentKind.WRITE_OFF]),
                                  reason="random", charge_id=target)
            elif kind == "refund":
                payments = session.scalars(select(Payment.id).where(Payment.tenant_id == tenant.id)).all()
                if not payments:
                    continue
                refund_payment(session, treasurer, payment_id=rng.choice(payments),
                               amount_cents=rng.randint(1, 20000), reason="random",
                               waive_reopened=rng.random() < 0.3)
            elif kind == "reverse":
                ids = session.scalars(select(LedgerEntry.id).where(LedgerEntry.tenant_id == tenant.id)).all()
                if not ids:
                    continue
                reverse_entry(session, treasurer, entry_id=rng.choice(ids), reason="random")
            else:  # the roster changes: a player withdraws, or signs again
                player = rng.choice(list(parent.players))
                player.status = (PlayerStatus.SIGNED if player.status is PlayerStatus.WITHDRAWN
                                 else PlayerStatus.WITHDRAWN)
            session.commit()
        except InvalidInput:
            session.rollback()  # refused (more than is open, already reversed, ...): nothing written
        # What the balances read (the stored positions) is what the ledger says, after every step.
        assert position_differences(session, tenant.id) == [], kind


def cents(value: str) -> int:
    negative = value.startswith("-")
    whole, fraction = value.lstrip("-").split(".")
    return (-1 if negative else 1) * (int(whole) * 100 + int(fraction))


def column_total(data: bytes, column: str) -> int:
    return sum(cents(row[column]) for row in csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))


@pytest.mark.parametrize("seed", SEEDS)
def test_the_page_the_csv_the_email_and_the_statements_agree(session, seed):
    rng = random.Random(seed)
    tenant = random_league(session, rng)
    play(session, tenant, rng)
    admin = acting(tenant)

    balances = outstanding_balances(session, admin)
    page_total = summarise(balances).total_cents
    assert column_total(render_csv(balances, ExportKind.LINE_ITEMS), "amount") == page_total
    assert column_total(render_csv(balances, ExportKind.PARENTS), "total") == page_total

    statements = {
        parent_id: family_statement(session, admin, parent_id)
        for parent_id in session.scalars(select(Parent.id).where(Parent.tenant_id == tenant.id))
    }
    page = {b.parent_id: b.total_cents for b in balances}
    for parent_id, statement in statements.items():
        assert page.get(parent_id, 0) == statement.owed_cents, f"family {parent_id}"
        account = family_account(session, admin, parent_id, currency="usd")
        assert account.balance_cents == statement.balance_cents
    assert sum(statement.owed_cents for statement in statements.values()) == page_total

    manifest = build_manifest(session, admin, OUTSTANDING_BALANCE)
    assert sum(entry.amount_cents for entry in manifest.recipients) == page_total
    brand = brand_for_tenant(session.get_one(Tenant, tenant.id), email_from="Treasurer <t@league.example>")
    for entry in manifest.recipients:
        assert statements[entry.parent_id].balance_cents > 0, "a family who owes nothing was emailed"
        assert entry.balance is not None
        assert format_cents(entry.amount_cents, "usd") in render_email(OUTSTANDING_BALANCE, entry.balance, brand).text
    for entry in manifest.skipped:
        assert statements[entry.parent_id].owed_cents == 0


def test_the_random_books_cover_every_kind_of_entry(session):
    """The sequences above are not trivial: across the seeds every kind of entry is made."""
    from core.models import Adjustment, Allocation, Charge, Reversal

    seen: dict[str, int] = {}
    for seed in list(SEEDS)[:3]:
        rng = random.Random(seed)
        play(session, random_league(session, rng), rng)
    for model in (Charge, Payment, Adjustment, Allocation, Reversal):
        seen[model.__tablename__] = len(session.scalars(select(model.id)).all())
    refunds = session.scalars(select(Adjustment.id).where(Adjustment.kind == AdjustmentKind.REFUND)).all()
    withdrawn = session.scalars(select(Player.id).where(Player.status == PlayerStatus.WITHDRAWN)).all()
    assert all(count > 0 for count in seen.values()) and refunds and withdrawn, seen
