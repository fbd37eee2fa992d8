"""Times shown to people, in the league's time zone: the one place a stored instant becomes text.

Timestamps are stored in UTC (``core.models``). Every page, email, CSV and command-line line
that shows one passes it through ``format_local`` with the league's zone (``league_zone``), so
a league in Los Angeles reads "2026-03-08 01:30 PST" and, after the clocks change, "PDT",
where a league that keeps UTC reads the stored time. The zone's abbreviation is always shown,
so nobody has to guess which clock a time is on. Days chosen by a person (the audit log's
"from" and "to") are the league's days, turned into UTC bounds by ``day_bounds``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_TIME_ZONE = "UTC"
MINUTES = "%Y-%m-%d %H:%M"
SECONDS = "%Y-%m-%d %H:%M:%S"


class HasTimeZone(Protocol):
    time_zone: str | None


@lru_cache(maxsize=64)
def zone(name: str | None) -> tzinfo:
    """The zone named ``name`` (an IANA name such as ``America/Los_Angeles``); UTC when unset or unknown."""
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def league_zone(league: HasTimeZone | None) -> str:
    """The name of the zone ``league``'s times are shown in (its setting, else UTC)."""
    name = league.time_zone if league is not None else None
    return name if name and zone(name) is not UTC else DEFAULT_TIME_ZONE


def local_time(moment: datetime, zone_name: str | None) -> datetime:
    """``moment`` (timezone-aware; a naive one is taken as UTC) on the clock of ``zone_name``."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(zone(zone_name))


def zone_abbreviation(moment: datetime, zone_name: str | None) -> str:
    """What the zone is called at ``moment``: ``PST`` or ``PDT``, ``UTC``; the zone's name where
    it has no letters of its own (``Asia/Dubai``, not ``+04``)."""
    abbreviation = local_time(moment, zone_name).tzname() or ""
    if not abbreviation or abbreviation[0] in "+-":
        return zone_name or DEFAULT_TIME_ZONE
    return abbreviation


def format_local(moment: datetime | None, zone_name: str | None, *, seconds: bool = False,
                 missing: str = "") -> str:
    """``moment`` as the league reads it: ``2026-12-01 09:05 PST`` (``missing`` when there is none)."""
    if moment is None:
        return missing
    shown = local_time(moment, zone_name)
    return f"{shown.strftime(SECONDS if seconds else MINUTES)} {zone_abbreviation(moment, zone_name)}"


def local_date(moment: datetime, zone_name: str | None) -> date:
    """The league's calendar day at ``moment`` (a late-evening payment in Los Angeles is not tomorrow's)."""
    return local_time(moment, zone_name).date()


def today_in(zone_name: str | None) -> date:
    """Today's date on the league's clock."""
    return local_date(datetime.now(UTC), zone_name)


def day_bounds(first_day: date | None, last_day: date | None,
               zone_name: str | None) -> tuple[datetime | None, datetime | None]:
    """UTC ``since`` (inclusive) and ``until`` (exclusive) for the league's whole days
    ``first_day`` to ``last_day``, both included (a day across a clock change is 23 or 25 hours)."""
    where = zone(zone_name)
    since = datetime.combine(first_day, time.min, tzinfo=where).astimezone(UTC) if first_day else None
    until = (datetime.combine(last_day + timedelta(days=1), time.min, tzinfo=where).astimezone(UTC)
             if last_day else None)
    return since, until
