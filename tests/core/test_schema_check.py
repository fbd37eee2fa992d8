"""Opening the database checks its schema with one query and runs Alembic only when it is behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect

import core.db
from core.db import (
    alembic_config,
    database_revisions,
    downgrade_database,
    make_engine,
    schema_head,
    upgrade_database,
    upgrade_if_behind,
)


def _alembic_head(url: str) -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    assert head is not None
    return head


def test_the_head_read_from_the_migration_files_is_alembics(sqlite_url):
    assert schema_head() == _alembic_head(sqlite_url)


def test_a_database_at_the_current_schema_is_not_migrated_again(database_url, monkeypatch):
    def alembic(*args: object, **kwargs: object) -> None:
        raise AssertionError("Alembic was run on a database at the current schema")

    monkeypatch.setattr(core.db, "upgrade_database", alembic)
    engine = make_engine(database_url)
    try:
        assert upgrade_if_behind(engine) is False
    finally:
        engine.dispose()


@pytest.mark.parametrize("revision", ["0006", "base"])
def test_a_database_behind_is_migrated_to_the_current_schema(database_url, revision):
    engine = make_engine(database_url)
    try:
        downgrade_database(database_url, revision)
        assert database_revisions(engine) == (set() if revision == "base" else {revision})
        assert upgrade_if_behind(engine) is True
        assert database_revisions(engine) == {_alembic_head(database_url)}
        assert "search_name" in {column["name"] for column in inspect(engine).get_columns("parents")}
    finally:
        engine.dispose()
        upgrade_database(database_url)


def test_a_new_database_file_is_migrated_from_scratch(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'new.db'}")
    try:
        assert database_revisions(engine) == set()
        assert upgrade_if_behind(engine) is True
        assert "payment_links" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def _migration(folder: Path, revision: str, down: str) -> None:
    (folder / f"{revision}_step.py").write_text(
        f'"""step {revision}"""\n\nrevision = "{revision}"\ndown_revision: str | None = {down}\n', encoding="utf-8"
    )


def test_migrations_with_two_heads_leave_the_decision_to_alembic(tmp_path):
    _migration(tmp_path, "0001", "None")
    _migration(tmp_path, "0002", "'0001'")
    _migration(tmp_path, "0003", "'0001'")
    assert schema_head(tmp_path) is None
    _migration(tmp_path, "0004", "('0002', '0003')")  # a merge: one head again
    assert schema_head(tmp_path) == "0004"
