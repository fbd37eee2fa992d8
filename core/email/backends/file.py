"""The ``file`` backend: each message an ``.eml`` file in the outbox folder (no credentials)."""

from __future__ import annotations

import os
import uuid
from email.message import EmailMessage
from pathlib import Path

from core.errors import EmailDeliveryError
from core.models import utcnow


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

    def check(self) -> str:
        """The outbox folder exists (or can be made) and takes a file; nothing stays in it."""
        probe = self.directory / f".check-{uuid.uuid4().hex[:8]}.partial"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise EmailDeliveryError(f"The outbox folder {self.directory} cannot be written to: {exc}") from None
        return (f"The outbox folder {self.directory} can be written to. The file backend delivers nothing: "
                "each email is saved there as an .eml file.")

    def close(self) -> None:
        return None
