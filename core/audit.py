"""The audit log: who did what, when, with a summary."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.access import ActingUser, Permission, require
from core.models import AuditEntry


def record_action(
    session: Session,
    user: ActingUser,
    action: str,
    summary: str,
    *,
    details: Optional[dict[str, Any]] = None,
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
    action: Optional[str] = None,
    actor: Optional[str] = None,
    since: Optional[datetime] = None,
    limit: int = 1000,
) -> list[AuditEntry]:
    """The league's audit log, newest first."""
    require(user, Permission.VIEW_AUDIT_LOG)
    statement = select(AuditEntry).where(AuditEntry.tenant_id == user.tenant_id)
    if action:
        statement = statement.where(AuditEntry.action == action)
    if actor:
        statement = statement.where(AuditEntry.actor == actor)
    if since:
        statement = statement.where(AuditEntry.created_at >= since)
    statement = statement.order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc()).limit(limit)
    return list(session.scalars(statement))
