"""The dashboard's pages and the permission each needs. One entry per page."""

from __future__ import annotations

from dataclasses import dataclass

from core.access import ActingUser, Permission


@dataclass(frozen=True)
class PageEntry:
    file: str  # relative to dashboard/
    title: str
    icon: str
    permission: Permission
    url_path: str
    section: str = "Balances"


PAGES: tuple[PageEntry, ...] = (
    PageEntry("pages/balances.py", "Outstanding balances", ":material/account_balance_wallet:",
              Permission.VIEW_BALANCES, "balances"),
    PageEntry("pages/email.py", "Email", ":material/mail:", Permission.PREVIEW_EMAIL, "email", section="Email"),
    PageEntry("pages/email_history.py", "Email history", ":material/history:", Permission.PREVIEW_EMAIL,
              "email-history", section="Email"),
)


def pages_for(user: ActingUser | None) -> list[PageEntry]:
    """The pages a user may open, in menu order."""
    if user is None:
        return []
    return [page for page in PAGES if user.can(page.permission)]
