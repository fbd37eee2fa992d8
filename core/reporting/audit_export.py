"""The audit log as a CSV file, for the admin's records."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, Permission, require
from core.audit import entries_statement, record_action
from core.audit_sentences import describe_action
from core.models import AuditEntry
from core.reporting.directory import league_of
from core.reporting.export import csv_bytes
from core.timezones import format_local, league_zone
from core.words import plural

# ``when`` is on the league's clock with its zone's abbreviation; ``when_utc`` is the stored instant.
AUDIT_LOG_HEADER = ("when", "when_utc", "who", "role", "what_happened", "action", "summary")


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
    zone_name = league_zone(league_of(session, user))
    entries = list(session.scalars(entries_statement(user, action=action, actor=actor, since=since, until=until)))
    data = csv_bytes(AUDIT_LOG_HEADER, _rows(entries, zone_name))
    record_action(
        session,
        user,
        "export",
        f"Exported {plural(len(entries), 'audit log entry', 'audit log entries')} as CSV",
        details={"kind": "audit_log", "entries": len(entries), "action": action, "actor": actor},
    )
    return data


def _rows(entries: Iterable[AuditEntry], zone_name: str) -> Iterable[tuple[str, ...]]:
    for entry in entries:
        yield (
            format_local(entry.created_at, zone_name, seconds=True),
            format_local(entry.created_at, "UTC", seconds=True).removesuffix(" UTC"),
            entry.actor,
            entry.role,
            describe_action(entry.action, entry.details, entry.summary),
            entry.action,
            entry.summary,
        )
