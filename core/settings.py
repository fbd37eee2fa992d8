"""One typed settings object for the app, the CLI, Alembic and the tests.

Values come from the environment, then from ``.streamlit/secrets.toml`` (top-level keys),
then from the embedded defaults. They are read when ``load_settings()`` is called, never
at import time. Secrets are held in ``Secret`` so they never appear in a repr or a log.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
SECRETS_FILE = REPO_ROOT / ".streamlit" / "secrets.toml"
DEFAULT_SQLITE_PATH = REPO_ROOT / "data" / "league.db"
DEFAULT_OUTBOX_DIR = REPO_ROOT / "data" / "outbox"


class Secret:
    """A secret value that prints as ``'***'``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


# Placeholders that keep the embedded defaults working; nothing real may go out with them.
PLACEHOLDER_SUCCESS_URL = "https://example.org/thank-you"
PLACEHOLDER_EMAIL_ADDRESS = "treasurer@example.org"
PLACEHOLDER_EMAIL_FROM = f"League Treasurer <{PLACEHOLDER_EMAIL_ADDRESS}>"


@dataclass(frozen=True)
class Settings:
    database_url: str = field(default_factory=lambda: f"sqlite:///{DEFAULT_SQLITE_PATH}")
    stripe_api_key: Secret | None = None
    stripe_api_base: str | None = None
    # The signing secret of a webhook endpoint (``whsec_...``), for ``python -m core webhook-server``.
    stripe_webhook_secret: Secret | None = None
    payment_success_url: str = PLACEHOLDER_SUCCESS_URL
    email_backend: str = "file"
    email_outbox_dir: Path = DEFAULT_OUTBOX_DIR
    email_from: str = PLACEHOLDER_EMAIL_FROM
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: Secret | None = None
    smtp_starttls: bool = True
    smtp_ssl: bool = False  # implicit TLS (usually port 465) instead of STARTTLS
    gmail_credentials_file: Path | None = None
    gmail_delegated_user: str | None = None
    gmail_sends_per_minute: int = 50
    auth_mode: str = "demo"
    email_cooldown_days: int = 3

    @property
    def stripe_configured(self) -> bool:
        return bool(self.stripe_api_key)

    @property
    def stripe_live_mode(self) -> bool:
        """A live key: links minted with it take real money."""
        return is_live_stripe_key(self.stripe_api_key.reveal() if self.stripe_api_key else "")

    def success_url_problem(self) -> str | None:
        """``success_url_problem`` for the configured thank-you page and key."""
        return success_url_problem(self.payment_success_url, live=self.stripe_live_mode)

    def email_from_problem(self) -> str | None:
        """``email_from_problem`` for the configured sender and backend."""
        return email_from_problem(self.email_from, backend=self.email_backend)

    def database_url_for_display(self) -> str:
        """The database URL with its user name and password masked (see ``mask_url_credentials``)."""
        return mask_url_credentials(self.database_url)


# Everything between "scheme://" and the LAST "@" of a URL: its user name and password. A
# password with an unencoded "@" still ends at the last one, so masking up to there hides all
# of it (a URL parser stops at the first "@" and shows the rest as part of the host). A URL
# whose "//" is followed by "/" (an absolute SQLite path) has no credentials to mask.
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<credentials>[^/].*)@", re.DOTALL)
# Shorter pieces of a password are not looked for in a message: they would mangle it.
_SHORTEST_PASSWORD_PIECE = 3


def mask_url_credentials(url: str) -> str:
    """``url`` with everything between the scheme and the last ``@`` shown as ``***``."""
    match = _URL_CREDENTIALS.match(url)
    return f"{match['scheme']}***@{url[match.end():]}" if match else url


def without_database_secrets(text: str, database_url: str) -> str:
    """``text`` (a database driver's message) with the password of ``database_url`` masked.

    The password, as written and URL-decoded, and each of its pieces between ``@`` and ``:``
    (which a driver may repeat as part of a host name) become ``***``.
    """
    match = _URL_CREDENTIALS.match(database_url)
    password = match["credentials"].partition(":")[2] if match else ""
    if not password:
        return text
    written = {password, unquote(password)}
    pieces = {piece for whole in written for piece in re.split("[@:]", whole)}
    pieces = {piece for piece in pieces if len(piece) >= _SHORTEST_PASSWORD_PIECE} | written
    for piece in sorted(pieces, key=len, reverse=True):
        text = text.replace(piece, "***")
    return text


def address_of(email_from: str) -> str:
    """The address of a From value written as EMAIL_FROM is ("Name <address>" or "address")."""
    return parseaddr(email_from)[1].lower()


