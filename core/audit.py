"""The audit log: who did what, when, with a summary."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, Permission, require
from core.models import AuditEntry
from core.timezones import day_bounds


@dataclass(frozen=True)
class AuditChoices:
    """The values the audit log's filters can take in one league."""

    actions: list[str]
    actors: list[str]


def record_action(
    session: Session,
    user: ActingUser,
    action: str,
    summary: str,
    *,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Add an audit row in the caller's transaction (it lands when the caller commits)."""
    entry = AuditEntry(
        tenant_id=user.tenant_id,
        actor=user.identity,
        role=user.role.value,
        action=action,
        summary=summary,
        details=details or {},
    )
    session.add(entry)
    session.flush()
    return entry


def list_audit_entries(
    session: Session,
    user: ActingUser,
    *,
    action: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = 1000,
) -> list[AuditEntry]:
    """The league's audit log, newest first, from ``since`` (inclusive) to ``until`` (exclusive).

    ``limit=None`` returns every matching entry (for the CSV export).
    """
    require(user, Permission.VIEW_AUDIT_LOG)
    statement = entries_statement(user, action=action, actor=actor, since=since, until=until)
    if limit is not None:
        statement = statement.limit(limit)
    return list(session.scalars(statement))


def audit_filter_choices(session: Session, user: ActingUser) -> AuditChoices:
    """The actions and the people that appear in the league's audit log, for the filters."""
    require(user, Permission.VIEW_AUDIT_LOG)
    actions = session.scalars(
        select(AuditEntry.action).where(AuditEntry.tenant_id == user.tenant_id).distinct().order_by(AuditEntry.action)
    )
    actors = session.scalars(
        select(AuditEntry.actor).where(AuditEntry.tenant_id == user.tenant_id).distinct().order_by(AuditEntry.actor)
    )
    return AuditChoices(actions=list(actions), actors=list(actors))


def audit_period(
    first_day: date | None, last_day: date | None, zone_name: str | None = None
) -> tuple[datetime | None, datetime | None]:
    """``since`` and ``until`` for the league's whole days (in ``zone_name``, else UTC) from
    ``first_day`` to ``last_day``, both included."""
    return day_bounds(first_day, last_day, zone_name)


def entries_statement(
    user: ActingUser,
    *,
    action: str | None,
    actor: str | None,
    since: datetime | None,
    until: datetime | None,
) -> Select[AuditEntry]:
    """The query of the user's league's audit entries, newest first (for service functions only)."""
    statement = select(AuditEntry).where(AuditEntry.tenant_id == user.tenant_id)
    if action:
        statement = statement.where(AuditEntry.action == action)
    if actor:
        statement = statement.where(AuditEntry.actor == actor)
    if since:
        statement = statement.where(AuditEntry.created_at >= since)
    if until:
        statement = statement.where(AuditEntry.created_at < until)
    return statement.order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc())
