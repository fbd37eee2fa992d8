"""Migrations upgrade, downgrade and upgrade again on both databases, and agree with the models."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError

from core.db import alembic_config, downgrade_database, make_engine, session_factory, upgrade_database
from core.models import Base, LinkStatus, PaymentLink, Tenant
from tests.factories import default_tier, make_link, make_parent, make_player, make_product, make_tenant


def _head(url: str) -> str:
    """The newest revision: where a downgrade that PostgreSQL rolled back leaves the database."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    assert head is not None
    return head


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
            expected = _head(database_url) if engine.dialect.name == "postgresql" else "0002"
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
            expected = _head(database_url) if engine.dialect.name == "postgresql" else "0003"
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


def _audit_sync(connection, tenant_id: int, at, flags: list[dict], action: str = "sync") -> None:  # type: ignore[no-untyped-def]
    import sqlalchemy as sa

    audit_log = sa.table("audit_log", sa.column("tenant_id", sa.Integer), sa.column("actor", sa.String),
                         sa.column("role", sa.String), sa.column("action", sa.String), sa.column("summary", sa.Text),
                         sa.column("details", sa.JSON), sa.column("created_at", sa.DateTime(timezone=True)))
    connection.execute(sa.insert(audit_log).values(tenant_id=tenant_id, actor="cron", role="admin", action=action,
                                                   summary="Payment sync", details={"flags": flags}, created_at=at))


def test_flags_recorded_in_the_audit_log_before_0006_are_carried_over_once(database_url, session):
    from datetime import UTC, datetime

    from core.models import FlagKind, PaymentFlag
    from core.payments.flags import payment_flags
    from tests.factories import acting

    tenant, other = make_tenant(session), make_tenant(session)
    product, other_product = make_product(session, tenant), make_product(session, other)
    link = make_link(session, tenant, make_player(session, tenant, make_parent(session, tenant), first_name="Amy"),
                     product)
    other_link = make_link(session, other, make_player(session, other, make_parent(session, other)), other_product)
    session.commit()
    ids = {"tenant": tenant.id, "other": other.id, "link": link.id, "other_link": other_link.id,
               "stripe_id": link.stripe_payment_link_id}
    session.close()
    first, later = datetime(2026, 11, 1, 9, 0, tzinfo=UTC), datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    engine = make_engine(database_url)
    try:
        downgrade_database(database_url, "0004")
        with engine.begin() as connection:
            _audit_sync(connection, ids["tenant"], first, [
                {"key": "amount_mismatch:cs_1:paid", "kind": "amount_mismatch", "session": "cs_1",
                 "link_id": ids["link"], "message": "paid $1.00 but the link is for $150.00"},
                {"key": "duplicate_payment:cs_2:unpaid", "kind": "duplicate_payment", "session": "cs_2",
                 "link_id": ids["link"], "message": "another checkout (still processing)"},
                {"key": "bogus:cs_x:paid", "kind": "bogus", "session": "cs_x"},  # not a flag kind: left out
            ])
            _audit_sync(connection, ids["tenant"], later, [
                {"key": "amount_mismatch:cs_1:paid", "kind": "amount_mismatch", "session": "cs_1",
                 "link_id": ids["link"], "message": "the same flag, seen again by the overlap"},
                {"key": "duplicate_payment:cs_2:paid", "kind": "duplicate_payment", "session": "cs_2",
                 "link_id": ids["link"], "message": "another checkout (paid)"},
                {"key": "unknown_link:cs_3:paid", "kind": "unknown_link", "session": "cs_3", "link_id": None,
                 "message": "paid through a link this league has no record of"},
                {"key": "amount_mismatch:cs_4:paid", "kind": "amount_mismatch", "session": "cs_4",
                 "link_id": ids["other_link"], "message": "names another league's link"},
            ])
            _audit_sync(connection, ids["other"], later, [
                {"key": "amount_mismatch:cs_1:paid", "kind": "amount_mismatch", "session": "cs_1",
                 "link_id": ids["other_link"], "message": "the other league's own"},
            ])
            _audit_sync(connection, ids["tenant"], later, [{"kind": "amount_mismatch", "session": "cs_9"}],
                        action="export")  # only sync entries hold flags

        upgrade_database(database_url)
        upgrade_database(database_url)  # at head already: nothing is carried over twice

        with session_factory(engine)() as check:
            rows = check.scalars(select(PaymentFlag).order_by(PaymentFlag.tenant_id, PaymentFlag.id)).all()
            carried = {(r.tenant_id, r.checkout_session_id, r.kind, r.processing): (r.payment_link_id, r.detail)
                       for r in rows}
            assert len(rows) == len(carried) == 6
            assert carried == {
                (ids["tenant"], "cs_1", FlagKind.AMOUNT_MISMATCH, False):
                    (ids["link"], "paid $1.00 but the link is for $150.00"),  # the earliest entry's
                (ids["tenant"], "cs_2", FlagKind.DUPLICATE_PAYMENT, True):
                    (ids["link"], "another checkout (still processing)"),
                (ids["tenant"], "cs_2", FlagKind.DUPLICATE_PAYMENT, False): (ids["link"], "another checkout (paid)"),
                (ids["tenant"], "cs_3", FlagKind.UNKNOWN_LINK, False):
                    (None, "paid through a link this league has no record of"),
                (ids["tenant"], "cs_4", FlagKind.AMOUNT_MISMATCH, False): (None, "names another league's link"),
                (ids["other"], "cs_1", FlagKind.AMOUNT_MISMATCH, False): (ids["other_link"], "the other league's own"),
            }
            first_row = next(r for r in rows if r.checkout_session_id == "cs_1" and r.tenant_id == ids["tenant"])
            assert (first_row.created_at, first_row.stripe_payment_link_id) == (first, ids["stripe_id"])
            listed = payment_flags(check, acting(check.get(Tenant, ids["tenant"])))
            assert listed[-1].player_name == "Amy Player" and len(listed) == 5
            assert listed[0].flagged_at == later and listed[-1].flagged_at == first
    finally:
        engine.dispose()
        upgrade_database(database_url)