def email_from_problem(email_from: str, *, backend: str) -> str | None:
    """Why real email cannot go out From ``email_from`` through ``backend`` (``None``: it can).

    Only the ``file`` backend, which delivers nothing, may use the placeholder.
    """
    if backend == "file" or address_of(email_from) != PLACEHOLDER_EMAIL_ADDRESS:
        return None
    return (f"EMAIL_FROM is not set, so email would go out from the placeholder address "
            f"{PLACEHOLDER_EMAIL_ADDRESS}; set the address your league sends from in League settings "
            f"(EMAIL_BACKEND is {backend}).")


def success_url_problem(success_url: str, *, live: bool) -> str | None:
    """Why links minted now would send families to the wrong page after paying, if they would.

    Raises ``ConfigurationError`` for live links: real links are never minted with the
    placeholder. For test links it returns a warning to show, and minting goes on.
    """
    if success_url != PLACEHOLDER_SUCCESS_URL:
        return None
    problem = (f"No thank-you page is set (League settings, or PAYMENT_SUCCESS_URL), so after paying a family "
               f"lands on the placeholder {PLACEHOLDER_SUCCESS_URL}; set your league's thank-you page")
    if live:
        raise ConfigurationError(f"{problem} before creating live payment links.")
    return f"{problem} (fine for a test key)."


def is_live_stripe_key(api_key: str) -> bool:
    """Whether a Stripe secret or restricted key is a live-mode one (real money)."""
    return api_key.startswith(("sk_live_", "rk_live_"))


_SECRET_FIELDS = {"stripe_api_key", "stripe_webhook_secret", "smtp_password"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigurationError(ValueError):
    """A setting has a value the product cannot use."""


def _read_secrets_file(path: Path) -> Mapping[str, Any]:
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path} is not valid TOML: {exc}") from None


def _convert(name: str, raw: Any, default: Any) -> Any:
    if name in _SECRET_FIELDS:
        return Secret(str(raw)) if str(raw) else None
    if isinstance(default, bool):
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ConfigurationError(f"{name.upper()} must be true or false, not {raw!r}")
    if isinstance(default, int):
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ConfigurationError(f"{name.upper()} must be a whole number, not {raw!r}") from None
    if name.endswith(("_dir", "_file")):
        return Path(str(raw)) if str(raw) else None
    return str(raw) if str(raw) != "" else None


def load_settings(
    environ: Mapping[str, str] | None = None, secrets_file: Path | None = None
) -> Settings:
    """Read the settings now: environment first, then ``.streamlit/secrets.toml``, then defaults."""
    env = os.environ if environ is None else environ
    secrets = _read_secrets_file(SECRETS_FILE if secrets_file is None else secrets_file)
    defaults = Settings()
    values: dict[str, Any] = {}
    for f in fields(Settings):
        key = f.name.upper()
        if key in env:
            raw: Any = env[key]
        elif key in secrets and not isinstance(secrets[key], dict):
            raw = secrets[key]
        else:
            continue
        converted = _convert(f.name, raw, getattr(defaults, f.name))
        if converted is not None:
            values[f.name] = converted
    settings = Settings(**values)
    if settings.email_backend not in {"file", "smtp", "gmail"}:
        raise ConfigurationError(
            f"EMAIL_BACKEND must be file, smtp or gmail, not {settings.email_backend!r}"
        )
    success = urlsplit(settings.payment_success_url)
    if success.scheme not in {"https", "http"} or not success.netloc:
        raise ConfigurationError(
            f"PAYMENT_SUCCESS_URL must be a full web address like https://yourleague.org/thanks, "
            f"not {settings.payment_success_url!r}"
        )
    if settings.auth_mode not in {"demo", "oidc"}:
        raise ConfigurationError(f"AUTH_MODE must be demo or oidc, not {settings.auth_mode!r}")
    return settings


def settings_fingerprint(
    environ: Mapping[str, str] | None = None, secrets_file: Path | None = None
) -> tuple[object, ...]:
    """What ``load_settings`` would read, cheaply: the settings' environment variables and the
    secrets file's modification time. Equal fingerprints give equal settings, so a long-lived
    process (the dashboard) loads the settings again only when one of them changed."""
    env = os.environ if environ is None else environ
    path = SECRETS_FILE if secrets_file is None else secrets_file
    try:
        stamp: object = path.stat().st_mtime_ns
    except OSError:
        stamp = None
    names = sorted(f.name.upper() for f in fields(Settings))
    return (str(path), stamp, tuple((name, env.get(name)) for name in names))


def read_secrets_section(name: str, secrets_file: Path | None = None) -> Mapping[str, Any]:
    """A table of ``secrets.toml`` (e.g. ``[auth]`` or ``[roles]``), empty when absent."""
    section = _read_secrets_file(SECRETS_FILE if secrets_file is None else secrets_file).get(name)
    return section if isinstance(section, dict) else {}
