"""Outstanding balances: one implementation, grouped by parent, scoped by role and league."""

from __future__ import annotations

import pytest
from sqlalchemy import event

from core.access.permissions import Role
from core.errors import PermissionDenied
from core.models import LinkStatus, PlayerStatus, ProductKind
from core.reporting.balances import BalanceFilter, outstanding_balances, summarise
from tests.factories import (
    acting,
    make_link,
    make_parent,
    make_player,
    make_product,
    make_team,
    make_tenant,
    mark_processing,
    pay_link,
)


@pytest.fixture
def league(session):
    tenant = make_tenant(session, name="Westside Hoops")
    red, blue = make_team(session, tenant, "Red"), make_team(session, tenant, "Blue")
    registration = make_product(session, tenant, "Registration", amount_cents=15000)
    dues = make_product(session, tenant, "Monthly dues", kind=ProductKind.MONTHLY, amount_cents=6000)
    ana = make_parent(session, tenant, "Ana O'Neil", "ana@example.org")
    ben = make_parent(session, tenant, "Ben Zed", "ben@example.org")
    kid1 = make_player(session, tenant, ana, red, first_name="Amy")
    kid2 = make_player(session, tenant, ana, blue, first_name="Al")
    kid3 = make_player(session, tenant, ben, blue, first_name="Bo")
    for kid in (kid1, kid2, kid3):
        make_link(session, tenant, kid, registration)
    make_link(session, tenant, kid1, dues)
    session.commit()
    return {"tenant": tenant, "red": red, "blue": blue, "registration": registration, "dues": dues,
                "ana": ana, "ben": ben, "kids": (kid1, kid2, kid3)}


def test_siblings_are_grouped_under_their_parent_with_a_total(session, league):
    balances = outstanding_balances(session, acting(league["tenant"]))
    assert [b.parent_name for b in balances] == ["Ana O'Neil", "Ben Zed"]
    ana = balances[0]
    assert ana.total_cents == 15000 * 2 + 6000
    assert sorted(i.player_name for i in ana.items) == ["Al Player", "Amy Player", "Amy Player"]
    assert summarise(balances).total_cents == 15000 * 3 + 6000
    assert summarise(balances).families == 2


def test_a_charge_paid_through_its_link_is_not_owed(session, league):
    tenant, kid3 = league["tenant"], league["kids"][2]
    from sqlalchemy import select

    from core.models import PaymentLink
    links = session.scalars(select(PaymentLink).where(PaymentLink.player_id == kid3.id)).all()
    pay_link(session, links[0])
    session.commit()
    balances = outstanding_balances(session, acting(tenant))
    assert [b.parent_name for b in balances] == ["Ana O'Neil"]


def test_a_deactivated_link_leaves_its_charge_owed_without_a_pay_now_link(session, league):
    """The ledger's charge is what is owed; a link is only one way to pay it."""
    tenant, kid3 = league["tenant"], league["kids"][2]
    from sqlalchemy import select

    from core.models import PaymentLink
    link = session.scalars(select(PaymentLink).where(PaymentLink.player_id == kid3.id)).one()
    link.status = LinkStatus.DEACTIVATED
    session.commit()
    ben = next(b for b in outstanding_balances(session, acting(tenant)) if b.parent_name == "Ben Zed")
    assert [(item.amount_cents, item.pay_url) for item in ben.items] == [(15000, "")]


def test_withdrawn_players_are_not_billed(session, league):
    league["kids"][2].status = PlayerStatus.WITHDRAWN
    session.commit()
    assert [b.parent_name for b in outstanding_balances(session, acting(league["tenant"]))] == ["Ana O'Neil"]


def test_a_coach_sees_only_their_team_and_no_email_addresses(session, league):
    coach = acting(league["tenant"], Role.COACH, teams=(league["red"],))
    balances = outstanding_balances(session, coach)
    assert len(balances) == 1
    assert balances[0].parent_email is None
    assert {i.player_name for i in balances[0].items} == {"Amy Player"}
    with pytest.raises(PermissionDenied):
        outstanding_balances(session, coach, BalanceFilter(parent_email="ana@example.org"))


def test_another_league_sees_nothing(session, league):
    other = make_tenant(session)
    session.commit()
    assert outstanding_balances(session, acting(other)) == []