def test_downgrading_below_0006_waits_for_reservations_with_an_attempt_token(database_url, session):
    from core.payments.links import LinkToReserve, reserve
    from tests.factories import acting

    tenant = make_tenant(session)
    product = make_product(session, tenant)
    player = make_player(session, tenant, make_parent(session, tenant))
    [reserved] = reserve(session, acting(tenant), [LinkToReserve(player.id, product.id, default_tier(product).id,
                                                                 None, 15000, "usd")])
    session.commit()
    session.close()
    engine = make_engine(database_url)
    try:
        with pytest.raises(RuntimeError, match="1 payment links are still being minted with an attempt token"):
            downgrade_database(database_url, "0004")
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM payment_links WHERE id = :id"), {"id": reserved.link_id})
        downgrade_database(database_url, "0004")
        assert "payment_flags" not in inspect(engine).get_table_names()
        assert "mint_attempt" not in {c["name"] for c in inspect(engine).get_columns("payment_links")}
    finally:
        engine.dispose()
        upgrade_database(database_url)


def test_0005_fills_the_campaigns_typed_figures_and_the_skip_reasons_from_what_was_stored_before(
    database_url, session
):
    """Before 0005 the figures were only in the audience JSON and the reasons were prose."""
    import sqlalchemy as sa

    from core.email.skip_reasons import SkipReason
    from core.models import utcnow

    tenant = make_tenant(session)
    ana, ben, cat = (make_parent(session, tenant, name) for name in ("Ana", "Ben", "Cat"))
    session.commit()
    tenant_id, parent_ids = tenant.id, (ana.id, ben.id, cat.id)
    session.close()
    engine = make_engine(database_url)
    campaigns = sa.table("email_campaigns", *(sa.column(c) for c in (
        "id", "tenant_id", "email_type", "test_address", "started_by", "status")),
        sa.column("audience", sa.JSON), sa.column("started_at", sa.DateTime(timezone=True)))
    messages = sa.table("email_messages", *(sa.column(c) for c in (
        "campaign_id", "tenant_id", "parent_id", "subject", "amount_cents", "currency", "status", "skip_reason",
        "message_id_header", "attempts")), sa.column("created_at", sa.DateTime(timezone=True)))
    try:
        downgrade_database(database_url, "0004")
        with engine.begin() as connection:
            def campaign(number: int, audience: dict, test_address: str | None = None) -> None:
                connection.execute(campaigns.insert().values(
                    id=number, tenant_id=tenant_id, email_type="outstanding_balance", test_address=test_address,
                    started_by="admin@example.org", status="completed", audience=audience, started_at=utcnow()))

            def message(campaign_id: int, parent: int, status: str, amount: int, reason: str | None = None,
                        attempts: int = 0) -> None:
                connection.execute(messages.insert().values(
                    campaign_id=campaign_id, tenant_id=tenant_id, parent_id=parent_ids[parent], subject="",
                    amount_cents=amount, currency="usd", status=status, skip_reason=reason, attempts=attempts,
                    message_id_header=f"<c{campaign_id}p{parent}@example.org>", created_at=utcnow()))

            campaign(901, {"scope": "everyone", "cooldown_days": 5, "recipients": 1, "skipped": 2,
                           "total_cents": 15000, "currency": "usd"})
            message(901, 0, "sent", 15000, attempts=1)
            message(901, 1, "skipped", 0, "no email address")
            message(901, 2, "skipped", 0, "already queued in another send (campaign #903)")
            campaign(902, {"scope": "test", "parent_id": parent_ids[0]}, test_address="me@example.org")
            message(902, 0, "sent", 36000, attempts=1)
            campaign(903, {})  # a send to everyone that recorded no figures
            message(903, 0, "skipped", 21000, "balance changed since queued — start a new send", attempts=1)
            message(903, 1, "skipped", 0, "emailed within the 3-day cool-down (campaign #901)")
            message(903, 2, "sent", 9000, attempts=1)

        upgrade_database(database_url)
        with engine.connect() as connection:
            figures = {row[0]: tuple(row[1:]) for row in connection.execute(text(
                "SELECT id, cooldown_days, recipient_count, skipped_count, total_cents FROM email_campaigns"))}
            reasons = {(row[0], row[1]): (row[2], row[3]) for row in connection.execute(text(
                "SELECT campaign_id, parent_id, skip_reason, skip_campaign_id FROM email_messages "
                "WHERE skip_reason IS NOT NULL"))}
        assert figures == {901: (5, 1, 2, 15000), 902: (None, 1, 0, 36000), 903: (3, 2, 1, 30000)}
        assert reasons == {
            (901, parent_ids[1]): (SkipReason.NO_EMAIL.value, None),
            (901, parent_ids[2]): (SkipReason.QUEUED_ELSEWHERE.value, 903),
            (903, parent_ids[0]): (SkipReason.BALANCE_CHANGED.value, None),
            (903, parent_ids[1]): (SkipReason.EMAILED_WITHIN_COOL_DOWN.value, 901),
        }

        downgrade_database(database_url, "0004")  # the prose comes back, as the code before 0005 wrote it
        with engine.connect() as connection:
            prose = {(row[0], row[1]): row[2] for row in connection.execute(text(
                "SELECT campaign_id, parent_id, skip_reason FROM email_messages WHERE skip_reason IS NOT NULL"))}
        assert prose == {
            (901, parent_ids[1]): "no email address",
            (901, parent_ids[2]): "already queued in another send (campaign #903)",
            (903, parent_ids[0]): "balance changed since queued — start a new send",
            (903, parent_ids[1]): "emailed within the 3-day cool-down (campaign #901)",
        }
    finally:
        engine.dispose()
        upgrade_database(database_url)


