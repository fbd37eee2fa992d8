"""Who is sending: every run that sends holds a sender token, and anyone can tell whether the
run behind a token is still alive.

A message claimed for sending records its run's token (``email_messages.claimed_by``), and a
campaign the run that queued or resumed it (``email_campaigns.sender``). When that run dies
(killed, crashed, its machine restarted) its claims must not be held as "being sent" until a
timeout: the outbox asks ``sender_alive`` and marks them interrupted at once.

- PostgreSQL: the run holds a session-level advisory lock on a connection of its own for as
  long as it runs. The lock dies with that connection, whatever kills the process, so
  ``pg_locks`` says at once whether the run is alive, from any machine.
- SQLite (one machine): the token records the host, the process id and the process's start
  time; a run on this host whose process is gone (or is another process with the same id) is
  dead. A run on another host cannot be checked (``None``): its claims fall back to the
  outbox's stale-claim limit.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

# The first key of the two-key advisory locks held by send runs (any fixed number; "EMSR").
ADVISORY_NAMESPACE = 0x454D5352 & 0x7FFFFFFF


@contextmanager
def live_sender(engine: Engine) -> Iterator[str]:
    """A token for one send run, alive for as long as the block runs.

    On PostgreSQL a connection of the engine's pool is held for the whole block, with the
    run's advisory lock on it; it is unlocked and returned when the block ends.
    """
    if engine.dialect.name != "postgresql":
        yield _process_token()
        return
    key = secrets.randbelow(2**31 - 1) + 1
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:namespace, :key)"),
                           {"namespace": ADVISORY_NAMESPACE, "key": key})
        connection.commit()
        try:
            yield f"pg:{key}:{socket.gethostname()}:{os.getpid()}"
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:namespace, :key)"),
                               {"namespace": ADVISORY_NAMESPACE, "key": key})
            connection.commit()


def sender_alive(connection: Connection | Session, token: str | None) -> bool | None:
    """Whether the run behind ``token`` is still alive; ``None`` when nobody can tell (no token,
    or a process on another machine). Reads the server's lock table, no league's data."""
    if not token:
        return None
    kind, _, rest = token.partition(":")
    if kind == "pg":
        key = rest.split(":", 1)[0]
        dialect = connection.dialect if isinstance(connection, Connection) else connection.get_bind().dialect
        if dialect.name != "postgresql" or not key.isdigit():
            return None
        return bool(connection.scalar(
            text(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND classid = :namespace AND objid = :key AND objsubid = 2)"
            ),
            {"namespace": ADVISORY_NAMESPACE, "key": int(key)},
        ))
    if kind == "pid":
        host, pid, started = (rest.split(":") + ["", "", ""])[:3]  # and the run's own part
        if host != socket.gethostname() or not pid.isdigit():
            return None
        return _process_running(int(pid), started)
    return None


def describe_sender(token: str | None) -> str:
    """``"process 1234 on host-a"``, for a person reading a listing."""
    parts = (token or "").split(":")
    if len(parts) >= 4 and parts[0] == "pg":
        return f"process {parts[3]} on {parts[2]}"
    if len(parts) >= 3 and parts[0] == "pid":
        return f"process {parts[2]} on {parts[1]}"
    return "an earlier run"


def _process_token() -> str:
    # The last part tells runs of one process apart (a dashboard server sends for many sessions).
    pid = os.getpid()
    return f"pid:{socket.gethostname()}:{pid}:{_start_time(pid) or ''}:{secrets.token_hex(4)}"


def _process_running(pid: int, started: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    state, now_started = _stat(pid)
    if state == "Z":  # exited, not yet reaped by its parent
        return False
    # The same id with another start time is another process: the run is gone.
    return not (started and now_started and started != now_started)


def _start_time(pid: int) -> str | None:
    return _stat(pid)[1]


def _stat(pid: int) -> tuple[str | None, str | None]:
    """The process's state and start time since boot (Linux ``/proc``; ``None`` elsewhere).

    The start time tells a reused process id apart from the run that had it.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None, None
    # Fields 3 and 22; the command name (field 2) is in parentheses and may hold spaces.
    fields = stat.rsplit(")", 1)[-1].split()
    return (fields[0] if fields else None), (fields[19] if len(fields) > 19 else None)