def test_filters_by_team_product_search_and_email(session, league):
    user = acting(league["tenant"])
    by_team = outstanding_balances(session, user, BalanceFilter(team_ids=frozenset({league["red"].id})))
    assert [b.total_cents for b in by_team] == [21000]
    by_product = outstanding_balances(session, user, BalanceFilter(product_ids=frozenset({league["dues"].id})))
    assert [b.total_cents for b in by_product] == [6000]
    assert [b.parent_name for b in outstanding_balances(session, user, BalanceFilter(parent_search="o'ne"))] == ["Ana O'Neil"]
    assert [b.parent_name for b in outstanding_balances(session, user, BalanceFilter(parent_search="bo"))] == ["Ben Zed"]
    assert [b.parent_name for b in outstanding_balances(session, user, BalanceFilter(parent_email="BEN@example.org"))] == ["Ben Zed"]
    assert outstanding_balances(session, user, BalanceFilter(parent_search="100%")) == []


@pytest.mark.parametrize("typed", ["garcia", "GARCIA", "García", "GARCÍA", "zoe", "ZOË ørsted", "lukasz",
                                   "Garci\u0301a", "benedicte"])
def test_search_ignores_accents_and_case_whichever_side_has_them(session, league, typed):
    """A coach typing on a phone finds García as "garcia", and Zoë's parent as "ZOE"."""
    tenant = league["tenant"]
    family = make_parent(session, tenant, "María García", "maria@example.org")
    make_link(session, tenant, make_player(session, tenant, family, first_name="Zoë", last_name="Ørsted"),
              league["registration"])
    make_link(session, tenant, make_player(session, tenant, family, first_name="Łukasz", last_name="García"),
              league["registration"])
    # Saved decomposed (NFD), as a CSV from some Mac programs is: "e" then a combining acute accent.
    make_link(session, tenant, make_player(session, tenant, family, first_name="Be\u0301ne\u0301dicte",
                                           last_name="Garci\u0301a"), league["registration"])
    session.commit()
    found = outstanding_balances(session, acting(tenant), BalanceFilter(parent_search=typed))
    assert [b.parent_name for b in found] == ["María García"]


def test_statement_count_does_not_grow_with_the_league(session, engine, league):
    tenant, registration = league["tenant"], league["registration"]
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    outstanding_balances(session, acting(tenant))
    small = len(statements)
    for _ in range(30):
        parent = make_parent(session, tenant)
        make_link(session, tenant, make_player(session, tenant, parent, league["red"]), registration)
    session.commit()
    statements.clear()
    outstanding_balances(session, acting(tenant))
    assert len(statements) == small
    # The balances, each family's balance link with them; on PostgreSQL the planner's setting
    # around it (``core.query_plans``).
    assert len([statement for statement in statements if "enable_nestloop" not in statement]) == 1


def test_a_payment_still_processing_is_shown_but_not_counted_as_owed(session, league):
    from sqlalchemy import select

    from core.models import PaymentLink

    kid3 = league["kids"][2]
    link = session.scalars(select(PaymentLink).where(PaymentLink.player_id == kid3.id)).one()
    mark_processing(session, link)
    session.commit()
    balances = outstanding_balances(session, acting(league["tenant"]))
    ben = next(b for b in balances if b.parent_name == "Ben Zed")
    assert [item.processing for item in ben.items] == [True]
    assert (ben.total_cents, ben.processing_cents) == (0, 15000)
    summary = summarise(balances)
    assert (summary.total_cents, summary.processing_cents) == (15000 * 2 + 6000, 15000)


def test_viewers_who_see_the_same_balances_have_the_same_view():
    """The dashboard shares what it keeps of the balances by view: an admin and a treasurer see
    the same families (emails included), two coaches of one team the same, and a coach of another
    team, or of another league, something else."""
    from core.access.permissions import ActingUser, Role
    from core.reporting.balances import balance_view

    admin, treasurer = ActingUser("a@x", Role.ADMIN, 1), ActingUser("t@x", Role.TREASURER, 1)
    coach, other_coach = ActingUser("c@x", Role.COACH, 1, frozenset({5})), ActingUser("d@x", Role.COACH, 1, frozenset({5}))
    assert balance_view(admin) == balance_view(treasurer)
    assert balance_view(admin).contact_details and not balance_view(coach).contact_details
    assert balance_view(coach) == balance_view(other_coach) != balance_view(admin)
    assert balance_view(coach) != balance_view(ActingUser("c@x", Role.COACH, 1, frozenset({6})))
    assert balance_view(treasurer) != balance_view(ActingUser("t@x", Role.TREASURER, 2))
