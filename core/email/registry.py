"""The kinds of email the league sends. Each is one entry: audience, templates and subject.

A second kind of reminder is one more ``EmailType`` here, not a copy of the send path: the
manifest, preview, test send, outbox and history work for any entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.access.permissions import ActingUser, Permission
from core.email.skip_reasons import SkipReason
from core.errors import InvalidInput
from core.models import Parent
from core.reporting.balances import BalanceFilter, OutstandingBalance, outstanding_balances

# Who an email type goes to: the balances of the league, optionally narrowed to some parents.
Audience = Callable[[Session, ActingUser, frozenset[int] | None], list[OutstandingBalance]]


@dataclass(frozen=True)
class EmailType:
    """One kind of email. ``subject_template`` is a Jinja2 string rendered with the body's context."""

    key: str
    title: str
    audience: Audience
    html_template: str
    text_template: str
    subject_template: str
    # Why a parent of the league who is not in the audience gets nothing.
    not_in_audience_reason: SkipReason = SkipReason.NOTHING_OWED
    # A reminder is held back by the skip rule (cool-down, paid since queued...) and holds other
    # reminders back; an email a family gets because of one thing that happened (a receipt) is
    # neither. Who may send it through the outbox:
    reminder: bool = True
    send_permission: Permission = Permission.SEND_EMAIL


@dataclass(frozen=True)
class Recipient(OutstandingBalance):
    """A parent's balance and what their email needs beside it: the first name it greets them by
    (the roster's optional ``parent_first_name``; None greets them by their name)."""

    first_name: str | None = None


def everyone_who_owes(
    session: Session, user: ActingUser, parent_ids: frozenset[int] | None = None
) -> list[OutstandingBalance]:
    """Every parent with an outstanding balance, from the one balances function, as ``Recipient``s
    (one more query, for the first names)."""
    balances = outstanding_balances(session, user, BalanceFilter(parent_ids=parent_ids or frozenset()))
    if not balances:
        return []
    named = select(Parent.id, Parent.first_name).where(
        Parent.tenant_id == user.tenant_id, Parent.first_name.is_not(None))
    if parent_ids:
        named = named.where(Parent.id.in_(parent_ids))
    first_names: dict[int, str] = dict(session.execute(named).all())  # type: ignore[arg-type]
    return [_recipient(balance, first_names.get(balance.parent_id)) for balance in balances]


def _recipient(balance: OutstandingBalance, first_name: str | None) -> Recipient:
    return Recipient(**{f.name: getattr(balance, f.name) for f in fields(OutstandingBalance)}, first_name=first_name)


OUTSTANDING_BALANCE = EmailType(
    key="outstanding_balance",
    title="Outstanding balance reminder",
    audience=everyone_who_owes,
    html_template="outstanding_balance.html",
    text_template="outstanding_balance.txt",
    subject_template="{{ brand.league_name }}: {{ total }} outstanding for {{ players }}",
)



def nobody(session: Session, user: ActingUser, parent_ids: frozenset[int] | None = None) -> list[OutstandingBalance]:
    """No audience: the email goes to one family, about one thing (``core.email.payment_received``)."""
    return []


# The receipt of one payment (``core.email.payment_received`` renders, queues and sends it).
PAYMENT_RECEIVED = EmailType(
    key="payment_received",
    title="Payment received",
    audience=nobody,
    html_template="payment_received.html",
    text_template="payment_received.txt",
    subject_template="{{ brand.league_name }}: we received your payment of {{ amount }}",
    reminder=False,
    send_permission=Permission.SEND_RECEIPTS,
)

EMAIL_TYPES: dict[str, EmailType] = {
    email_type.key: email_type for email_type in (OUTSTANDING_BALANCE, PAYMENT_RECEIVED)
}
# The keys of the reminder types: only their campaigns count as reminders to a family.
REMINDER_TYPES: frozenset[str] = frozenset(key for key, email_type in EMAIL_TYPES.items() if email_type.reminder)


def get_email_type(key: str) -> EmailType:
    """The email type called ``key``; ``InvalidInput`` naming the known ones otherwise."""
    try:
        return EMAIL_TYPES[key]
    except KeyError:
        raise InvalidInput(f"Unknown email type {key!r} (known: {', '.join(EMAIL_TYPES)})") from None
