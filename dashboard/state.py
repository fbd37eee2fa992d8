"""What every page shares: the settings, the services built from them, and the acting user.

This is the dashboard's composition root: the settings are loaded, and the engine, the
session factory and the Stripe gateway built, once per server (``st.cache_resource``), again
only when the environment or ``secrets.toml`` changes.

What several browser sessions read alike (a page of balances, the headline figures) is kept
once per server by ``shared_figures``: small results, for ``SHARED_TTL_SECONDS`` at most, and
forgotten at once when anything is written through the dashboard's database engine (a payment
recorded in one browser shows in the next run of every other). Session state holds only what
one person chose (filters, page), never a league's worth of rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

import streamlit as st
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from core.access.permissions import ActingUser
from core.composition import Services, build_services
from core.db import unit_of_work, upgrade_if_behind
from core.models import AuditEntry
from core.settings import Settings, load_settings, settings_fingerprint

USER_KEY = "acting_user"
# Changes made elsewhere (the command line, another server) show within this long.
SHARED_TTL_SECONDS = 30
_WROTE = "dashboard_wrote"
_WRITES = ("INSERT", "UPDATE", "DELETE")
_shared: list[Any] = []

P = ParamSpec("P")
R = TypeVar("R")


def shared_figures(function: Callable[P, R]) -> Callable[P, R]:
    """Cache ``function``'s (small) result once per server for every session, for
    ``SHARED_TTL_SECONDS``, cleared by any write (``forget_shared_figures``)."""
    cached = st.cache_data(ttl=SHARED_TTL_SECONDS, max_entries=500, show_spinner=False)(function)
    _shared.append(cached)
    return cached


def forget_shared_figures() -> None:
    for cached in _shared:
        cached.clear()


def _note_writes(engine: Engine) -> None:
    """Any INSERT, UPDATE or DELETE committed through ``engine`` clears the shared figures, but
    for a row added to the audit log alone (a CSV exported, an email previewed: nothing the
    figures show has changed)."""

    def before(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        words = statement.split(None, 3)
        if words and words[0].upper() in _WRITES and not _only_audited(words):
            connection.info[_WROTE] = True

    def committed(connection: Any) -> None:
        if connection.info.pop(_WROTE, False):
            forget_shared_figures()

    def rolled_back(connection: Any) -> None:
        connection.info.pop(_WROTE, None)

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "commit", committed)
    event.listen(engine, "rollback", rolled_back)


def _only_audited(words: list[str]) -> bool:
    """Whether a statement (its first words) adds rows to the audit log, and nothing else."""
    return len(words) >= 3 and words[0].upper() == "INSERT" and words[1].upper() == "INTO" \
        and words[2].strip('"') == AuditEntry.__tablename__


@st.cache_resource(show_spinner=False, max_entries=4)
def _settings(fingerprint: tuple[object, ...]) -> Settings:
    return load_settings()


# Settings are a frozen dataclass: Python's own hash covers every field (secrets included, in memory).
@st.cache_resource(show_spinner=False, max_entries=4, hash_funcs={Settings: hash})
def _services(config: Settings) -> Services:
    services = build_services(config)
    _note_writes(services.engine)
    try:
        upgrade_if_behind(services.engine)  # one query; Alembic only when the database is behind
    except BaseException:
        services.close()
        raise
    return services


def settings() -> Settings:
    """The settings; loaded again only when the environment or secrets.toml changed."""
    return _settings(settings_fingerprint())


def services() -> Services:
    """The settings, the database and the adapters, built once per server for these settings."""
    return _services(settings())


def engine() -> Engine:
    return services().engine


@contextmanager
def session_scope() -> Iterator[Session]:
    """One unit of work (``core.db.unit_of_work``) on the dashboard's database."""
    with unit_of_work(services().sessions) as session:
        yield session


def acting_user() -> ActingUser | None:
    """The signed-in user for this browser session, or None."""
    return st.session_state.get(USER_KEY)


def set_acting_user(user: ActingUser | None) -> None:
    st.session_state[USER_KEY] = user


def require_user() -> ActingUser:
    """The acting user; stops the page with a message when nobody is signed in."""
    user = acting_user()
    if user is None:
        st.info("Choose who you are in the sidebar to continue.")
        st.stop()
    return user
