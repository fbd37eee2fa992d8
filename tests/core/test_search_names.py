"""Name search on stored folded names: every writer keeps them right, and a search folds no row."""

from __future__ import annotations

import pytest
from sqlalchemy import event, insert, select, text, update

from core.models import Parent, Player, PlayerStatus
from core.reporting.balances import BalanceFilter, outstanding_balances
from core.reporting.name_search import ACCENTED, COMBINING, SQLITE_FUNCTION, fold
from core.roster.importing import import_roster
from tests.factories import acting, make_link, make_parent, make_player, make_product, make_tenant

PLAYERS_HEADER = "player_ref,first_name,last_name,status,team,parent_ref,parent_name,parent_email"


def _found(session, tenant, typed: str) -> list[str]:
    session.expire_all()
    return [b.parent_name for b in outstanding_balances(session, acting(tenant), BalanceFilter(parent_search=typed))]


def _stored(session, model, row_id: int) -> str:
    session.expire_all()
    return session.scalar(select(model.search_name).where(model.id == row_id))


@pytest.fixture
def league(session):
    tenant = make_tenant(session)
    return tenant, make_product(session, tenant, "Registration")


def test_the_database_folds_names_as_the_search_term_is_folded(session, league):
    """Every accented letter, a decomposed accent and plain case: the stored text is ``fold``'s."""
    tenant, _ = league
    names = [ACCENTED, ACCENTED.upper(), "Garci\u0301a Be\u0301ne\u0301dicte", f"x{COMBINING}y", "ZOË Ørsted-Łukasz",
             "O'Neil 100% _under_"]
    parents = [make_parent(session, tenant, name) for name in names]
    # A player's names are shorter: the same letters, a hundred at most to a name.
    pieces = [name[start:start + 100] for name in names for start in range(0, len(name), 100)]
    players = [make_player(session, tenant, parents[0], first_name=piece, last_name=piece[::-1]) for piece in pieces]
    session.commit()
    assert [_stored(session, Parent, parent.id) for parent in parents] == [fold(name) for name in names]
    assert [_stored(session, Player, player.id) for player in players] == [fold(f"{p} {p[::-1]}") for p in pieces]


def test_a_renamed_family_is_found_by_its_new_name_only_whoever_renamed_it(session, league):
    tenant, registration = league
    parent = make_parent(session, tenant, "Zoë Ørsted")
    player = make_player(session, tenant, parent, first_name="Léa", last_name="Ørsted")
    make_link(session, tenant, player, registration)
    session.commit()
    assert _found(session, tenant, "zoe") == ["Zoë Ørsted"]

    parent.name = "Émile Dupré"  # through the ORM
    session.commit()
    assert (_found(session, tenant, "zoe"), _found(session, tenant, "emile")) == ([], ["Émile Dupré"])

    # in bulk by primary key, as the roster import updates
    session.execute(update(Parent), [{"id": parent.id, "name": "Ana Núñez"}])
    session.execute(update(Player), [{"id": player.id, "first_name": "Iñigo"}])
    session.commit()
    assert _found(session, tenant, "emile") == []
    assert _found(session, tenant, "nunez") == _found(session, tenant, "inigo orsted") == ["Ana Núñez"]

    # a statement nobody wrote a folding for
    session.execute(text("UPDATE parents SET name = 'Chloé Brontë' WHERE id = :id"), {"id": parent.id})
    session.commit()
    assert (_found(session, tenant, "nunez"), _found(session, tenant, "bronte")) == ([], ["Chloé Brontë"])


def test_names_written_in_bulk_are_found(session, league):
    tenant, registration = league
    session.execute(insert(Parent.__table__), [{"tenant_id": tenant.id, "name": "Søren Ærø", "email_opt_out": False,
                                                "external_ref": "bulk-1"}])
    parent_id = session.scalar(select(Parent.id).where(Parent.external_ref == "bulk-1"))
    session.execute(insert(Player), [{"tenant_id": tenant.id, "parent_id": parent_id, "first_name": "Ĳsbrand",
                                      "last_name": "Çelik", "status": PlayerStatus.SIGNED}])
    player = session.scalars(select(Player).where(Player.parent_id == parent_id)).one()
    make_link(session, tenant, player, registration)
    session.commit()
    assert _found(session, tenant, "celik") == ["Søren Ærø"]
    assert _stored(session, Parent, parent_id) == fold("Søren Ærø")


def test_a_roster_import_and_its_update_keep_the_search_in_step(session, league):
    tenant, registration = league
    first = f"{PLAYERS_HEADER}\nK1,Zoë,García,signed,U10,P1,María García,maria@example.org\n"
    assert import_roster(session, acting(tenant), first.encode(), commit=True, file_name="roster.csv").committed
    session.commit()
    make_link(session, tenant, session.scalars(select(Player).where(Player.external_ref == "K1")).one(), registration)
    session.commit()
    assert _found(session, tenant, "GARCIA") == ["María García"]

    renamed = f"{PLAYERS_HEADER}\nK1,Zoé,Nuñez,signed,U10,P1,María Nuñez,maria@example.org\n"
    assert import_roster(session, acting(tenant), renamed.encode(), commit=True, file_name="roster.csv").committed
    session.commit()
    assert _found(session, tenant, "garcia") == []
    assert _found(session, tenant, "zoe nunez") == _found(session, tenant, "maria nunez") == ["María Nuñez"]


def test_a_search_compares_the_stored_names_and_folds_no_row(session, engine, league):
    tenant, registration = league
    for name in ("María García", "Ben Zed"):
        parent = make_parent(session, tenant, name)
        make_link(session, tenant, make_player(session, tenant, parent, first_name="Kid"), registration)
    session.commit()
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    if engine.dialect.name == "sqlite":
        def refuse(value: object) -> object:
            raise AssertionError(f"the search folded {value!r}")

        # This connection's folding function now fails the search if a single row is folded.
        session.connection().connection.dbapi_connection.create_function(SQLITE_FUNCTION, 1, refuse)  # type: ignore[union-attr]
    assert _found(session, tenant, "garcia") == ["María García"]
    [search] = [statement for statement in statements if "LIKE" in statement]
    assert "search_name LIKE" in search
    assert "translate(" not in search and f"{SQLITE_FUNCTION}(" not in search


@pytest.mark.postgres_only
@pytest.mark.parametrize("table", ["parents", "players"])
def test_postgresql_can_find_part_of_a_name_through_a_trigram_index(engine, table):
    """``LIKE '%term%'`` can be answered from the index (a plain index could not): with scanning
    made expensive, the plan looks the pattern up in it."""
    with engine.connect() as connection:
        connection.exec_driver_sql("SET enable_seqscan = off")
        plan = "\n".join(connection.execute(
            text(f"EXPLAIN SELECT id FROM {table} WHERE search_name LIKE :pattern"), {"pattern": "%garci%"}
        ).scalars())
    assert f"Bitmap Index Scan on ix_{table}_search_name" in plan
    assert "Index Cond: (search_name ~~ '%garci%'::text)" in plan
