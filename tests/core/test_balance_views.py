"""The views of the one balances query agree with the full computation, to the cent.

For random leagues (the ledger property test's: charges, payments, reductions, refunds,
reversals, players withdrawing and signing again; plus links and payments still processing),
under several filters and every order: the family list a page at a time, the headline figures,
the charts' groups, the streamed list and the streamed CSV files equal what the full list of
balances says (and the CSV bytes equal ``render_csv`` of it).
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter

import pytest
from sqlalchemy import select

from core.models import Player, Product, Team
from core.reporting.balances import (
    BalanceFilter,
    FamilyOrder,
    balance_summary,
    family_page,
    family_ranking,
    iter_outstanding_balances,
    outstanding_balances,
    owed_by,
    summarise,
)
from core.reporting.export import ExportKind, balances_csv_chunks, render_csv
from tests.core.ledger.test_ledger_properties import play, random_league
from tests.factories import acting, make_link, make_parent, make_player, make_product, make_tenant, mark_processing


def with_links(session, tenant, rng: random.Random) -> None:
    """Some players also have Pay Now links, a few with a payment still processing."""
    product = make_product(session, tenant, "Tournament", amount_cents=rng.randint(10, 90) * 100)
    players = session.scalars(select(Player).where(Player.tenant_id == tenant.id).order_by(Player.id)).all()
    for player in players:
        if rng.random() < 0.5:
            link = make_link(session, tenant, player, product)
            if rng.random() < 0.4:
                mark_processing(session, link)
    session.commit()


def page_by_page(session, user, filters, order, size=3):
    seen, offset = [], 0
    while True:
        page = family_page(session, user, filters, order=order, offset=offset, limit=size)
        seen += [(f.parent_id, f.parent_name, f.total_cents, f.processing_cents, f.item_count, f.credit_cents)
                 for f in page.families]
        if len(page.families) < size:
            return seen, page.summary
        offset += size


def chunked(ids, size):
    return [ids[start:start + size] for start in range(0, len(ids), size)]


def figures(balances):
    return [(b.parent_id, b.parent_name, b.total_cents, b.processing_cents, len(b.items), b.credit_cents)
            for b in balances]


def sorted_as(order: FamilyOrder, balances) -> bool:
    def name(b):
        return b.parent_name.lower()
    keys = {
        FamilyOrder.NAME: lambda b: (name(b), b.parent_id),
        FamilyOrder.LAST_NAME: lambda b: (name(b).split()[-1], name(b), b.parent_id),
        FamilyOrder.AMOUNT: lambda b: (-b.total_cents, name(b), b.parent_id),
        FamilyOrder.ITEMS: lambda b: (-len(b.items), name(b), b.parent_id),
    }
    return balances == sorted(balances, key=keys[order])


@pytest.mark.parametrize("seed", range(4))
def test_pages_headline_charts_and_files_equal_the_full_computation(session, seed):
    rng = random.Random(100 + seed)
    tenant = random_league(session, rng)
    play(session, tenant, rng)
    with_links(session, tenant, rng)
    user = acting(tenant)
    team = session.scalars(select(Team.id).where(Team.tenant_id == tenant.id).order_by(Team.id)).first()
    product = session.scalars(select(Product.id).where(Product.tenant_id == tenant.id)).first()
    for filters in (BalanceFilter(), BalanceFilter(team_ids=frozenset({team})),
                    BalanceFilter(product_ids=frozenset({product})), BalanceFilter(parent_search="kid1")):
        full = outstanding_balances(session, user, filters)
        assert balance_summary(session, user, filters) == summarise(full)
        for order in FamilyOrder:
            in_order = outstanding_balances(session, user, filters, order)
            assert sorted_as(order, in_order), order
            assert sorted(figures(in_order)) == sorted(figures(full))
            listed, headline = page_by_page(session, user, filters, order)
            assert listed == figures(in_order), order
            assert headline == summarise(full) or not full
            ranking = family_ranking(session, user, filters, order=order)
            assert list(ranking.parent_ids) == [balance.parent_id for balance in in_order], order
            assert ranking.summary == summarise(full)
            sliced = [family_page(session, user, dataclasses.replace(filters, parent_ids=frozenset(part)),
                                  order=order, limit=3).families for part in chunked(ranking.parent_ids, 3)]
            assert [(f.parent_id, f.parent_name, f.total_cents, f.processing_cents, f.item_count, f.credit_cents)
                    for part in sliced for f in part] == figures(in_order), order
        assert list(iter_outstanding_balances(session, user, filters)) == full
        for kind in ExportKind:
            assert b"".join(balances_csv_chunks(session, user, filters, kind=kind)) == render_csv(full, kind)
        charts = owed_by(session, user, filters)
        by_team, by_item = Counter(), Counter()
        for balance in full:
            for item in balance.items:
                if not item.processing:
                    by_team[item.team_name or ""] += item.amount_cents
                    by_item[item.product_name] += item.amount_cents
        assert dict(charts.by_team) == dict(by_team)
        assert dict(charts.by_item) == dict(by_item)
        assert [cents for _, cents in charts.by_team] == sorted(by_team.values(), reverse=True)
    session.rollback()


def test_a_page_shows_the_families_of_that_page_with_their_items(session):
    tenant = make_tenant(session, name="Paged League")
    product = make_product(session, tenant, "Registration", amount_cents=5000)
    for n, name in enumerate(["Zoë Adams", "Bo Young", "Al Carter", "Cy Baker", "Di Baker"]):
        parent = make_parent(session, tenant, name, f"p{n}@example.org")
        for _ in range(n % 3 + 1):
            make_link(session, tenant, make_player(session, tenant, parent), product)
    session.commit()
    user = acting(tenant)
    by_last_name = family_page(session, user, order=FamilyOrder.LAST_NAME, limit=2)
    assert [f.parent_name for f in by_last_name.families] == ["Zoë Adams", "Cy Baker"]
    assert by_last_name.summary.families == 5
    second = family_page(session, user, order=FamilyOrder.LAST_NAME, offset=2, limit=2)
    assert [f.parent_name for f in second.families] == ["Di Baker", "Al Carter"]
    most_items = family_page(session, user, order=FamilyOrder.ITEMS, limit=5)
    assert [(f.parent_name, f.item_count) for f in most_items.families][:3] == [("Al Carter", 3), ("Bo Young", 2),
                                                                            ("Di Baker", 2)]
    past_the_end = family_page(session, user, offset=10, limit=2)
    assert past_the_end.families == () and past_the_end.summary.families == 5
    shown = {f.parent_id for f in second.families}
    items = outstanding_balances(session, user, BalanceFilter(parent_ids=frozenset(shown)))
    assert {b.parent_name: len(b.items) for b in items} == {"Di Baker": 2, "Al Carter": 3}
