"""The dashboard's pages and the permission each needs. One entry per page."""

from __future__ import annotations

from dataclasses import dataclass

from core.access.permissions import ActingUser, Permission


@dataclass(frozen=True)
class PageEntry:
    file: str  # relative to dashboard/ (not "pages/": Streamlit would serve that folder without the router)
    title: str
    icon: str
    permission: Permission
    url_path: str
    section: str = "Balances"


PAGES: tuple[PageEntry, ...] = (
    PageEntry("views/balances.py", "Outstanding balances", ":material/account_balance_wallet:",
              Permission.VIEW_BALANCES, "balances"),
    PageEntry("views/family.py", "Family page", ":material/receipt_long:", Permission.VIEW_LEDGER, "family"),
    PageEntry("views/payment_sync.py", "Sync from Stripe", ":material/sync:",
              Permission.SYNC_PAYMENTS, "payment_sync"),
    PageEntry("views/import_roster.py", "Import roster", ":material/upload_file:",
              Permission.IMPORT_ROSTER, "import", section="Admin"),
    PageEntry("views/backfill.py", "Create payment links", ":material/add_link:",
              Permission.MINT_LINKS, "backfill", section="Admin"),
    PageEntry("views/league_settings.py", "League settings", ":material/palette:",
              Permission.MANAGE_LEAGUE, "league", section="Admin"),
    PageEntry("views/setup_checklist.py", "Setup checklist", ":material/checklist:",
              Permission.MANAGE_LEAGUE, "setup", section="Admin"),
    PageEntry("views/audit_log.py", "Audit log", ":material/history:",
              Permission.VIEW_AUDIT_LOG, "audit_log", section="Admin"),
    PageEntry("views/email.py", "Email", ":material/mail:", Permission.PREVIEW_EMAIL, "email", section="Email"),
    PageEntry("views/email_history.py", "Email history", ":material/mark_email_read:", Permission.PREVIEW_EMAIL,
              "email-history", section="Email"),
)


def pages_for(user: ActingUser | None) -> list[PageEntry]:
    """The pages a user may open, in menu order."""
    if user is None:
        return []
    return [page for page in PAGES if user.can(page.permission)]


def entry_for(url_path: str) -> PageEntry | None:
    """The entry of the page at ``url_path`` (how the router knows what a page needs)."""
    return next((page for page in PAGES if page.url_path == url_path), None)
