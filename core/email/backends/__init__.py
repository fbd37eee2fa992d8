"""Where messages go: the port (one small interface). Each backend is its own module:
``file`` (the default), ``smtp`` and ``gmail``; the composition root picks one from the settings.

A backend takes the exact ``EmailMessage`` and returns the provider's id for it. It raises
``EmailDeliveryError`` when the provider refused or failed the message (nothing was delivered),
and ``DeliveryUncertain`` when the message may or may not have been delivered (the connection
dropped mid-send): the outbox then leaves the message as interrupted instead of retrying it.

``check`` proves the backend can send without sending anything: it connects and signs in
(SMTP, Gmail) or checks the outbox folder is writable (file), and says what it checked.

A backend that can search what it sent (Gmail) also implements ``SentMailSearch``: the outbox
asks it whether an interrupted message went out. The others (SMTP, file) cannot say, and the
admin decides.
"""

from __future__ import annotations

from email.message import EmailMessage
from typing import Protocol, runtime_checkable

from core.errors import EmailDeliveryError


class DeliveryUncertain(EmailDeliveryError):
    """The provider may have delivered the message; sending it again could deliver a second copy."""


@runtime_checkable
class EmailBackend(Protocol):
    """Delivers one message; returns the provider's id for it."""

    # How many messages the outbox may hand to this backend at once.
    parallel_sends: int

    def send(self, message: EmailMessage) -> str: ...

    def check(self) -> str:
        """Connect and sign in without sending; what was checked, in one sentence. Raises
        ``EmailDeliveryError`` saying what failed."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class SentMailSearch(Protocol):
    """A backend that can tell whether a message went out, by its own Message-ID."""

    def find_sent(self, message_id: str) -> str | None:
        """The provider's id of the sent message with this Message-ID, or ``None`` if none was sent.

        Raises ``EmailDeliveryError`` when it cannot tell (no access, the provider failing).
        """
        ...
