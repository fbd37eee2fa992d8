"""A read of a whole league's balances is planned without nested loops on PostgreSQL, whatever
the statistics say (``core.query_plans``): tables nothing has analyzed yet (a restored dump,
before autovacuum) would otherwise have the planner take the league for a handful of rows and
probe whole tables once per row. A read of a few families named outright is left to the planner."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError

from core.query_plans import FEW_FAMILIES, without_nested_loops
from core.reporting.balances import (
    BalanceFilter,
    balance_summary,
    family_page,
    outstanding_balances,
    owed_by,
)
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
    # The statement as sent, planned as the product plans it: no nested loop anywhere.
    statement, parameters = sent[balances]
    assert "Nested Loop" not in _plan(session, statement, parameters, nested_loops=False)


def _planner_switched(engine, session, user, filters) -> bool:  # type: ignore[no-untyped-def]
    sent = _executed(engine, lambda: outstanding_balances(session, user, filters))
    assert [statement for statement, _ in sent if "charge_positions" in statement]
    return any("enable_nestloop" in statement for statement, _ in sent)


@pytest.mark.parametrize("how", ["one id", "as many ids as count as few", "an email address"])
def test_a_few_families_named_outright_are_left_to_the_planner(session, engine, league, how):
    tenant, parents = league
    few = {"one id": BalanceFilter(parent_ids=frozenset({parents[1].id})),
           "as many ids as count as few": BalanceFilter(parent_ids=frozenset(range(parents[0].id, parents[0].id + FEW_FAMILIES))),
           "an email address": BalanceFilter(parent_email="p1@example.org")}[how]
    assert not _planner_switched(engine, session, acting(tenant), few)


@pytest.mark.parametrize("how", ["a name search", "many ids"])
def test_a_search_or_many_families_are_read_by_hash_joins(session, engine, league, how):
    tenant, parents = league
    many = {"a name search": BalanceFilter(parent_search="parent 1"),
            "many ids": BalanceFilter(parent_ids=frozenset(range(parents[0].id, parents[0].id + FEW_FAMILIES + 1)))}[how]
    assert _planner_switched(engine, session, acting(tenant), many)


def test_a_statement_that_fails_is_reported_as_itself(session):
    """The setting is not put back in a failed transaction (that would fail too, and hide why):
    the rollback that must follow puts it back."""
    connection = session.connection()
    with pytest.raises(DBAPIError) as failed, without_nested_loops(connection):
        connection.execute(text("SELECT 1 / 0"))
    assert isinstance(failed.value.orig, psycopg.errors.DivisionByZero)
    session.rollback()
    assert session.execute(text("SELECT current_setting('enable_nestloop')")).scalar_one() == "on"
