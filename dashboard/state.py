"""What every page shares: the settings, the services built from them, and the acting user.

This is the dashboard's composition root: the settings are loaded, and the engine, the
session factory and the Stripe gateway built, once per server (``st.cache_resource``), again
only when the environment or ``secrets.toml`` changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from core.access.permissions import ActingUser
from core.composition import Services, build_services
from core.db import unit_of_work, upgrade_if_behind
from core.settings import Settings, load_settings, settings_fingerprint

USER_KEY = "acting_user"


@st.cache_resource(show_spinner=False, max_entries=4)
def _settings(fingerprint: tuple[object, ...]) -> Settings:
    return load_settings()


# Settings are a frozen dataclass: Python's own hash covers every field (secrets included, in memory).
@st.cache_resource(show_spinner=False, max_entries=4, hash_funcs={Settings: hash})
def _services(config: Settings) -> Services:
    services = build_services(config)
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
