"""Inputs shared by the first-run form and the League settings page."""

from __future__ import annotations

from functools import lru_cache
from zoneinfo import available_timezones

import streamlit as st

from core.access.league_settings import CURRENCIES


@lru_cache(maxsize=1)
def _time_zones() -> tuple[str, ...]:
    return tuple(sorted(zone for zone in available_timezones() if "/" in zone or zone == "UTC"))


def time_zone_input(current: str, *, key: str, unset_label: str | None = None) -> str:
    """A time zone picker (type to search); ``""`` is "not set" when ``unset_label`` names it."""
    options = list(_time_zones())
    if current and current not in options:
        options.insert(0, current)
    if unset_label is not None:
        options.insert(0, "")
    labels = {"": unset_label or ""}
    index = options.index(current) if current in options else 0
    choice = st.selectbox("Time zone", options=options, index=index, key=key,
                          format_func=lambda zone: labels.get(zone, zone),
                          help="Dates and times on the pages, in emails and in the CSV are shown in it.")
    return str(choice or "")


def currency_input(current: str, *, key: str) -> str:
    """The league's currency (amounts in its files and on its links are in it)."""
    options = list(CURRENCIES)
    if current and current not in options:
        options.insert(0, current)
    index = options.index(current) if current in options else 0
    return str(st.selectbox("Currency", options=options, index=index, key=key, format_func=str.upper,
                            help="Set it before importing products: it cannot change once the league has prices."))
