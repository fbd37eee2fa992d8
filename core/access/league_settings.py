"""A league's own settings: its name and brand, and the non-secret settings that may differ by league.

The brand (name, sender name, reply-to, logo, colours, footer) is the league's alone. The
sender address, the thank-you page, the time zone and the email cool-down may be set per
league too; a league that leaves one empty gets what the server's environment (or
``secrets.toml``) says, else the built-in default. ``effective_settings`` is the one place
that decides which value applies: every page, email and command asks it. Secrets (keys and
passwords) stay in the environment and are never a league's setting.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass, fields, replace
from typing import Generic, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, Permission, Role, require
from core.audit import record_action
from core.email.brand import is_hex_colour
from core.email.headers import normalise_recipient
from core.errors import InvalidInput
from core.models import DEFAULT_CURRENCY, EmailPayLinks, Order, PaymentLink, PriceTier, Product, Tenant
from core.reporting.directory import league_of
from core.settings import (
    PLACEHOLDER_EMAIL_ADDRESS,
    PLACEHOLDER_SUCCESS_URL,
    Settings,
    address_of,
    email_from_problem,
    success_url_problem,
)
from core.timezones import DEFAULT_TIME_ZONE

T = TypeVar("T")

# The currencies a league can be set up in (the ones amounts are written for).
CURRENCIES = ("usd", "cad", "aud", "eur", "gbp")
_CURRENCY = re.compile(r"[a-z]{3}")
_MOST_COOLDOWN_DAYS = 365


@dataclass(frozen=True)
class LeagueSettings:
    """The editable settings of a league. In an update, ``None`` leaves a value as it is and
    an empty string clears an optional one (a per-league setting then follows the environment)."""

    name: str | None = None
    sender_name: str | None = None
    reply_to: str | None = None
    logo_url: str | None = None
    primary_color: str | None = None
    accent_color: str | None = None
    footer_text: str | None = None
    sender_address: str | None = None
    payment_success_url: str | None = None
    time_zone: str | None = None
    email_cooldown_days: str | None = None  # whole days, as typed
    currency: str | None = None
    # What the email offers to pay: an ``EmailPayLinks`` value ("" : the default, balance and items).
    email_pay_links: str | None = None


# LeagueSettings field -> Tenant column
_COLUMNS = {
    "name": "name",
    "sender_name": "sender_name",
    "reply_to": "reply_to",
    "logo_url": "logo_url",
    "primary_color": "brand_primary_color",
    "accent_color": "brand_accent_color",
    "footer_text": "footer_text",
    "sender_address": "sender_address",
    "payment_success_url": "payment_success_url",
    "time_zone": "time_zone",
    "email_cooldown_days": "email_cooldown_days",
    "currency": "currency",
    "email_pay_links": "email_pay_links",
}
_REQUIRED = {"name", "primary_color", "accent_color", "currency"}
_LABELS = {
    "payment_success_url": "thank-you page",
    "email_cooldown_days": "email cool-down",
    "email_pay_links": "email's pay buttons",
}


def _label(field: str) -> str:
    return _LABELS.get(field, field.replace("_", " "))


def current_league_settings(session: Session, user: ActingUser) -> LeagueSettings:
    """The league's settings as they are now (an empty string: not set for this league)."""
    require(user, Permission.MANAGE_LEAGUE)
    tenant = league_of(session, user)
    return _settings_of(tenant)


def _settings_of(tenant: Tenant) -> LeagueSettings:
    values = {field: getattr(tenant, column) for field, column in _COLUMNS.items()}
    return LeagueSettings(**{field: "" if value is None else str(value) for field, value in values.items()})


def update_league_settings(session: Session, user: ActingUser, changes: LeagueSettings) -> LeagueSettings:
    """Check and apply ``changes`` to the acting user's league; all or nothing. The caller commits.

    Every value is checked before anything changes; ``InvalidInput`` names all that are wrong,
    one per line, so one save shows every mistake.
    """
    require(user, Permission.MANAGE_LEAGUE)
    tenant = league_of(session, user)
    changed = _apply_changes(session, tenant, changes)
    if changed:
        session.flush()
        record_action(
            session, user, "league_settings", f"Changed the league's {', '.join(changed)}",
            details={"changed": changed},
        )
    return current_league_settings(session, user)


