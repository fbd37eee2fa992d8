"""The database: engine from ``DATABASE_URL``, sessions, and migrations to head."""

from __future__ import annotations

import ast
import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

# Imported for its listeners on every ``Session``: the stored positions follow each session's
# ledger writes, whichever code makes them (``core.ledger.positions``).
from core.ledger import positions as _positions  # noqa: F401
from core.reporting.name_search import register_sqlite_functions
from core.settings import DEFAULT_SQLITE_PATH, REPO_ROOT, ConfigurationError, load_settings, mask_url_credentials

if TYPE_CHECKING:
    from alembic.config import Config

SUPPORTED_BACKENDS = {"sqlite", "postgresql"}

log = logging.getLogger(__name__)


def parse_database_url(url: str) -> URL:
    """``url`` read as a database URL; ``ConfigurationError`` in one line when it cannot be.

    Refused: a URL that is none, a port that is not a number, and a password with an
    unencoded ``@`` (the parser would end the password at the first ``@`` and try to reach
    the rest of it as a host, whose name the driver's error would then print). The
    messages show the URL only with its credentials masked.
    """
    shown = mask_url_credentials(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigurationError(
            "DATABASE_URL is not a database URL; use sqlite:///path.db or "
            "postgresql://user:password@host:port/database"
        ) from None
    except ValueError:
        raise ConfigurationError(
            f"DATABASE_URL cannot be read: the port {_port_text(url)!r} is not a number "
            f"(write it as digits, e.g. host:5432): {shown}"
        ) from None
    if parsed.host and "@" in parsed.host:
        raise ConfigurationError(
            "DATABASE_URL cannot be read: the password must be URL-encoded, and it holds an '@' that "
            f"is not (write @ as %40, : as %3A, / as %2F, # as %23, % as %25): {shown}"
        )
    return parsed


def _port_text(url: str) -> str:
    """What stands where the port goes: after the last ``:`` of the host part."""
    after_scheme = url.partition("://")[2]
    host_part = re.split(r"[/?#]", after_scheme.rpartition("@")[2], maxsplit=1)[0]
    return host_part.rpartition("]")[2].rpartition(":")[2]


def normalise_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs."""
    parsed = parse_database_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


POSTGRES_WORK_MEM = "64MB"  # per sort or hash of a statement, per connection


def make_engine(url: str | None = None) -> Engine:
    """An engine for ``url`` (default: the configured ``DATABASE_URL``)."""
    url = normalise_url(url or load_settings().database_url)
    parsed = parse_database_url(url)
    if parsed.get_backend_name() not in SUPPORTED_BACKENDS:
        raise ConfigurationError(
            f"DATABASE_URL names a {parsed.get_backend_name()} database; use sqlite:///path.db or "
            "postgresql://user@host/database"
        )
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            _check_sqlite_folder(Path(parsed.database))
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # The balances sort and group a league's open charges (tens of MB at 50,000 families): with
    # PostgreSQL's default 4 MB of work memory they spill to disk at 10,000 families already.
    return create_engine(url, pool_pre_ping=True, connect_args={"options": f"-c work_mem={POSTGRES_WORK_MEM}"})


def _check_sqlite_folder(path: Path) -> None:
    """Create the default database's folder (``data/``) on first use; refuse any other missing one.

    A mistyped ``DATABASE_URL`` must not quietly start an empty database somewhere new.
    """
    folder = path.parent
    if folder.is_dir():
        return
    if folder.resolve() == DEFAULT_SQLITE_PATH.parent:
        folder.mkdir(parents=True, exist_ok=True)
        return
    problem = "is not a folder" if folder.exists() else "does not exist"
    raise ConfigurationError(
        f"DATABASE_URL names the SQLite file {path}, but {folder} {problem}; "
        "create the folder or correct DATABASE_URL"
    )


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    register_sqlite_functions(dbapi_connection)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


# The one rule for sessions and transactions:
# - a function that takes a ``Session`` never commits: its caller owns the transaction;
# - a function that must commit part-way (the outbox, the backfill's reservations, payment
#   sync) takes ``Sessions`` (a session factory), opens its own units of work with
#   ``unit_of_work`` and says so in its docstring;
# - the drivers (the command line, the dashboard) run everything else in one ``unit_of_work``.
Sessions = sessionmaker[Session]


def session_factory(engine: Engine) -> Sessions:
    return sessionmaker(engine, expire_on_commit=False)


def as_sessions(source: Engine | Sessions) -> Sessions:
    """A session factory: ``source`` itself, or one on the engine ``source``."""
    return session_factory(source) if isinstance(source, Engine) else source


@contextmanager
def unit_of_work(source: Engine | Sessions) -> Iterator[Session]:
    """A session that commits when the block succeeds and rolls back when it raises."""
    with as_sessions(source)() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


# Statistics after bulk writes. PostgreSQL's autovacuum analyzes a table only a while after many
# of its rows changed; until then the planner estimates from defaults, and right after an import
# or a backfill plans the balances join as if the rows just written were not there (a league's
# first page took 37 s instead of 1.5 s). So whatever writes in bulk analyzes what it wrote.
_TABLES_TO_ANALYZE = "tables_to_analyze"


def analyze_tables(target: Engine | Connection | Sessions, tables: Iterable[str]) -> None:
    """Refresh PostgreSQL's planner statistics of ``tables`` (``ANALYZE``) after a bulk write.

    Given an engine or a session factory, it runs on a connection of its own and commits: call
    it once the write is committed. A failure is logged, not raised: the data is in, and
    autovacuum will analyze the tables later. Given a ``Connection`` (a migration's), it runs in
    that connection's transaction and raises what the database raises.

    On SQLite it does nothing: SQLite keeps statistics only from an explicit ``ANALYZE`` until
    the next one, so statistics taken after a first small import would mislead its planner once
    the league has grown, while without any it assumes every index is selective, which suits
    these queries.
    """
    names = sorted(set(tables))
    if not names:
        return
    if isinstance(target, Connection):
        _analyze(target, names)
        return
    try:
        with unit_of_work(target) as session:
            _analyze(session.connection(), names)
    except SQLAlchemyError as exc:
        log.warning("Could not analyze %s (autovacuum will later): %s", ", ".join(names), exc)


def _analyze(connection: Connection, names: list[str]) -> None:
    if connection.dialect.name != "postgresql":
        return
    quote = connection.dialect.identifier_preparer.quote
    connection.execute(text(f"ANALYZE {', '.join(quote(name) for name in names)}"))


def analyze_after_commit(session: Session, tables: Iterable[str]) -> None:
    """Have ``tables`` analyzed (``analyze_tables``) once the caller commits ``session``.

    For a function that takes a ``Session``, and so never commits, but writes in bulk (the
    roster import): the statistics are refreshed right after its caller's commit, and not at
    all if the caller rolls back.
    """
    pending: set[str] | None = session.info.get(_TABLES_TO_ANALYZE)
    if pending is None:
        pending = session.info[_TABLES_TO_ANALYZE] = set()
        event.listen(session, "after_commit", _analyze_committed_tables)
        event.listen(session, "after_rollback", _forget_tables_to_analyze)
    pending.update(tables)


def _analyze_committed_tables(session: Session) -> None:
    pending: set[str] = session.info[_TABLES_TO_ANALYZE]
    if pending:
        tables = sorted(pending)
        pending.clear()
        bind = session.get_bind()
        analyze_tables(bind.engine if isinstance(bind, Connection) else bind, tables)


def _forget_tables_to_analyze(session: Session) -> None:
    session.info[_TABLES_TO_ANALYZE].clear()


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config(str(REPO_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    config.attributes["database_url"] = normalise_url(url)
    return config


MIGRATIONS_DIR = REPO_ROOT / "migrations" / "versions"
_REVISION_LINE = re.compile(r"^(revision|down_revision)\s*(?::[^=]*)?=\s*(.+?)\s*$", re.MULTILINE)


def schema_head(versions: Path = MIGRATIONS_DIR) -> str | None:
    """The newest migration's revision, read from the ``revision`` and ``down_revision`` lines
    of the migration files, without loading Alembic; ``None`` unless they name exactly one head
    (then Alembic is the one to decide)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in versions.glob("*.py"):
        found: dict[str, str] = {
            match[1]: match[2] for match in _REVISION_LINE.finditer(path.read_text(encoding="utf-8"))
        }
        try:
            revision = ast.literal_eval(found["revision"])
            down = ast.literal_eval(found.get("down_revision", "None"))
        except (KeyError, ValueError, SyntaxError):
            return None
        if not isinstance(revision, str):
            return None
        revisions.add(revision)
        parents.update([down] if isinstance(down, str) else down or ())
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def database_revisions(engine: Engine) -> set[str]:
    """The revisions the database says it is at (``alembic_version``); empty before any migration."""
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return set()
        return set(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())


def upgrade_if_behind(engine: Engine) -> bool:
    """Migrate ``engine``'s database to the current schema unless it is there already; True if it ran
    the migrations.

    A command that changes nothing should not pay for Alembic on every run: this reads the
    database's revision with one query and compares it with ``schema_head()``. Only when they
    differ (or the head cannot be read from the files) does it load Alembic, which then does
    what ``upgrade_database`` always did, refusals included (e.g. a database of a newer version).
    """
    head = schema_head()
    if head is not None and database_revisions(engine) == {head}:
        return False
    upgrade_database(engine.url.render_as_string(hide_password=False))
    return True


def upgrade_database(url: str | None = None, revision: str = "head") -> None:
    """Run the Alembic migrations up to ``revision``."""
    from alembic import command

    command.upgrade(alembic_config(url or load_settings().database_url), revision)


def downgrade_database(url: str, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)
