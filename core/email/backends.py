"""Where messages go: one small interface and the backends behind it.

A backend takes the exact ``EmailMessage`` and returns the provider's id for it. It raises
``EmailDeliveryError`` when the provider refused or failed the message (nothing was delivered),
and ``DeliveryUncertain`` when the message may or may not have been delivered (the connection
dropped mid-send): the outbox then leaves the message as interrupted instead of retrying it.
"""

from __future__ import annotations

import logging
import os
import smtplib
import ssl
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Optional, Protocol, runtime_checkable

from core.errors import EmailDeliveryError
from core.models import utcnow
from core.settings import Secret, Settings

log = logging.getLogger(__name__)


class DeliveryUncertain(EmailDeliveryError):
    """The provider may have delivered the message; sending it again could deliver a second copy."""


@runtime_checkable
class EmailBackend(Protocol):
    """Delivers one message; returns the provider's id for it."""

    # How many messages the outbox may hand to this backend at once.
    parallel_sends: int

    def send(self, message: EmailMessage) -> str: ...

    def close(self) -> None: ...


class FileBackend:
    """Writes each message as an ``.eml`` file in ``directory`` (the default backend: no credentials).

    Every send is a new file, so a message sent twice shows up as two files.
    """

    parallel_sends = 1

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def send(self, message: EmailMessage) -> str:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            name = f"{utcnow():%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.eml"
            partial = self.directory / f".{name}.partial"
            with partial.open("wb") as handle:
                handle.write(message.as_bytes())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, self.directory / name)
        except OSError as exc:
            raise EmailDeliveryError(f"Could not write to the outbox folder {self.directory}: {exc}") from None
        return name

    def close(self) -> None:
        return None


class SmtpBackend:
    """Sends through an SMTP server: implicit TLS (``ssl``), STARTTLS, or plain, with optional login.

    One connection is kept open across messages and checked with NOOP before it is reused.
    """

    parallel_sends = 1

    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: Optional[str] = None,
        password: Optional[Secret] = None,
        starttls: bool = True,
        use_ssl: bool = False,
        timeout: float = 30.0,
        ssl_context: Optional[ssl.SSLContext] = None,
    ) -> None:
        self.host, self.port = host, port
        self.username, self._password = username, password
        self.starttls, self.use_ssl = starttls, use_ssl
        self.timeout = timeout
        self._ssl_context = ssl_context
        self._connection: Optional[smtplib.SMTP] = None

    def send(self, message: EmailMessage) -> str:
        connection = self._open()
        try:
            connection.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            raise EmailDeliveryError(f"The mail server refused the recipient: {_refusal(exc.recipients)}") from None
        except smtplib.SMTPSenderRefused as exc:
            raise EmailDeliveryError(f"The mail server refused the sender: {exc.smtp_code} {_text(exc.smtp_error)}") from None
        except smtplib.SMTPResponseException as exc:
            raise EmailDeliveryError(
                f"The mail server refused the message: {exc.smtp_code} {_text(exc.smtp_error)}",
                retryable=400 <= exc.smtp_code < 500,
            ) from None
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            raise DeliveryUncertain(f"The connection to the mail server broke while sending: {exc}") from None
        return str(message["Message-ID"])

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.quit()
            except (smtplib.SMTPException, OSError):
                pass
            self._connection = None

    def _open(self) -> smtplib.SMTP:
        if self._connection is not None:
            try:
                if self._connection.noop()[0] == 250:
                    return self._connection
            except (smtplib.SMTPException, OSError):
                pass
            self._drop()
        try:
            context = self._ssl_context or ssl.create_default_context()
            if self.use_ssl:
                connection: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=context
                )
            else:
                connection = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
                if self.starttls:
                    connection.starttls(context=context)
            if self.username:
                connection.login(self.username, self._password.reveal() if self._password else "")
        except smtplib.SMTPAuthenticationError as exc:
            raise EmailDeliveryError(
                f"The mail server did not accept the SMTP login for {self.username}: {exc.smtp_code}"
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise EmailDeliveryError(
                f"Could not connect to the mail server {self.host}:{self.port}: {exc}", retryable=True
            ) from None
        self._connection = connection
        return connection

    def _drop(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except OSError:
                pass
        self._connection = None


def make_backend(settings: Settings) -> EmailBackend:
    """The backend named by ``EMAIL_BACKEND``: ``file`` (default), ``smtp`` or ``gmail``.

    A backend that delivers refuses the placeholder ``EMAIL_FROM``: families would get email
    from (and reply to) an address nobody reads.
    """
    problem = settings.email_from_problem()
    if problem:
        raise EmailDeliveryError(problem)
    if settings.email_backend == "smtp":
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
        from core.email.gmail import GmailBackend  # the Gmail client is imported only when used

        return GmailBackend.from_settings(settings)
    return FileBackend(settings.email_outbox_dir)


def _refusal(recipients: dict) -> str:  # type: ignore[type-arg]
    return "; ".join(f"{address}: {code} {_text(reason)}" for address, (code, reason) in recipients.items())


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
