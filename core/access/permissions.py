"""Who is acting, and what they may do. Every service function takes an ``ActingUser``.

Pages only decide what to show; the refusal that protects data happens here.
"""

from __future__ import annotations

import enum
import getpass
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

from core.errors import NotFound, PermissionDenied

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


class _LeagueRow(Protocol):
    """A row that belongs to one league."""

    @property
    def tenant_id(self) -> int: ...


RowT = TypeVar("RowT", bound=_LeagueRow)


class Role(str, enum.Enum):
    COACH = "coach"
    TREASURER = "treasurer"
    ADMIN = "admin"


class Permission(str, enum.Enum):
    VIEW_LEAGUE = "see the league"
    VIEW_BALANCES = "view balances"
    VIEW_CONTACT_DETAILS = "see parents' contact details"
    EXPORT_BALANCES = "export balances"
    SYNC_PAYMENTS = "sync payments from Stripe"
    MINT_LINKS = "mint payment links"
    PREVIEW_EMAIL = "preview emails"
    SEND_EMAIL = "send emails"
    IMPORT_ROSTER = "import the roster"
    VIEW_AUDIT_LOG = "view the audit log"
    MANAGE_LEAGUE = "change the league's name and brand"
    MANAGE_EMAIL_PREFERENCES = "change whether a family gets reminder emails"
    VIEW_LEDGER = "see a family's ledger"
    RECORD_CHARGES = "bill a family"
    RECORD_PAYMENTS = "record payments"
    ADJUST_BALANCES = "adjust balances"
    REFUND_PAYMENTS = "refund payments"
    REVERSE_ENTRIES = "reverse ledger entries"
    SEND_RECEIPTS = "email a family the receipt of a payment"


_GRANTS: dict[Role, frozenset[Permission]] = {
    Role.COACH: frozenset({Permission.VIEW_LEAGUE, Permission.VIEW_BALANCES}),
    Role.TREASURER: frozenset(
        {
            Permission.VIEW_LEAGUE,
            Permission.VIEW_BALANCES,
            Permission.VIEW_CONTACT_DETAILS,
            Permission.EXPORT_BALANCES,
            Permission.SYNC_PAYMENTS,
            # The league's books: a coach sees balances, never payment methods, references or notes.
            Permission.VIEW_LEDGER,
            Permission.RECORD_CHARGES,
            Permission.RECORD_PAYMENTS,
            Permission.ADJUST_BALANCES,
            Permission.REFUND_PAYMENTS,
            Permission.REVERSE_ENTRIES,
            # The receipt of a payment they recorded (never a reminder to everyone: that is the admin's).
            Permission.SEND_RECEIPTS,
        }
    ),
    Role.ADMIN: frozenset(Permission),
}


@dataclass(frozen=True)
class ActingUser:
    """A person (or the CLI operator) acting inside one league.

    ``team_ids`` limits a coach to their own teams; it is ignored for other roles.
    """

    identity: str
    role: Role
    tenant_id: int
    team_ids: frozenset[int] = field(default_factory=frozenset)

    def can(self, permission: Permission) -> bool:
        return permission in _GRANTS[self.role]

    @property
    def sees_all_teams(self) -> bool:
        return self.role is not Role.COACH


def require(user: ActingUser | None, permission: Permission) -> ActingUser:
    """Return ``user`` if it may do ``permission``; raise ``PermissionDenied`` otherwise."""
    if user is None:
        raise PermissionDenied(f"Sign in to {permission.value}.")
    if not user.can(permission):
        raise PermissionDenied(f"A {user.role.value} may not {permission.value}.")
    return user


def find_in_league(session: Session, user: ActingUser, model: type[RowT], ident: int, *, label: str) -> RowT:
    """The row ``ident`` of ``model`` in the acting user's league.

    A row of another league is reported exactly like a missing one, so ids never reveal
    what other leagues hold. Call it after the service function's own ``require``.
    """
    row = session.get(model, ident)
    if row is None or row.tenant_id != user.tenant_id:
        raise NotFound(f"There is no {label} {ident} in this league.")
    return row


def cli_operator(tenant_id: int) -> ActingUser:
    """Whoever has a shell on the server acts as the league's admin, recorded as ``cli:<os user>``."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        name = "unknown"
    return ActingUser(identity=f"cli:{name}", role=Role.ADMIN, tenant_id=tenant_id)
