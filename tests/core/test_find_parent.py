"""Naming a parent as an operator would: by id, by parent_ref from the roster, or by email address."""

from __future__ import annotations

import pytest

from core.errors import InvalidInput, NotFound
from core.reporting.directory import find_parent
from tests.factories import acting, make_parent, make_tenant


@pytest.fixture
def leagues(session):
    west, east = make_tenant(session, "west"), make_tenant(session, "east")
    amelie = make_parent(session, west, "Amélie Lefèvre", "Amelie.Lefevre@example.org", external_ref="PA-503")
    make_parent(session, west, "Wei Chen", "wei.chen@example.org", external_ref="PA-505")
    eve = make_parent(session, east, "Eve East", "eve@example.org", external_ref="PA-900")
    session.commit()
    return {"west": west, "east": east, "amelie": amelie, "eve": eve}


def test_a_parent_is_found_by_id_parent_ref_or_email_in_any_case(session, leagues):
    admin, amelie = acting(leagues["west"]), leagues["amelie"]
    for reference in (str(amelie.id), "PA-503", " PA-503 ", "amelie.lefevre@example.org", "AMELIE.LEFEVRE@EXAMPLE.ORG"):
        assert find_parent(session, admin, reference) is amelie, reference


def test_a_parent_of_another_league_is_reported_like_a_missing_one(session, leagues):
    west_admin, eve = acting(leagues["west"]), leagues["eve"]
    for reference in (str(eve.id), "PA-900", "eve@example.org", "PA-999", "99999999999999999999", "²"):
        with pytest.raises(NotFound) as missing:
            find_parent(session, west_admin, reference)
        assert str(missing.value) == (
            f"No parent {reference!r} in this league: give their id, parent_ref or email address."
        )


def test_an_address_two_parents_share_names_both_and_asks_for_their_ref(session, leagues):
    west = leagues["west"]
    first = make_parent(session, west, "Sam Shared", "family@example.org", external_ref="PA-601")
    second = make_parent(session, west, "Alex Shared", "Family@example.org", external_ref="PA-602")
    session.commit()
    with pytest.raises(InvalidInput) as ambiguous:
        find_parent(session, acting(west), "family@example.org")
    assert str(ambiguous.value) == (
        f"'family@example.org' names 2 parents in this league (Sam Shared (id {first.id}, parent_ref PA-601); "
        f"Alex Shared (id {second.id}, parent_ref PA-602)): give their parent_ref or id."
    )
    assert find_parent(session, acting(west), "PA-602") is second