def test_names_written_before_0009_are_folded_by_it_and_found(database_url, session):
    from core.reporting.balances import BalanceFilter, outstanding_balances
    from tests.factories import acting

    tenant = make_tenant(session)
    product = make_product(session, tenant)
    parent = make_parent(session, tenant, "María García")
    make_link(session, tenant, make_player(session, tenant, parent, first_name="Zoë", last_name="Ørsted"), product)
    session.commit()
    tenant_id, parent_id = tenant.id, parent.id
    session.close()
    engine = make_engine(database_url)
    try:
        downgrade_database(database_url, "0007")
        assert "search_name" not in {c["name"] for c in inspect(engine).get_columns("parents")}
        with engine.begin() as connection:  # written while no folded name was kept
            connection.execute(text("UPDATE parents SET name = 'Chloé Brontë' WHERE id = :id"), {"id": parent_id})
        upgrade_database(database_url)
        with session_factory(engine)() as check:
            user = acting(check.get(Tenant, tenant_id))
            found = [[b.parent_name for b in outstanding_balances(check, user, BalanceFilter(parent_search=typed))]
                     for typed in ("bronte", "zoe orsted", "garcia")]
        assert found == [["Chloé Brontë"], ["Chloé Brontë"], []]
    finally:
        engine.dispose()
        upgrade_database(database_url)
