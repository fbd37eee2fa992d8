"""Migrations upgrade, downgrade and upgrade again on both databases, and agree with the models."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError

from core.db import downgrade_database, make_engine, upgrade_database
from core.models import Base, LinkStatus
from tests.factories import make_link, make_parent, make_player, make_product, make_tenant


def test_upgrade_downgrade_upgrade_and_models_agree(database_url):
    downgrade_database(database_url, "base")
    engine = make_engine(database_url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade_database(database_url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata)
    engine.dispose()
    assert diff == []


def test_only_one_active_link_per_player_and_product(session):
    tenant = make_tenant(session)
    product = make_product(session, tenant)
    player = make_player(session, tenant, make_parent(session, tenant))
    make_link(session, tenant, player, product, status=LinkStatus.DEACTIVATED)
    make_link(session, tenant, player, product)
    session.commit()
    with pytest.raises(IntegrityError):
        make_link(session, tenant, player, product)
    session.rollback()


def test_a_payment_link_needs_a_product(session):
    tenant = make_tenant(session)
    product = make_product(session, tenant)
    player = make_player(session, tenant, make_parent(session, tenant))
    link = make_link(session, tenant, player, product)
    session.commit()
    link.product_id = None  # type: ignore[assignment]
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()
