"""A league's own name and brand: what its emails and pages are signed with."""

from __future__ import annotations

from dataclasses import dataclass, fields

from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, Permission, require
from core.audit import record_action
from core.email.brand import is_hex_colour
from core.email.headers import normalise_recipient
from core.errors import InvalidInput
from core.reporting.directory import league_of


@dataclass(frozen=True)
class LeagueSettings:
    """The editable settings of a league. In an update, ``None`` leaves a value as it is and
    an empty string clears an optional one."""

    name: str | None = None
    sender_name: str | None = None
    reply_to: str | None = None
    logo_url: str | None = None
    primary_color: str | None = None
    accent_color: str | None = None
    footer_text: str | None = None


# LeagueSettings field -> Tenant column
_COLUMNS = {
    "name": "name",
    "sender_name": "sender_name",
    "reply_to": "reply_to",
    "logo_url": "logo_url",
    "primary_color": "brand_primary_color",
    "accent_color": "brand_accent_color",
    "footer_text": "footer_text",
}
_REQUIRED = {"name", "primary_color", "accent_color"}


def current_league_settings(session: Session, user: ActingUser) -> LeagueSettings:
    """The league's settings as they are now."""
    require(user, Permission.MANAGE_LEAGUE)
    tenant = league_of(session, user)
    return LeagueSettings(**{field: getattr(tenant, column) or "" for field, column in _COLUMNS.items()})


def update_league_settings(session: Session, user: ActingUser, changes: LeagueSettings) -> LeagueSettings:
    """Check and apply ``changes`` to the acting user's league; all or nothing. The caller commits.

    Every value is checked before anything changes; ``InvalidInput`` names all that are wrong,
    one per line, so one save shows every mistake.
    """
    require(user, Permission.MANAGE_LEAGUE)
    tenant = league_of(session, user)
    cleaned: dict[str, str | None] = {}
    problems: list[str] = []
    for f in fields(LeagueSettings):
        try:
            cleaned[f.name] = _checked(f.name, getattr(changes, f.name))
        except InvalidInput as problem:
            problems.append(str(problem))
    if problems:
        raise InvalidInput("\n".join(problems))
    changed = []
    for field, value in cleaned.items():
        if value is None:
            continue
        column = _COLUMNS[field]
        stored = value or None
        if getattr(tenant, column) != stored:
            setattr(tenant, column, stored)
            changed.append(field.replace("_", " "))
    if changed:
        session.flush()
        record_action(
            session, user, "league_settings", f"Changed the league's {', '.join(changed)}",
            details={"changed": changed},
        )
    return current_league_settings(session, user)


def _checked(field: str, value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if "\n" in value and field != "footer_text" or "\r" in value:
        raise InvalidInput(f"The {field.replace('_', ' ')} must be one line.")
    if not value:
        if field in _REQUIRED:
            raise InvalidInput(f"The league's {field.replace('_', ' ')} cannot be empty.")
        return ""
    if field in {"primary_color", "accent_color"} and not is_hex_colour(value):
        raise InvalidInput(f"The {field.replace('_', ' ')} must be a hex colour like #1D3557, not {value!r}.")
    if field == "reply_to":
        return normalise_recipient(value)
    if field == "logo_url" and not value.startswith("https://"):
        raise InvalidInput("The logo must be an https:// address (mail clients block others).")
    limit = 2000 if field == "footer_text" else 200
    if len(value) > limit:
        raise InvalidInput(f"The {field.replace('_', ' ')} is longer than {limit} characters.")
    return value
