"""The audit log as a CSV file, for the admin's records."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, Permission, require
from core.audit import entries_statement, record_action
from core.models import AuditEntry
from core.reporting.export import csv_bytes

AUDIT_LOG_HEADER = ("when_utc", "who", "role", "action", "summary")


def audit_log_csv(
    session: Session,
    user: ActingUser,
    *,
    action: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> bytes:
    """Every audit entry matching the filters, newest first, as spreadsheet-safe CSV.

    The export itself is recorded in the audit log (it lands when the caller commits).
    """
    require(user, Permission.VIEW_AUDIT_LOG)
    entries = list(session.scalars(entries_statement(user, action=action, actor=actor, since=since, until=until)))
    data = csv_bytes(AUDIT_LOG_HEADER, _rows(entries))
    record_action(
        session,
        user,
        "export",
        f"Exported {len(entries)} audit log {'entry' if len(entries) == 1 else 'entries'} as CSV",
        details={"kind": "audit_log", "entries": len(entries), "action": action, "actor": actor},
    )
    return data


def _rows(entries: Iterable[AuditEntry]) -> Iterable[tuple[str, ...]]:
    for entry in entries:
        yield (
            entry.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            entry.actor,
            entry.role,
            entry.action,
            entry.summary,
        )
