"""A family's choice not to get reminder emails: set by an admin, audited, honoured by every send.

An opted-out family stays in the balances (they still owe) and is listed as skipped in a
send's manifest ("opted out"); only the email stops. A family asks by the unsubscribe line or
header of any reminder (a ``mailto:`` to the league), and the admin records it here.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, Permission, find_in_league, require
from core.audit import record_action
from core.models import Parent

OPT_OUT_ACTION = "email_opt_out"
OPT_IN_ACTION = "email_opt_in"


@dataclass(frozen=True)
class OptOutChange:
    """What ``set_email_opt_out`` did: the family, their choice now, and whether it changed."""

    parent_id: int
    parent_name: str
    opted_out: bool
    changed: bool


def set_email_opt_out(session: Session, user: ActingUser, parent_id: int, *, opted_out: bool) -> OptOutChange:
    """Stop (``opted_out=True``) or resume reminder emails to one family of the league; audited.
    The caller commits. Setting the choice a family already has changes and records nothing."""
    require(user, Permission.MANAGE_EMAIL_PREFERENCES)
    parent = find_in_league(session, user, Parent, parent_id, label="family")
    changed = parent.email_opt_out != opted_out
    if changed:
        parent.email_opt_out = opted_out
        session.flush()
        if opted_out:
            record_action(session, user, OPT_OUT_ACTION, f"Stopped reminder emails to {parent.name}",
                          details={"parent_id": parent.id})
        else:
            record_action(session, user, OPT_IN_ACTION, f"Resumed reminder emails to {parent.name}",
                          details={"parent_id": parent.id})
    return OptOutChange(parent_id=parent.id, parent_name=parent.name, opted_out=opted_out, changed=changed)
