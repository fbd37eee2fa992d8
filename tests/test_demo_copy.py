"""The demo league the page tests get by copy is the one ``build_demo_league`` makes."""

from __future__ import annotations

from sqlalchemy import select

from core.models import Base, Parent, Tenant
from tests.conftest import _empty_all_tables
from tests.demo_copy import _copies, put_demo_league
from tests.factories import make_parent


def _everything(engine) -> dict[str, list[tuple]]:  # type: ignore[no-untyped-def]
    with engine.connect() as connection:
        return {
            table.name: [tuple(row) for row in connection.execute(
                select(table).order_by(*table.primary_key.columns))]
            for table in Base.metadata.sorted_tables
        }


def test_the_copied_demo_league_is_the_built_one_and_new_rows_come_after_it(database_url, engine, session):
    _copies.clear()
    put_demo_league(engine)  # built
    built = _everything(engine)
    assert built["tenants"] and built["ledger_entries"]
    _empty_all_tables(database_url)
    put_demo_league(engine)  # copied
    assert _copies and _everything(engine) == built  # generated columns too
    tenant = session.scalars(select(Tenant)).one()
    parent = make_parent(session, tenant, "New Family", "new@example.org")
    session.commit()
    assert parent.id == max(row[0] for row in built["parents"]) + 1
    assert session.get(Parent, parent.id) is not None
