"""Migrations upgrade, downgrade and upgrade again on both databases, and agree with the models."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from core.db import alembic_config, downgrade_database, make_engine, upgrade_database
from core.models import Base, LinkStatus, PaymentLink
from tests.factories import default_tier, make_link, make_parent, make_player, make_product, make_tenant

# The newest revision: where PostgreSQL is left when a downgrade is refused (it rolls back whole).
HEAD = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


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


def _reservation(session, tenant, player, product) -> PaymentLink:
    link = PaymentLink(tenant_id=tenant.id, player_id=player.id, product_id=product.id,
                       price_tier_id=default_tier(product).id, amount_cents=17500, currency="usd",
                       status=LinkStatus.MINTING)
    session.add(link)
    session.flush()
    return link


def test_a_reservation_may_sit_next_to_the_active_link_but_not_next_to_another_reservation(session):
    tenant = make_tenant(session)
    product = make_product(session, tenant)
    player = make_player(session, tenant, make_parent(session, tenant))
    make_link(session, tenant, player, product)
    _reservation(session, tenant, player, product)  # a price change: the new link is reserved beside the old
    session.commit()
    with pytest.raises(IntegrityError):
        _reservation(session, tenant, player, product)
    session.rollback()


def test_only_a_reservation_may_lack_its_stripe_link(session):
    tenant = make_tenant(session)
    product = make_product(session, tenant)
    player = make_player(session, tenant, make_parent(session, tenant))
    link = _reservation(session, tenant, player, product)
    session.commit()
    link.status = LinkStatus.ACTIVE
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()


def test_downgrading_below_reservations_waits_until_none_is_left_and_keeps_the_links(database_url, session):
    tenant = make_tenant(session)
    product = make_product(session, tenant)
    player = make_player(session, tenant, make_parent(session, tenant))
    active = make_link(session, tenant, player, product)
    reservation = _reservation(session, tenant, player, product)
    session.commit()
    active_id, stripe_id, reservation_id = active.id, active.stripe_payment_link_id, reservation.id
    session.close()  # no transaction of ours may hold the table while it is altered
    try:
        with pytest.raises(RuntimeError, match="still being minted"):
            downgrade_database(database_url, "0001")
        engine = make_engine(database_url)
        with engine.begin() as connection:
            # PostgreSQL rolls back the whole downgrade; SQLite (no transactional DDL) keeps the steps done.
            expected = HEAD if engine.dialect.name == "postgresql" else "0002"
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == expected
            connection.execute(text("DELETE FROM payment_links WHERE id = :id"), {"id": reservation_id})

        downgrade_database(database_url, "0001")
        with engine.connect() as connection:
            assert connection.execute(text("SELECT stripe_payment_link_id FROM payment_links WHERE id = :id"),
                                      {"id": active_id}).scalar_one() == stripe_id
        upgrade_database(database_url)  # on PostgreSQL 'minting' was left in the type: added again if missing
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}),
                                    Base.metadata)
        engine.dispose()
        assert diff == []
    finally:
        upgrade_database(database_url)


def test_downgrading_below_pending_deactivations_waits_until_stripe_switched_them_off(database_url, session):
    tenant = make_tenant(session)
    product = make_product(session, tenant)
    player = make_player(session, tenant, make_parent(session, tenant))
    old = make_link(session, tenant, player, product, status=LinkStatus.DEACTIVATED)
    old.stripe_deactivation_pending = True
    session.commit()
    old_id = old.id
    session.close()
    engine = make_engine(database_url)
    try:
        with pytest.raises(RuntimeError, match="1 deactivated payment links are still active in Stripe"):
            downgrade_database(database_url, "0002")
        with engine.begin() as connection:
            expected = HEAD if engine.dialect.name == "postgresql" else "0003"
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == expected
            connection.execute(text("UPDATE payment_links SET stripe_deactivation_pending = false WHERE id = :id"),
                               {"id": old_id})
        downgrade_database(database_url, "0002")
        assert "stripe_deactivation_pending" not in {c["name"] for c in inspect(engine).get_columns("payment_links")}
    finally:
        engine.dispose()
        upgrade_database(database_url)


def test_downgrading_below_the_stripe_namespaces_keeps_them(database_url, session):
    """They cannot be made again: dropped, the league's links at Stripe would look like another's."""
    tenant = make_tenant(session)
    session.commit()
    tenant_id, namespace = tenant.id, tenant.stripe_namespace
    assert namespace and len(namespace) == 16
    session.close()
    engine = make_engine(database_url)
    try:
        downgrade_database(database_url, "0003")
        upgrade_database(database_url)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT stripe_namespace FROM tenants WHERE id = :id"),
                                      {"id": tenant_id}).scalar_one() == namespace
            diff = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}),
                                    Base.metadata)
        assert diff == []
    finally:
        engine.dispose()
        upgrade_database(database_url)


def test_links_deactivated_before_0003_are_switched_off_again_by_the_next_backfill(database_url, session):
    """Nothing recorded whether Stripe switched them off; doing it again changes nothing."""
    tenant = make_tenant(session)
    product = make_product(session, tenant)
    player = make_player(session, tenant, make_parent(session, tenant))
    old = make_link(session, tenant, player, product, status=LinkStatus.DEACTIVATED)
    active = make_link(session, tenant, player, product)
    session.commit()
    old_id, active_id = old.id, active.id
    session.close()
    engine = make_engine(database_url)
    try:
        downgrade_database(database_url, "0002")
        upgrade_database(database_url)
        with engine.connect() as connection:
            pending = dict(connection.execute(text("SELECT id, stripe_deactivation_pending FROM payment_links")).all())
        assert {old_id: bool(pending[old_id]), active_id: bool(pending[active_id])} == {old_id: True, active_id: False}
    finally:
        engine.dispose()
        upgrade_database(database_url)
