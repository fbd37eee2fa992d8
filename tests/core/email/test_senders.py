"""Whether the run behind a claim is alive: an advisory lock on PostgreSQL, the process on SQLite."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from core.email.senders import describe_sender, live_sender, sender_alive
from tests.core.email.conftest import ANOTHER_HOSTS_RUN, dead_process_token


def test_a_run_is_alive_while_it_runs_and_dead_once_it_ended(engine, session):
    with live_sender(engine) as token:
        assert sender_alive(session, token) is True
    alive_after = sender_alive(session, token)
    # PostgreSQL: the lock is gone with the run. SQLite: the process lives on (this test), so the
    # outbox lets go of the run's campaigns itself when the run ends.
    assert alive_after is (engine.dialect.name != "postgresql")


def test_a_killed_process_on_this_host_is_dead_at_once(session):
    assert sender_alive(session, dead_process_token()) is False


def test_an_exited_process_not_yet_reaped_is_dead(session):
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        stat = Path(f"/proc/{process.pid}/stat")
        while stat.read_text().rsplit(")", 1)[-1].split()[0] != "Z":
            pass
        assert sender_alive(session, f"pid:{socket.gethostname()}:{process.pid}:") is False
    finally:
        process.wait()


def test_a_process_id_used_again_by_another_process_is_not_the_run(session):
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as process:
        try:
            assert sender_alive(session, f"pid:{socket.gethostname()}:{process.pid}:1") is False
        finally:
            process.kill()


def test_a_run_nobody_here_can_check_is_neither_alive_nor_dead(session):
    assert sender_alive(session, ANOTHER_HOSTS_RUN) is None
    assert sender_alive(session, None) is None
    assert describe_sender(ANOTHER_HOSTS_RUN) == "process 4242 on another-host.example"
