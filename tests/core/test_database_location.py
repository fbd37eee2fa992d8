"""Where a SQLite database may be created: the default folder on first use, never a mistyped one."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from core.db import make_engine
from core.settings import ConfigurationError


def test_the_default_folder_is_created_on_first_use(tmp_path, monkeypatch):
    default = tmp_path / "repo" / "data" / "league.db"
    monkeypatch.setattr("core.db.DEFAULT_SQLITE_PATH", default)
    engine = make_engine(f"sqlite:///{default}")
    with engine.connect() as connection:
        assert connection.execute(text("select 1")).scalar() == 1
    engine.dispose()
    assert default.is_file()


def test_a_configured_file_in_a_missing_folder_is_refused_and_nothing_is_created(tmp_path):
    with pytest.raises(ConfigurationError) as refused:
        make_engine(f"sqlite:///{tmp_path}/mistyped/dir/league.db")
    assert str(refused.value) == (
        f"DATABASE_URL names the SQLite file {tmp_path}/mistyped/dir/league.db, but {tmp_path}/mistyped/dir "
        "does not exist; create the folder or correct DATABASE_URL"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_configured_folder_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "league").write_text("not a folder")
    with pytest.raises(ConfigurationError, match=r"but .*/league is not a folder"):
        make_engine(f"sqlite:///{tmp_path}/league/league.db")


def test_a_file_in_an_existing_folder_is_fine(tmp_path):
    make_engine(f"sqlite:///{tmp_path}/league.db").dispose()
