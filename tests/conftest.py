"""Shared fixtures: every database test runs on SQLite and on a real PostgreSQL.

PostgreSQL comes from ``TEST_POSTGRES_URL`` (default: the local server with trust auth).
Each pytest run creates its own throw-away database, migrates it once, and empties the
tables after every test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from core.db import make_engine, session_factory, upgrade_database
from core.models import Base
from tests.scratch_database import scratch_postgres_database

if TYPE_CHECKING:
    from core.payments.stripe_gateway import StripeGateway
    from tests.stripe_stand_in import StripeStandIn

POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres_only: needs PostgreSQL (row locks, concurrency)")
    config.addinivalue_line("markers", "browser: drives Chromium through Playwright")


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("sqlite") / "league.db"
    url = f"sqlite:///{path}"
    upgrade_database(url)
    return url


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    with ExitStack() as stack:
        try:
            url = stack.enter_context(scratch_postgres_database(POSTGRES_ADMIN_URL, "billing_test"))
        except OperationalError as exc:  # the suite must say clearly why it cannot run
            pytest.exit(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {exc}", returncode=3)
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a migrated, empty database; both backends in turn."""
    if request.param == "sqlite" and request.node.get_closest_marker("postgres_only"):
        pytest.skip("PostgreSQL only")
    url = request.getfixturevalue(f"{request.param}_url")
    yield url
    _empty_all_tables(url)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with session_factory(engine)() as session:
        yield session


def _empty_all_tables(url: str) -> None:
    engine = make_engine(url)
    tables = [table.name for table in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            _empty_postgresql_tables(connection, tables)
        else:
            # Leagues first: their rows go by cascade, which the ledger's append-only triggers
            # allow (a league removed whole), where deleting a money row on its own is refused.
            connection.execute(text("DELETE FROM tenants"))
            for table in tables:
                connection.execute(text(f"DELETE FROM {table}"))
    engine.dispose()


def _empty_postgresql_tables(connection: Connection, tables: list[str]) -> None:
    """What ``TRUNCATE ... RESTART IDENTITY`` leaves, without its cost on every test.

    A TRUNCATE gives each table a new file and flushes them, a tenth of a second or more a
    test; the few rows a test writes go faster by DELETE (leagues first, as on SQLite). The
    identity sequences a test used start again, as TRUNCATE's RESTART IDENTITY would have it.
    Should a DELETE be refused, TRUNCATE does the job as before.
    """
    filled = connection.execute(text(" UNION ALL ".join(
        f"SELECT '{table}' WHERE EXISTS (SELECT 1 FROM {table})" for table in tables
    ))).scalars().all()
    if filled:
        try:
            with connection.begin_nested():
                if "tenants" in filled:
                    connection.execute(text("DELETE FROM tenants"))
                for table in tables:
                    if table in filled:
                        connection.execute(text(f"DELETE FROM {table}"))
        except DBAPIError:
            connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    connection.execute(text(
        "SELECT setval(format('%I.%I', schemaname, sequencename)::regclass, start_value, false) "
        "FROM pg_sequences WHERE schemaname = current_schema() AND last_value IS NOT NULL"
    ))


@pytest.fixture
def artifacts_dir() -> Path:
    """Where tests leave files a person may want to look at (screenshots, exports)."""
    path = Path(__file__).resolve().parent.parent / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def smtp_nobody_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Configure SMTP sending (with a real sender) to a local port where nothing listens."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    monkeypatch.setenv("EMAIL_BACKEND", "smtp")
    monkeypatch.setenv("EMAIL_FROM", "Westside Treasurer <treasurer@westside.example>")
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(closed_port))
    monkeypatch.setenv("SMTP_STARTTLS", "false")


@pytest.fixture
def stripe_stand_in() -> Iterator[StripeStandIn]:
    """A fresh local Stripe stand-in (real HTTP server on 127.0.0.1) for one test."""
    from tests.stripe_stand_in import StripeStandIn

    with StripeStandIn() as stand_in:
        yield stand_in


@pytest.fixture
def stripe_gateway(stripe_stand_in: StripeStandIn) -> StripeGateway:
    """The real ``StripeGateway`` (real SDK client) pointed at the stand-in.

    Paced fast and with short 429 back-off so tests stay quick; the production pace and
    back-off are exercised by bench/bench_backfill.py.
    """
    from core.payments.stripe_gateway import StripeGateway

    return StripeGateway(
        "sk_test_stand_in",
        api_base=stripe_stand_in.api_base,
        requests_per_second=1000,
        rate_limit_backoff_seconds=0.01,
        max_backoff_seconds=0.05,
    )
