"""Bulk writes leave PostgreSQL's planner statistics fresh: the import and the backfill analyze
what they wrote once it is committed, so the first balances page after them is planned on the
rows they wrote (not as if those tables were empty, until autovacuum comes by)."""

from __future__ import annotations

import logging
from datetime import datetime

import pytest
from sqlalchemy import Engine, inspect, text

from core.backfill import commit_backfill, plan_backfill
from core.db import analyze_tables, make_engine
from core.roster.importing import import_roster
from tests.factories import acting, make_product, make_tenant

PLAYERS = b"""player_ref,first_name,last_name,status,team,parent_ref,parent_name,parent_email
K1,Maya,Okafor,signed,U10 Comets,P1,Ngozi Okafor,ngozi@example.org
K2,Daniel,Okafor,signed,U12 Rockets,P1,Ngozi Okafor,ngozi@example.org
K3,Zoe,Chen,signed,,P2,Wei Chen,
"""


def _now(engine: Engine) -> datetime:
    with engine.connect() as connection:
        return connection.execute(text("SELECT clock_timestamp()")).scalar_one()


def _analyzed_since(engine: Engine, since: datetime) -> set[str]:
    """The tables analyzed by a statement (not by autovacuum) since ``since``."""
    with engine.connect() as connection:  # a new connection: a fresh look at the statistics
        return set(connection.execute(
            text("SELECT relname FROM pg_stat_user_tables WHERE last_analyze >= :since"), {"since": since}
        ).scalars())


@pytest.mark.postgres_only
def test_an_import_analyzes_the_tables_it_wrote_once_it_is_committed(session, engine):
    tenant = make_tenant(session)
    session.commit()
    before = _now(engine)
    result = import_roster(session, acting(tenant), PLAYERS, commit=True, file_name="players.csv")
    assert result.committed
    assert _analyzed_since(engine, before) == set()  # not before the caller commits
    session.commit()
    assert _analyzed_since(engine, before) == {"teams", "parents", "players"}


@pytest.mark.postgres_only
def test_an_import_the_caller_rolls_back_analyzes_nothing(session, engine):
    tenant = make_tenant(session)
    session.commit()
    before = _now(engine)
    assert import_roster(session, acting(tenant), PLAYERS, commit=True, file_name="players.csv").committed
    session.rollback()
    session.commit()  # a later commit of the same session does not analyze what was rolled back
    assert _analyzed_since(engine, before) == set()


@pytest.mark.postgres_only
def test_a_backfill_commit_analyzes_the_links_and_tiers_it_wrote(session, engine, stripe_gateway):
    tenant = make_tenant(session)
    make_product(session, tenant, "Registration")
    session.commit()
    import_roster(session, acting(tenant), PLAYERS, commit=True, file_name="players.csv")
    session.commit()
    plan = plan_backfill(session, acting(tenant))
    session.commit()
    before = _now(engine)
    result = commit_backfill(engine, acting(tenant), stripe_gateway, plan, success_url="https://westside.example/thanks")
    assert len(result.minted) == 3
    assert {"payment_links", "price_tiers"} <= _analyzed_since(engine, before)


@pytest.mark.postgres_only
def test_a_migration_can_analyze_in_its_own_transaction(engine):
    before = _now(engine)
    with engine.begin() as connection:
        analyze_tables(connection, ["payment_links", "players"])
    assert _analyzed_since(engine, before) == {"payment_links", "players"}


def test_an_import_leaves_sqlite_without_statistics_to_go_stale(session, engine):
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite only")
    tenant = make_tenant(session)
    session.commit()
    import_roster(session, acting(tenant), PLAYERS, commit=True, file_name="players.csv")
    session.commit()
    assert "sqlite_stat1" not in inspect(engine).get_table_names()


def test_statistics_that_cannot_be_refreshed_do_not_fail_the_write_that_is_in(caplog):
    unreachable = make_engine("postgresql://billing@127.0.0.1:1/nowhere")
    with caplog.at_level(logging.WARNING, logger="core.db"):
        analyze_tables(unreachable, ["parents", "players"])
    unreachable.dispose()
    assert "Could not analyze parents, players" in caplog.text
