"""What every page shares: settings, the database session, and the acting user."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

import streamlit as st
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from core.access.permissions import ActingUser
from core.db import make_engine, session_factory, upgrade_database
from core.settings import Settings, load_settings

USER_KEY = "acting_user"


def settings() -> Settings:
    """The settings as they are now (environment and secrets are read on every run)."""
    return load_settings()


@st.cache_resource(show_spinner=False)
def _engine(database_url: str) -> Engine:
    upgrade_database(database_url)
    return make_engine(database_url)


def engine() -> Engine:
    return _engine(settings().database_url)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session that commits when the block succeeds and rolls back when it raises."""
    with session_factory(engine())() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def acting_user() -> Optional[ActingUser]:
    """The signed-in user for this browser session, or None."""
    return st.session_state.get(USER_KEY)


def set_acting_user(user: Optional[ActingUser]) -> None:
    st.session_state[USER_KEY] = user


def require_user() -> ActingUser:
    """The acting user; stops the page with a message when nobody is signed in."""
    user = acting_user()
    if user is None:
        st.info("Choose who you are in the sidebar to continue.")
        st.stop()
    return user


def data_changed() -> None:
    """Forget cached query results after a change (sync, import, backfill, send)."""
    st.cache_data.clear()
