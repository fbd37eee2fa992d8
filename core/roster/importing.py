"""Roster import: players (with their parents and teams), products and orders from CSV.

``import_roster`` reads one file row by row, validates every row, compares the records
with the league's data and reports what would be created, updated or left unchanged.
Nothing changes unless ``commit=True`` and the whole file is free of errors: an import is
all-or-nothing. Rows are matched on their ``*_ref`` (products on their name), so importing
the same file again changes nothing and an updated file updates in place.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, Permission, require
from core.audit import record_action
from core.db import analyze_after_commit
from core.models import Tenant
from core.roster.formats import RosterKind
from core.roster.planning import PLANS, RosterPlan
from core.roster.reading import (
    RosterFileError,
    RosterReader,
    RosterSource,
    amount_notation,
    open_source,
    source_name,
)
from core.roster.result import (
    ENTITIES,
    MAX_REPORTED_ERRORS,
    EntityCounts,
    ErrorList,
    ImportResult,
    LargeAmount,
    RowError,
)
from core.roster.validation import CHECKERS

__all__ = [
    "ENTITIES",
    "EntityCounts",
    "ImportResult",
    "LargeAmount",
    "RosterKind",
    "RosterSource",
    "RowError",
    "import_roster",
]

logger = logging.getLogger(__name__)

AUDIT_ACTION = "roster_import"


def import_roster(
    session: Session,
    user: ActingUser,
    file: RosterSource,
    *,
    commit: bool = False,
    confirm_large_amounts: bool = False,
    file_name: str | None = None,
    max_errors: int = MAX_REPORTED_ERRORS,
) -> ImportResult:
    """Preview (the default) or apply one roster file to the acting user's league.

    ``file`` is a path, the file's bytes, or an open binary file (an upload). With
    ``commit=True`` and no errors the changes and an audit entry are written in the
    caller's transaction: the caller commits, and then the tables written are analyzed
    (``core.db.analyze_after_commit``). With any error nothing is written and the result
    lists the problems (the first ``max_errors`` of them, and their total).

    An amount above ``LARGE_AMOUNT_CENTS`` for one item is listed in ``large_amounts``; a
    file with any is written only with ``confirm_large_amounts=True`` (otherwise the result
    is ``unconfirmed`` and nothing is written), because a misread amount would go on to
    payment links and reminder emails.
    """
    require(user, Permission.IMPORT_ROSTER)
    result = ImportResult(file_name=file_name or source_name(file))
    errors = ErrorList(max_errors)
    tenant = _league(session, user, lock=commit)
    result.currency = tenant.currency
    plan = _plan(session, tenant, file, result, errors)
    result.errors, result.error_count = list(errors), errors.total
    if commit and result.ok and plan is not None:
        if result.large_amounts and not confirm_large_amounts:
            result.unconfirmed = True
        else:
            _apply(session, user, plan, result)
    logger.info("roster import of %s: %s, %d errors", result.file_name, result.summary(), result.error_count)
    return result


def _plan(
    session: Session, tenant: Tenant, file: RosterSource, result: ImportResult, errors: ErrorList
) -> RosterPlan | None:
    """Read, check and compare every row; the plan of changes (None when the file is unreadable)."""
    plan: RosterPlan | None = None
    with open_source(file) as stream:
        try:
            notation = amount_notation(stream)
            reader = RosterReader(stream)
            result.kind, result.entities = reader.format.kind, reader.format.entities
            checker = CHECKERS[result.kind](errors, notation)
            result.large_amounts = checker.large_amounts  # filled in as the rows are read
            plan = PLANS[result.kind](session, tenant, result, errors)
            for row in reader.rows():
                result.rows += 1
                record = checker.check(row)
                if record is not None:
                    plan.add(record)
        except RosterFileError as exc:
            errors.add(exc.line, None, str(exc))
    if result.kind is not None and result.rows == 0 and not errors:
        errors.add(None, None, "The file has a header but no rows to import.")
    return plan


def _apply(session: Session, user: ActingUser, plan: RosterPlan, result: ImportResult) -> None:
    plan.apply()
    session.expire_all()  # bulk statements bypass the identity map: reload what the caller holds
    if result.changes:
        analyze_after_commit(session, plan.writes)
    kind = result.kind.value if result.kind else "roster"
    record_action(
        session,
        user,
        AUDIT_ACTION,
        f"Imported {kind} file {result.file_name} ({result.rows} rows): {result.summary()}",
        details={
            "file": result.file_name,
            "kind": kind,
            "rows": result.rows,
            "counts": {e: vars(result.counts[e]) for e in result.entities},
            "confirmed_large_amounts": [
                {"line": large.line, "column": large.column, "amount_cents": large.amount_cents}
                for large in result.large_amounts
            ],
        },
    )
    result.committed = True


def _league(session: Session, user: ActingUser, *, lock: bool) -> Tenant:
    """The acting user's league; locked for a commit so two imports into it run one after the other."""
    statement = select(Tenant).where(Tenant.id == user.tenant_id)
    if lock:
        statement = statement.with_for_update()
    return session.scalars(statement).one()
