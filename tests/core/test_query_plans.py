"""A read of a whole league's balances is planned without nested loops on PostgreSQL, whatever
the statistics say (``core.query_plans``): tables nothing has analyzed yet (a restored dump,
before autovacuum) would otherwise have the planner take the league for a handful of rows and
probe whole tables once per row. A read of a few families is left to the planner."""

from __future__ import annotations

import pytest
from sqlalchemy import event, text

from core.query_plans import without_nested_loops
from core.reporting.balances import BalanceFilter, balance_summary, family_page, outstanding_balances, owed_by
from tests.factories import acting, make_link, make_parent, make_player, make_product, make_team, make_tenant

pytestmark = pytest.mark.postgres_only


@pytest.fixture
def league(session):
    tenant = make_tenant(session, name="Westside Hoops")
    team = make_team(session, tenant, "Red")
    registration = make_product(session, tenant, "Registration", amount_cents=15000)
    parents = [make_parent(session, tenant, f"Parent {n}", f"p{n}@example.org") for n in range(12)]
    for parent in parents:
        make_link(session, tenant, make_player(session, tenant, parent, team), registration)
    session.commit()
    return tenant, parents


def _executed(engine, read):  # type: ignore[no-untyped-def]
    """What ``read()`` sent to the database, in order, with the parameters."""
    sent: list[tuple[str, object]] = []

    def note(connection, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", note)
    try:
        read()
    finally:
        event.remove(engine, "before_cursor_execute", note)
    return sent


def _plan(session, statement: str, parameters: object, *, nested_loops: bool) -> str:  # type: ignore[no-untyped-def]
    connection = session.connection()
    with without_nested_loops(connection, when=not nested_loops):
        cursor = connection.connection.dbapi_connection.cursor()
        cursor.execute("EXPLAIN " + statement, parameters)
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.mark.parametrize("read", ["outstanding_balances", "family_page", "balance_summary", "owed_by"])
def test_a_whole_league_s_balances_are_read_by_hash_joins(session, engine, league, read):
    tenant, _ = league
    user = acting(tenant)
    functions = {"outstanding_balances": outstanding_balances, "family_page": family_page,
                 "balance_summary": balance_summary, "owed_by": owed_by}
    sent = _executed(engine, lambda: functions[read](session, user))
    settings = [i for i, (statement, _) in enumerate(sent) if "enable_nestloop" in statement]
    [balances] = [i for i, (statement, _) in enumerate(sent) if "charge_positions" in statement]
    # Switched off just before the statement, and put back as it was just after.
    assert settings and max(s for s in settings if s < balances) == balances - 1
    assert min(s for s in settings if s > balances) == balances + 1
    assert session.execute(text("SELECT current_setting('enable_nestloop')")).scalar_one() == "on"
    # The statement as sent, planned both ways: left to itself, the planner joins this small
    # league in nested loops (what a league it takes for small does); as the product plans it,
    # never.
    statement, parameters = sent[balances]
    assert "Nested Loop" in _plan(session, statement, parameters, nested_loops=True)
    assert "Nested Loop" not in _plan(session, statement, parameters, nested_loops=False)


@pytest.mark.parametrize("few", [
    BalanceFilter(parent_ids=frozenset({1})), BalanceFilter(parent_search="parent 1"),
    BalanceFilter(parent_email="p1@example.org"),
])
def test_a_few_families_are_left_to_the_planner(session, engine, league, few):
    tenant, parents = league
    if few.parent_ids:
        few = BalanceFilter(parent_ids=frozenset({parents[1].id}))
    sent = _executed(engine, lambda: outstanding_balances(session, acting(tenant), few))
    assert [statement for statement, _ in sent if "charge_positions" in statement]
    assert not [statement for statement, _ in sent if "enable_nestloop" in statement]