def create_first_league(
    session: Session, details: LeagueSettings, *, created_by: str, slug: str | None = None
) -> Tenant:
    """The first run: create the league of a database that has none yet, named and set up by
    ``details``, and audit it as done by ``created_by`` (an admin). The caller commits.

    Refused (``InvalidInput``) once any league exists: a second league is created on purpose
    from the command line (``import --new-league``), never by a form anyone can reach. The
    slug (how the command line and secrets.toml name the league) is ``slug``, else made from
    the name. ``InvalidInput`` lists every problem with ``details``, and nothing is created.
    """
    if session.scalar(select(exists().where(Tenant.id.is_not(None)))):
        raise InvalidInput("This database has a league already; sign in to it instead.")
    if not (details.name or "").strip():
        raise InvalidInput("The league's name cannot be empty.")
    tenant = Tenant(slug=slug or slug_for(details.name or ""), name=(details.name or "").strip(),
                    currency=DEFAULT_CURRENCY)
    _apply_changes(session, tenant, details)
    session.add(tenant)
    session.flush()
    record_action(
        session, ActingUser(identity=created_by, role=Role.ADMIN, tenant_id=tenant.id), "league_created",
        f"Created the league {tenant.name}", details={"slug": tenant.slug},
    )
    return tenant


def slug_for(name: str) -> str:
    """A league's slug made from its name: ``Westside Hoops!`` -> ``westside-hoops``."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:64].strip("-")
    return slug or "league"


def _apply_changes(session: Session, tenant: Tenant, changes: LeagueSettings) -> list[str]:
    """Check ``changes`` and set them on ``tenant``; the names of what changed. ``InvalidInput``
    (one line per problem) before anything changes."""
    cleaned: dict[str, str | int | None] = {}
    problems: list[str] = []
    for f in fields(LeagueSettings):
        try:
            cleaned[f.name] = _checked(f.name, getattr(changes, f.name))
        except InvalidInput as problem:
            problems.append(str(problem))
    currency = cleaned.get("currency")
    if currency and currency != tenant.currency and tenant.id is not None and _has_amounts(session, tenant):
        problems.append(
            f"The currency cannot change from {tenant.currency.upper()} to {str(currency).upper()}: the league "
            "already has prices, orders or payment links in it."
        )
    if problems:
        raise InvalidInput("\n".join(problems))
    changed = []
    for field, value in cleaned.items():
        if value is None:
            continue
        column = _COLUMNS[field]
        stored = None if value == "" else value
        if getattr(tenant, column) != stored:
            setattr(tenant, column, stored)
            changed.append(_label(field))
    return changed


def _has_amounts(session: Session, tenant: Tenant) -> bool:
    priced = exists().where(PriceTier.product_id == Product.id, Product.tenant_id == tenant.id)
    ordered = exists().where(Order.tenant_id == tenant.id)
    linked = exists().where(PaymentLink.tenant_id == tenant.id)
    return bool(session.scalar(select(priced | ordered | linked)))


def _checked(field: str, value: str | None) -> str | int | None:
    if value is None:
        return None
    value = value.strip()
    if "\n" in value and field != "footer_text" or "\r" in value:
        raise InvalidInput(f"The {_label(field)} must be one line.")
    if not value:
        if field in _REQUIRED:
            raise InvalidInput(f"The league's {_label(field)} cannot be empty.")
        return ""
    if field in {"primary_color", "accent_color"} and not is_hex_colour(value):
        raise InvalidInput(f"The {_label(field)} must be a hex colour like #1D3557, not {value!r}.")
    if field in {"reply_to", "sender_address"}:
        return normalise_recipient(value)
    if field == "logo_url" and not value.startswith("https://"):
        raise InvalidInput("The logo must be an https:// address (mail clients block others).")
    if field == "payment_success_url":
        return _web_address(value)
    if field == "time_zone":
        return _time_zone(value)
    if field == "email_cooldown_days":
        return _days(value)
    if field == "email_pay_links":
        if value not in {choice.value for choice in EmailPayLinks}:
            raise InvalidInput(f"The email's pay buttons are one of {', '.join(c.value for c in EmailPayLinks)}, "
                               f"not {value!r}.")
        return value
    if field == "currency":
        if not _CURRENCY.fullmatch(value.lower()):
            raise InvalidInput(f"The currency must be a three-letter code like USD, not {value!r}.")
        return value.lower()
    limit = 2000 if field == "footer_text" else 200
    if len(value) > limit:
        raise InvalidInput(f"The {_label(field)} is longer than {limit} characters.")
    return value


def _web_address(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"https", "http"} or not parts.netloc or " " in value or len(value) > 1000:
        raise InvalidInput(
            f"The thank-you page must be a full web address like https://yourleague.org/thanks, not {value!r}."
        )
    return value


def _time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"{value!r} is not a time zone; use a name like America/New_York or Europe/London."
        ) from None
    return value


def _days(value: str) -> int:
    if not value.isascii() or not value.isdigit() or int(value) > _MOST_COOLDOWN_DAYS:
        raise InvalidInput(f"The email cool-down must be a whole number of days from 0 to {_MOST_COOLDOWN_DAYS}, "
                           f"not {value!r}.")
    return int(value)


# --- the settings in force ---------------------------------------------------------------------


class SettingSource(str, enum.Enum):
    """Where the value in force of a per-league setting comes from."""

    LEAGUE = "league"
    ENVIRONMENT = "environment"
    DEFAULT = "default"

    @property
    def described(self) -> str:
        return _SOURCE_WORDS[self]


_SOURCE_WORDS = {
    SettingSource.LEAGUE: "set in League settings",
    SettingSource.ENVIRONMENT: "from the server's configuration (environment or secrets.toml)",
    SettingSource.DEFAULT: "the built-in default",
}


@dataclass(frozen=True)
class InForce(Generic[T]):
    """A setting's value in force and where it comes from."""

    value: T
    source: SettingSource


