"""The Gmail API backend: the only module that imports the Google API client.

Sends with ``users().messages().send(userId="me", body={"raw": ...})`` as a service account
with domain-wide delegation (``GMAIL_DELEGATED_USER``) or with an OAuth token file.

Rate-limit answers (429, 403 ``userRateLimitExceeded``/``rateLimitExceeded``) are refusals:
nothing was sent, so they are retried with exponential back-off (honouring ``Retry-After`` up
to ``max_delay``; a longer wait stops the run with the message still queued), and
``dailyLimitExceeded`` stops the run cleanly (``EmailDeliveryError`` with ``quota_exhausted``).
A server error (5xx) or a connection that breaks after the request went out is different: Gmail
may have delivered the message already, so it is never retried here (``DeliveryUncertain``:
the outbox leaves it interrupted for the admin to decide). Sends are paced under the per-user
rate ``GMAIL_SENDS_PER_MINUTE``, shared by all threads using one backend.

Whether an interrupted message went out (``find_sent``, the outbox's ``SentMailSearch``) is
answered from the account's sent mail, searched for the message's own Message-ID
(``rfc822msgid:``). That needs read access (``gmail.readonly``) besides ``gmail.send``; without
it the search cannot tell, and the admin decides as for SMTP.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httplib2
from google.auth.exceptions import GoogleAuthError
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from googleapiclient.http import DEFAULT_HTTP_TIMEOUT_SEC

from core.email.backends import DeliveryUncertain
from core.email.backends.pacing import Pacer
from core.errors import EmailDeliveryError
from core.settings import Settings

log = logging.getLogger(__name__)

SEND_SCOPE = "https://www.googleapis.com/auth/gmail.send"
READ_SCOPE = "https://www.googleapis.com/auth/gmail.readonly"
RATE_LIMIT_REASONS = frozenset({"userRateLimitExceeded", "rateLimitExceeded"})
DAILY_LIMIT_REASONS = frozenset({"dailyLimitExceeded"})
# A 403 saying the credentials lack the scope asked for: they are valid, only narrower.
SCOPE_REASONS = frozenset({"insufficientPermissions", "ACCESS_TOKEN_SCOPE_INSUFFICIENT"})

# Builds one Gmail API service object; called once per sending thread (the HTTP client the
# service uses is not thread-safe). Tests pass one built on googleapiclient's HttpMockSequence.
ServiceFactory = Callable[[], Any]


class GmailBackend:
    """Sends through the Gmail API, paced, retrying what Google says to retry."""

    def __init__(
        self,
        service_factory: ServiceFactory,
        *,
        sends_per_minute: float,
        parallel_sends: int = 4,
        burst: int = 2,
        max_attempts: int = 6,
        base_delay: float = 1.0,
        max_delay: float = 64.0,
        sleep: Callable[[float], None] = time.sleep,
        pacer: Pacer | None = None,
        search_service_factory: ServiceFactory | None = None,
    ) -> None:
        self._service_factory = service_factory
        # Searching the sent mail needs read access: its own credentials (default: the sending ones).
        self._search_service_factory = search_service_factory or service_factory
        self._local = threading.local()
        self.parallel_sends = parallel_sends
        self.max_attempts = max_attempts
        self.base_delay, self.max_delay = base_delay, max_delay
        self._sleep = sleep
        # A burst of 2 lets a thread that fell behind reclaim a missed slot, so the average
        # stays at the rate without ever running more than one send ahead of it.
        self.pacer = pacer or Pacer(sends_per_minute, burst=burst, sleep=sleep)

    @classmethod
    def from_settings(cls, settings: Settings) -> GmailBackend:
        """The backend for ``GMAIL_CREDENTIALS_FILE`` (service account or OAuth token) and the pace."""
        path = settings.gmail_credentials_file
        if path is None:
            raise EmailDeliveryError("EMAIL_BACKEND is gmail but GMAIL_CREDENTIALS_FILE is not set.")
        credentials = load_credentials(path, delegated_user=settings.gmail_delegated_user)

        def search_service() -> Any:
            reader = load_credentials(path, delegated_user=settings.gmail_delegated_user, scopes=[READ_SCOPE])
            return build("gmail", "v1", credentials=reader, cache_discovery=False)

        return cls(
            lambda: build("gmail", "v1", credentials=credentials, cache_discovery=False),
            sends_per_minute=settings.gmail_sends_per_minute,
            search_service_factory=search_service,
        )

    @property
    def longest_send_seconds(self) -> float:
        """The longest one ``send`` can take: every attempt timing out, every back-off at its longest.

        The outbox's ``STALE_CLAIM_AFTER`` must stay above this, so a slow send is never taken
        for an abandoned one.
        """
        waiting_for_a_slot = self.pacer.interval * self.parallel_sends
        attempts = self.max_attempts * (DEFAULT_HTTP_TIMEOUT_SEC + waiting_for_a_slot)
        return attempts + (self.max_attempts - 1) * (self.max_delay + self.base_delay)

    def send(self, message: EmailMessage) -> str:
        raw = base64.urlsafe_b64encode(message.as_bytes()).decode("ascii")
        request_body = {"raw": raw}
        for attempt in range(1, self.max_attempts + 1):
            self.pacer.wait()
            try:
                response = self._service().users().messages().send(userId="me", body=request_body).execute()
                return str(response["id"])
            except HttpError as exc:
                delay = self._retry_delay(exc, attempt)
            except (ConnectionRefusedError, httplib2.ServerNotFoundError) as exc:
                # Nothing reached Gmail: safe to try again.
                if attempt == self.max_attempts:
                    raise EmailDeliveryError(f"Could not reach Gmail: {exc}", retryable=True) from None
                delay = self._backoff(attempt)
            except (httplib2.HttpLib2Error, OSError) as exc:
                # The request may have reached Gmail (a timeout, a reset connection): do not send again.
                raise DeliveryUncertain(f"The connection to Gmail broke; the message may have been sent: {exc}") from None
            log.info("Gmail asked to slow down (attempt %d); retrying in %.1fs", attempt, delay)
            self.pacer.hold_off(delay)
        raise EmailDeliveryError(  # pragma: no cover - the loop returns or raises
            "Gmail kept refusing the message", retryable=True
        )

    def check(self) -> str:
        """Sign in and ask Gmail for the mailbox's profile (``users.getProfile``): nothing is sent.

        Credentials that may only send (the ``gmail.send`` scope) are refused the profile with
        403 insufficient permissions: Google signed them in to say so, which is what is checked.
        """
        try:
            profile = self._service().users().getProfile(userId="me").execute()
        except HttpError as exc:
            status = int(exc.resp.status)
            reasons, message = _error_reasons(exc)
            if status == 403 and reasons & SCOPE_REASONS:
                return "Signed in to Gmail (these credentials may send but not read the mailbox); nothing was sent."
            raise EmailDeliveryError(f"Gmail did not accept the credentials ({status}): {message}") from None
        except GoogleAuthError as exc:
            raise EmailDeliveryError(f"Could not sign in to Gmail: {exc}") from None
        except (httplib2.HttpLib2Error, OSError) as exc:
            raise EmailDeliveryError(f"Could not reach Gmail: {exc}", retryable=True) from None
        address = profile.get("emailAddress") if isinstance(profile, dict) else None
        return f"Signed in to Gmail as {address or 'the configured mailbox'}; nothing was sent."

    def find_sent(self, message_id: str) -> str | None:
        """The Gmail id of the sent message whose Message-ID header is ``message_id``; ``None`` if
        the sent mail has none. ``EmailDeliveryError`` when Gmail cannot be asked (no read access,
        an error): then nobody can tell."""
        query = f"rfc822msgid:{message_id.strip().strip('<>')}"
        try:
            service = self._search_service()
            response = service.users().messages().list(
                userId="me", q=query, labelIds=["SENT"], maxResults=1, includeSpamTrash=True
            ).execute()
        except HttpError as exc:
            _, reason = _error_reasons(exc)
            raise EmailDeliveryError(f"Could not search Gmail's sent mail ({exc.resp.status}): {reason}") from None
        except (httplib2.HttpLib2Error, OSError) as exc:
            raise EmailDeliveryError(f"Could not search Gmail's sent mail: {exc}") from None
        found = response.get("messages") or []
        return str(found[0]["id"]) if found else None

    def close(self) -> None:
        self._local = threading.local()

    def _search_service(self) -> Any:
        service = getattr(self._local, "search_service", None)
        if service is None:
            try:
                service = self._search_service_factory()
            except GoogleAuthError as exc:
                raise EmailDeliveryError(f"Could not sign in to Gmail to search the sent mail: {exc}") from None
            self._local.search_service = service
        return service

    def _service(self) -> Any:
        service = getattr(self._local, "service", None)
        if service is None:
            try:
                service = self._service_factory()
            except GoogleAuthError as exc:
                raise EmailDeliveryError(f"Could not sign in to Gmail: {exc}") from None
            self._local.service = service
        return service

    def _retry_delay(self, exc: HttpError, attempt: int) -> float:
        """Seconds to wait before retrying ``exc``; raises when it must not be retried."""
        status = int(exc.resp.status)
        reasons, message = _error_reasons(exc)
        if reasons & DAILY_LIMIT_REASONS:
            raise EmailDeliveryError(
                f"Gmail's daily sending limit is reached: {message}", quota_exhausted=True
            ) from None
        if status >= 500:
            # The request reached Gmail and failed there: it may have sent the message first.
            raise DeliveryUncertain(
                f"Gmail answered {status} ({message}); the message may have been sent"
            ) from None
        retryable = status == 429 or (status == 403 and bool(reasons & RATE_LIMIT_REASONS))
        if not retryable:
            raise EmailDeliveryError(f"Gmail refused the message ({status}): {message}") from None
        if attempt == self.max_attempts:
            # Still rate-limited after every back-off: stop the run (the message stays queued)
            # rather than fail every remaining message the same slow way.
            raise EmailDeliveryError(
                f"Gmail still refused the message after {attempt} attempts ({status}): {message}",
                retryable=True,
                quota_exhausted=status in (429, 403),
            ) from None
        retry_after = _retry_after_seconds(exc)
        if retry_after is not None and retry_after > self.max_delay:
            # Waiting that long would hold this message's claim for too long: stop the run
            # (nothing was sent, the message stays queued) and let a later run carry on.
            raise EmailDeliveryError(
                f"Gmail asked to wait {retry_after:.0f} s before sending more ({status}): {message}",
                retryable=True,
                quota_exhausted=True,
            ) from None
        return retry_after if retry_after is not None else self._backoff(attempt)

    def _backoff(self, attempt: int) -> float:
        # Exponential back-off with jitter, as Google's guidance for the Gmail API asks.
        return min(self.max_delay, self.base_delay * 2 ** (attempt - 1)) + random.uniform(0, self.base_delay)


def load_credentials(path: Path, *, delegated_user: str | None, scopes: list[str] | None = None) -> Any:
    """Credentials from a service-account key (with ``delegated_user``) or an OAuth token file,
    for ``scopes`` (default: sending only)."""
    scopes = scopes or [SEND_SCOPE]
    try:
        info = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EmailDeliveryError(f"Could not read GMAIL_CREDENTIALS_FILE {path}: {exc}") from None
    try:
        if info.get("type") == "service_account":
            if not delegated_user:
                raise EmailDeliveryError(
                    "A service-account key needs GMAIL_DELEGATED_USER (the mailbox to send as)."
                )
            account = service_account.Credentials.from_service_account_info(info, scopes=scopes)
            return account.with_subject(delegated_user)
        return user_credentials.Credentials.from_authorized_user_info(info, scopes=scopes)
    except (GoogleAuthError, ValueError) as exc:
        raise EmailDeliveryError(f"GMAIL_CREDENTIALS_FILE {path} is not usable: {exc}") from None


def _error_reasons(exc: HttpError) -> tuple[frozenset[str], str]:
    try:
        error = json.loads(exc.content.decode("utf-8"))["error"]
    except (ValueError, KeyError, TypeError, AttributeError):
        return frozenset(), str(exc.reason or exc.resp.status)
    reasons = frozenset(str(detail.get("reason", "")) for detail in error.get("errors", []) if isinstance(detail, dict))
    return reasons, str(error.get("message") or exc.reason or exc.resp.status)


def _retry_after_seconds(exc: HttpError) -> float | None:
    value = exc.resp.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
