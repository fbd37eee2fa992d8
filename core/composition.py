"""The composition root's parts: the settings, the session factory and the adapters, built once.

Each driver (the command line, the dashboard) builds one ``Services`` and passes what a
workflow needs into ``core``; nothing below this module reads the settings or builds an
adapter itself. The Stripe gateway is built once and reused (its client is safe to share).
An email backend holds a live connection (SMTP) or a pacer (Gmail), so each send run opens
its own through ``email_backend()`` and closes it when the run ends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.db import make_engine, session_factory
from core.email.backends import EmailBackend
from core.errors import EmailDeliveryError, InvalidInput
from core.payments.gateway import PaymentGateway, ProviderEvent, StripeNotConfigured
from core.settings import Settings


def make_email_backend(settings: Settings) -> EmailBackend:
    """The backend named by ``EMAIL_BACKEND``: ``file`` (default), ``smtp`` or ``gmail``.

    A backend that delivers refuses the placeholder ``EMAIL_FROM``: families would get email
    from (and reply to) an address nobody reads.
    """
    problem = settings.email_from_problem()
    if problem:
        raise EmailDeliveryError(problem)
    if settings.email_backend == "smtp":
        from core.email.backends.smtp import SmtpBackend

        if not settings.smtp_host:
            raise EmailDeliveryError("EMAIL_BACKEND is smtp but SMTP_HOST is not set.")
        return SmtpBackend(
            settings.smtp_host,
            settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls and not settings.smtp_ssl,
            use_ssl=settings.smtp_ssl,
        )
    if settings.email_backend == "gmail":
        from core.email.backends.gmail import GmailBackend  # the Gmail client is imported only when used

        return GmailBackend.from_settings(settings)
    from core.email.backends.file import FileBackend

    return FileBackend(settings.email_outbox_dir)


def make_payment_gateway(settings: Settings, *, action: str = "talk to Stripe") -> PaymentGateway:
    """The Stripe gateway for the settings; ``StripeNotConfigured`` (naming ``action``) without a key."""
    if not settings.stripe_configured:
        raise StripeNotConfigured(action)
    from core.payments.stripe_gateway import StripeGateway  # the SDK is imported only when used

    return StripeGateway.from_settings(settings)


def make_webhook_verifier(settings: Settings) -> Callable[[bytes, str | None], ProviderEvent]:
    """What verifies a Stripe webhook request with ``STRIPE_WEBHOOK_SECRET`` and returns its event
    (``WebhookRejected`` otherwise); ``InvalidInput`` when the secret is not configured."""
    if not settings.stripe_webhook_secret:
        raise InvalidInput("STRIPE_WEBHOOK_SECRET is not set: add the webhook endpoint's signing secret "
                           "(whsec_...) to the environment or .streamlit/secrets.toml.")
    from core.payments.stripe_gateway import verify_webhook  # the SDK is imported only when used

    secret = settings.stripe_webhook_secret.reveal()
    return lambda payload, signature: verify_webhook(payload, signature, secret)


@dataclass
class Services:
    """What a driver builds once: settings, the database's session factory, the adapters."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    _gateway: PaymentGateway | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def stripe_configured(self) -> bool:
        return self.settings.stripe_configured

    def payment_gateway(self, *, action: str = "talk to Stripe") -> PaymentGateway:
        """The one Stripe gateway; ``StripeNotConfigured`` naming ``action`` without a key."""
        with self._lock:
            if self._gateway is None:
                self._gateway = make_payment_gateway(self.settings, action=action)
            return self._gateway

    def payment_gateway_if_configured(self, *, action: str = "talk to Stripe") -> PaymentGateway | None:
        """The one Stripe gateway, or ``None`` when Stripe is not configured (nothing to ask)."""
        return self.payment_gateway(action=action) if self.stripe_configured else None

    @contextmanager
    def email_backend(self, config: Settings | None = None) -> Iterator[EmailBackend]:
        """A backend for one send run, closed when the block ends. ``config``: the settings a
        league sends with (``core.access.league_settings.settings_for_league``), else the server's."""
        backend = make_email_backend(config or self.settings)
        try:
            yield backend
        finally:
            backend.close()

    def email_backend_problem(self, config: Settings | None = None) -> str | None:
        """Why email cannot go out now (the backend refuses to be built), or ``None``.

        Builds the backend and closes it: nothing is sent and no connection is kept.
        """
        try:
            with self.email_backend(config):
                return None
        except EmailDeliveryError as exc:
            return str(exc)

    def close(self) -> None:
        self.engine.dispose()


def build_services(settings: Settings, *, engine: Engine | None = None) -> Services:
    """The services for ``settings``: an engine on ``DATABASE_URL`` (or ``engine``) and its sessions."""
    engine = engine or make_engine(settings.database_url)
    return Services(settings=settings, engine=engine, sessions=session_factory(engine))
