"""Ids from another league behave exactly as if they did not exist."""

from __future__ import annotations

import pytest

from core.access.permissions import Role, find_in_league
from core.errors import NotFound
from core.models import Parent, Player
from core.reporting.balances import BalanceFilter, outstanding_balances
from tests.factories import acting, make_link, make_parent, make_player, make_product, make_tenant


def test_a_row_of_another_league_is_reported_like_a_missing_one(session):
    west, east = make_tenant(session), make_tenant(session)
    east_parent = make_parent(session, east, "Eve East")
    west_admin = acting(west, Role.ADMIN)

    with pytest.raises(NotFound) as foreign:
        find_in_league(session, west_admin, Parent, east_parent.id, label="parent")
    with pytest.raises(NotFound) as missing:
        find_in_league(session, west_admin, Parent, 999_999, label="parent")

    assert str(foreign.value) == f"There is no parent {east_parent.id} in this league."
    assert str(missing.value) == "There is no parent 999999 in this league."
    assert find_in_league(session, acting(east), Parent, east_parent.id, label="parent") is east_parent


def test_filtering_balances_by_another_leagues_ids_finds_nothing(session):
    west, east = make_tenant(session), make_tenant(session)
    east_parent = make_parent(session, east)
    east_player = make_player(session, east, east_parent)
    east_product = make_product(session, east)
    make_link(session, east, east_player, east_product)
    make_link(session, west, make_player(session, west, make_parent(session, west)), make_product(session, west))
    west_admin = acting(west, Role.ADMIN)

    for filters in (
        BalanceFilter(parent_ids=frozenset({east_parent.id})),
        BalanceFilter(product_ids=frozenset({east_product.id})),
        BalanceFilter(parent_email=east_parent.email or ""),
    ):
        assert outstanding_balances(session, west_admin, filters) == []
    assert find_in_league(session, acting(east), Player, east_player.id, label="player") is east_player