@dataclass(frozen=True)
class EffectiveSettings:
    """The per-league settings in force for one league: its own, else the environment's, else the default."""

    email_from: InForce[str]  # a From address as EMAIL_FROM is written ("Name <address>" or "address")
    payment_success_url: InForce[str]
    time_zone: InForce[str]
    email_cooldown_days: InForce[int]
    email_backend: str
    stripe_live_mode: bool

    @property
    def sender_is_placeholder(self) -> bool:
        return address_of(self.email_from.value) == PLACEHOLDER_EMAIL_ADDRESS

    @property
    def success_url_is_placeholder(self) -> bool:
        return self.payment_success_url.value == PLACEHOLDER_SUCCESS_URL

    def email_from_problem(self) -> str | None:
        """``core.settings.email_from_problem`` for the sender address in force."""
        return email_from_problem(self.email_from.value, backend=self.email_backend)

    def success_url_problem(self) -> str | None:
        """``core.settings.success_url_problem`` for the thank-you page in force (a warning for
        test links; ``ConfigurationError`` for live links, which are never minted with it)."""
        return success_url_problem(self.payment_success_url.value, live=self.stripe_live_mode)


def effective_settings(tenant: Tenant | None, settings: Settings) -> EffectiveSettings:
    """The per-league settings in force for ``tenant``: the league's value, else the one the server's
    environment or ``secrets.toml`` gives (``settings``), else the built-in default. With
    ``tenant=None``: what a league that sets none of them gets.

    The one rule for these values: the email and backfill workflows, the pages and the command
    line all take them from here. The league's sender address keeps the league's sender name
    (``core.email.brand``); the environment's EMAIL_FROM keeps its own display name.
    """
    defaults = Settings()

    def in_force(league_value: T | None, configured: T, default: T) -> InForce[T]:
        if league_value is not None and league_value != "":
            return InForce(league_value, SettingSource.LEAGUE)
        source = SettingSource.DEFAULT if configured == default else SettingSource.ENVIRONMENT
        return InForce(configured, source)

    league = tenant if tenant is not None else Tenant()
    return EffectiveSettings(
        email_from=in_force(league.sender_address, settings.email_from, defaults.email_from),
        payment_success_url=in_force(league.payment_success_url, settings.payment_success_url,
                                     defaults.payment_success_url),
        time_zone=in_force(league.time_zone, DEFAULT_TIME_ZONE, DEFAULT_TIME_ZONE),
        email_cooldown_days=in_force(league.email_cooldown_days, settings.email_cooldown_days,
                                     defaults.email_cooldown_days),
        email_backend=settings.email_backend,
        stripe_live_mode=settings.stripe_live_mode,
    )


def settings_for_league(tenant: Tenant | None, settings: Settings) -> Settings:
    """``settings`` with the league's own sender address, thank-you page and cool-down applied
    (``effective_settings``): what the send and backfill workflows of that league run with."""
    in_force = effective_settings(tenant, settings)
    return replace(
        settings,
        email_from=in_force.email_from.value,
        payment_success_url=in_force.payment_success_url.value,
        email_cooldown_days=in_force.email_cooldown_days.value,
    )


