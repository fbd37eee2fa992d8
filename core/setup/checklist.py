"""The setup checklist: each thing a league needs before it bills families, its state, and how to fix it.

One function, ``setup_checklist``, looks at the league, the settings in force
(``core.access.league_settings.effective_settings``) and the server's configuration, and
returns one ``ChecklistItem`` per thing. It never shows a secret: the Stripe key is described
by its kind (none, test or live), the database URL is masked. ``check_email_connection``
connects and signs in to the email provider without sending anything.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.access.league_settings import effective_settings
from core.access.permissions import ActingUser, Permission, require
from core.email.backends import EmailBackend
from core.models import LinkStatus, Order, Parent, PaymentLink, Player, Product
from core.reporting.directory import league_of
from core.settings import Settings
from core.words import plural


class ItemState(str, enum.Enum):
    """How far one item of the checklist is from ready (the page puts it into a colour and an icon)."""

    READY = "ready"
    WARNING = "warning"  # works, but not for real families yet (a test key, the file outbox)
    MISSING = "missing"  # must be fixed before the league can bill families


class ItemKind(str, enum.Enum):
    STRIPE_KEY = "stripe_key"
    THANK_YOU_PAGE = "thank_you_page"
    SENDER_ADDRESS = "sender_address"
    REPLY_TO = "reply_to"
    EMAIL_BACKEND = "email_backend"
    SIGN_IN = "sign_in"
    DATABASE = "database"
    TIME_ZONE = "time_zone"
    ROSTER = "roster"
    PRODUCTS = "products"
    PAYMENT_LINKS = "payment_links"


@dataclass(frozen=True)
class ChecklistItem:
    """One thing the league needs: its state, what it is now, and how to fix it (None when ready).

    ``page`` is the url path of the dashboard page where it is fixed, when there is one.
    """

    kind: ItemKind
    title: str
    state: ItemState
    now: str
    fix: str | None = None
    page: str | None = None


def setup_checklist(
    session: Session, user: ActingUser, settings: Settings, *, email_backend_problem: str | None = None
) -> list[ChecklistItem]:
    """Every item of the league's setup, in the order a new league sets them up.

    ``email_backend_problem`` is why the configured email backend cannot be built (the
    composition root's ``Services.email_backend_problem()``), or None. Five count queries.
    """
    require(user, Permission.MANAGE_LEAGUE)
    tenant = league_of(session, user)
    in_force = effective_settings(tenant, settings)
    counts = _counts(session, user)
    return [
        _stripe_key(settings),
        _thank_you_page(in_force.payment_success_url.value, in_force.payment_success_url.source.described,
                        placeholder=in_force.success_url_is_placeholder, live=settings.stripe_live_mode),
        _sender(in_force.email_from.value, in_force.email_from.source.described,
                placeholder=in_force.sender_is_placeholder, delivers=settings.email_backend != "file"),
        _reply_to(tenant.reply_to),
        _email_backend(settings, email_backend_problem),
        _sign_in(settings.auth_mode),
        _database(settings),
        _time_zone(in_force.time_zone.value, in_force.time_zone.source.described),
        _roster(counts["players"], counts["families"]),
        _products(counts["products"]),
        _payment_links(counts["links"], players=counts["players"], stripe=settings.stripe_configured),
    ]


@dataclass(frozen=True)
class NextStep:
    """What to do next to get the league billing, and the url path of the page to do it on."""

    text: str
    page: str


def next_setup_steps(session: Session, user: ActingUser) -> list[NextStep]:
    """What an admin setting the league up does next, from what the league has so far (shown
    after an import): the roster files still to import, then the payment links, then the email."""
    require(user, Permission.IMPORT_ROSTER)
    counts = _counts(session, user)
    steps: list[NextStep] = []
    if not counts["players"]:
        steps.append(NextStep("Import your players file: players, their teams and their parents.", "import"))
    if not counts["products"]:
        steps.append(NextStep("Import your products file: what families pay for, at what price.", "import"))
    if counts["players"] and counts["products"] and not counts["orders"]:
        steps.append(NextStep("Import your orders file, if families bought extras such as uniforms (optional).",
                              "import"))
    if counts["players"] and counts["products"] and not counts["links"]:
        steps.append(NextStep("Create the payment links families pay through.", "backfill"))
    if counts["links"]:
        steps.append(NextStep("Preview the reminder email and send a test to yourself.", "email"))
    steps.append(NextStep("See what else the league needs: the Stripe key, the sender address, the thank-you page.",
                          "setup"))
    return steps


def check_email_connection(user: ActingUser, backend: EmailBackend) -> str:
    """Connect and sign in to the email provider through ``backend`` without sending anything;
    what was checked. ``EmailDeliveryError`` says what failed."""
    require(user, Permission.MANAGE_LEAGUE)
    return backend.check()


def _counts(session: Session, user: ActingUser) -> dict[str, int]:
    tid = user.tenant_id
    return {
        "players": session.scalar(select(func.count(Player.id)).where(Player.tenant_id == tid)) or 0,
        "families": session.scalar(select(func.count(Parent.id)).where(Parent.tenant_id == tid)) or 0,
        "products": session.scalar(select(func.count(Product.id)).where(Product.tenant_id == tid)) or 0,
        "orders": session.scalar(select(func.count(Order.id)).where(Order.tenant_id == tid)) or 0,
        "links": session.scalar(select(func.count(PaymentLink.id)).where(
            PaymentLink.tenant_id == tid, PaymentLink.status == LinkStatus.ACTIVE)) or 0,
    }


def _stripe_key(settings: Settings) -> ChecklistItem:
    title = "Stripe key"
    stand_in = f" Stripe is reached at {settings.stripe_api_base} (not stripe.com)." if settings.stripe_api_base else ""
    if not settings.stripe_configured:
        return ChecklistItem(
            ItemKind.STRIPE_KEY, title, ItemState.MISSING, "None: payment links cannot be created yet.",
            "Set STRIPE_API_KEY in the server's environment or .streamlit/secrets.toml (a test key, "
            "sk_test_…, to try it out; a live key, sk_live_…, to take real payments), then restart the dashboard.")
    if settings.stripe_live_mode:
        return ChecklistItem(ItemKind.STRIPE_KEY, title, ItemState.READY,
                             f"A live key: payment links take real money.{stand_in}")
    return ChecklistItem(
        ItemKind.STRIPE_KEY, title, ItemState.WARNING, f"A test key: payment links take no real money.{stand_in}",
        "Fine for trying it out. To bill families, set STRIPE_API_KEY to your live key (sk_live_…).")


def _thank_you_page(url: str, source: str, *, placeholder: bool, live: bool) -> ChecklistItem:
    title = "Thank-you page"
    if not placeholder:
        return ChecklistItem(ItemKind.THANK_YOU_PAGE, title, ItemState.READY, f"{url} ({source}).")
    return ChecklistItem(
        ItemKind.THANK_YOU_PAGE, title, ItemState.MISSING if live else ItemState.WARNING,
        f"The placeholder {url}: after paying, a family would land on a page that is not the league's.",
        "Set your league's thank-you page (any page of your website) in League settings.", page="league")


def _sender(address: str, source: str, *, placeholder: bool, delivers: bool) -> ChecklistItem:
    title = "Sender address"
    if not placeholder:
        return ChecklistItem(ItemKind.SENDER_ADDRESS, title, ItemState.READY, f"{address} ({source}).")
    return ChecklistItem(
        ItemKind.SENDER_ADDRESS, title, ItemState.MISSING if delivers else ItemState.WARNING,
        f"The placeholder {address}, which nobody reads" + (": email cannot be sent from it." if delivers else "."),
        "Set the address your league sends from in League settings (it must be one your email "
        "provider lets you send as).", page="league")


def _reply_to(reply_to: str | None) -> ChecklistItem:
    title = "Replies and unsubscribe requests"
    if reply_to:
        return ChecklistItem(ItemKind.REPLY_TO, title, ItemState.READY, f"Go to {reply_to}.")
    return ChecklistItem(
        ItemKind.REPLY_TO, title, ItemState.WARNING,
        "No reply-to address: replies and unsubscribe requests go to the sender address.",
        "Set \"Replies go to\" in League settings to the address someone reads.", page="league")


def _email_backend(settings: Settings, problem: str | None) -> ChecklistItem:
    title = "Email sending"
    if problem:
        return ChecklistItem(ItemKind.EMAIL_BACKEND, title, ItemState.MISSING, problem,
                             "Fix the email settings in the server's environment or .streamlit/secrets.toml.")
    if settings.email_backend == "file":
        return ChecklistItem(
            ItemKind.EMAIL_BACKEND, title, ItemState.WARNING,
            f"The file outbox: emails are saved in {settings.email_outbox_dir}, not delivered.",
            "To email families, set EMAIL_BACKEND to smtp (with SMTP_HOST, SMTP_USERNAME, SMTP_PASSWORD) "
            "or gmail (with GMAIL_CREDENTIALS_FILE), then check the connection here.")
    where = f"the mail server {settings.smtp_host}:{settings.smtp_port}" if settings.email_backend == "smtp" else "Gmail"
    return ChecklistItem(ItemKind.EMAIL_BACKEND, title, ItemState.READY,
                         f"Through {where}. Check the connection below to be sure it signs in.")


def _sign_in(auth_mode: str) -> ChecklistItem:
    title = "Sign-in"
    if auth_mode == "oidc":
        return ChecklistItem(ItemKind.SIGN_IN, title, ItemState.READY,
                             "People sign in with their league account and get the role listed for them.")
    return ChecklistItem(
        ItemKind.SIGN_IN, title, ItemState.WARNING,
        "Off (demo mode): whoever opens the dashboard on this computer picks a role.",
        "Fine while only you use it, on this computer. Before anyone else does, set up sign-in "
        "(AUTH_MODE=oidc; see docs/sign-in-and-roles.md).")


def _database(settings: Settings) -> ChecklistItem:
    shown = settings.database_url_for_display()
    if settings.database_url.startswith("sqlite"):
        return ChecklistItem(ItemKind.DATABASE, "Database", ItemState.READY,
                             f"{shown}: a file on this computer.", "Back the file up with the rest of your files.")
    return ChecklistItem(ItemKind.DATABASE, "Database", ItemState.READY, f"{shown} (PostgreSQL).")


def _time_zone(zone: str, source: str) -> ChecklistItem:
    return ChecklistItem(ItemKind.TIME_ZONE, "Time zone", ItemState.READY, f"{zone} ({source}).",
                         None if source != "the built-in default" else "Set the league's time zone in League settings.",
                         page="league")


def _roster(players: int, families: int) -> ChecklistItem:
    title = "Players and families"
    if not players:
        return ChecklistItem(ItemKind.ROSTER, title, ItemState.MISSING, "None yet.",
                             "Import your players file (players, their teams and parents) on Import roster.",
                             page="import")
    return ChecklistItem(ItemKind.ROSTER, title, ItemState.READY,
                         f"{plural(players, 'player')} in {plural(families, 'family', 'families')}.", page="import")


def _products(products: int) -> ChecklistItem:
    title = "Products (what families pay for)"
    if not products:
        return ChecklistItem(ItemKind.PRODUCTS, title, ItemState.MISSING, "None yet.",
                             "Import your products file (registration, dues, uniforms and their prices) on "
                             "Import roster.", page="import")
    return ChecklistItem(ItemKind.PRODUCTS, title, ItemState.READY,
                         f"{plural(products, 'product')}.", page="import")


def _payment_links(links: int, *, players: int, stripe: bool) -> ChecklistItem:
    title = "Payment links"
    if links:
        return ChecklistItem(ItemKind.PAYMENT_LINKS, title, ItemState.READY,
                             f"{plural(links, 'link')} families can pay through.", page="backfill")
    fix = "Create them on the Create payment links page." if stripe and players else (
        "Once the Stripe key is set and the roster imported, create them on the Create payment links page.")
    return ChecklistItem(ItemKind.PAYMENT_LINKS, title, ItemState.MISSING, "None yet.", fix, page="backfill")
