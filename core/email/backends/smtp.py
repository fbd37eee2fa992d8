"""The ``smtp`` backend: one kept-open connection to an SMTP server (TLS, STARTTLS or plain)."""

from __future__ import annotations

import contextlib
import smtplib
import ssl
from email.message import EmailMessage

from core.email.backends import DeliveryUncertain
from core.errors import EmailDeliveryError
from core.settings import Secret


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
        username: str | None = None,
        password: Secret | None = None,
        starttls: bool = True,
        use_ssl: bool = False,
        timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.username, self._password = username, password
        self.starttls, self.use_ssl = starttls, use_ssl
        self.timeout = timeout
        self._ssl_context = ssl_context
        self._connection: smtplib.SMTP | None = None

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

    def check(self) -> str:
        """Connect, start TLS and log in as a send would, then say goodbye (QUIT): nothing is sent."""
        self._open()
        self.close()
        security = "implicit TLS" if self.use_ssl else "STARTTLS" if self.starttls else "no encryption"
        login = f"logged in as {self.username}" if self.username else "no login configured"
        return f"Connected to the mail server {self.host}:{self.port} ({security}) and {login}; nothing was sent."

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self._connection.quit()
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
            with contextlib.suppress(OSError):
                self._connection.close()
        self._connection = None


def _refusal(recipients: dict[str, tuple[int, bytes]]) -> str:
    return "; ".join(f"{address}: {code} {_text(reason)}" for address, (code, reason) in recipients.items())


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
