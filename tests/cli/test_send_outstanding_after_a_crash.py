"""``send-outstanding --all --yes`` killed at random points and run again, against a local SMTP server.

What a treasurer or a cron job does after a crash is run the same command again. Whatever point
the sending process was killed at, the reruns must never give a family a second copy, and when
they are done every family that was owed an email has one or is listed, with its Message-ID,
for the admin's decision; the exit status says which. The admin's decisions then finish the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from tests.factories import make_link, make_parent, make_player, make_product, make_tenant

FAMILIES = 50  # the kills land in a run that has messages left to send (a dozen go out between them)
# Per database (the suite kills 12 sending processes): every other kill as the server takes a
# message in (or just after), the others at a random instant in turn in each third of 0.2-1.6 s
# after the start, so they spread over starting up, syncing, queueing and between messages
# instead of bunching by chance. Twelve kills a database only hit the same kinds again.
KILLS = 6
INSTANTS = (0.2, 1.6)
ROOT = Path(__file__).resolve().parents[2]
AWAITING = re.compile(r"<(?P<to>[^<>]+)>: message (?P<message>\d+), Message-ID (?P<header><[^<>]+>)$", re.M)
DECIDE = re.compile(r"--resume (?P<campaign>\d+) --was-sent MESSAGE")


class RecordingServer:
    """An SMTP server on 127.0.0.1 that records every message it accepted (and is a little slow)."""

    def __init__(self) -> None:
        self.accepted: list[str] = []  # the recipient of each accepted message, in order
        self.receiving = threading.Event()  # set while a message is being received
        self.lock = threading.Lock()
        self.delay = 0.05  # how long taking a message in lasts: a window for the kills
        with socket.socket() as probe:  # a free port (the controller checks the one it is given)
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.controller = Controller(self, hostname="127.0.0.1", port=port)

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]  # noqa: N802
        self.receiving.set()
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.accepted.append(message["To"].addresses[0].addr_spec)
        await asyncio.sleep(self.delay)
        return "250 Message accepted"

    def copies(self) -> Counter[str]:
        with self.lock:
            return Counter(self.accepted)

    def __enter__(self) -> RecordingServer:
        self.controller.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.controller.stop()


@pytest.fixture
def smtp_server():  # type: ignore[no-untyped-def]
    with RecordingServer() as server:
        yield server


@pytest.fixture
def owing_families(session) -> list[str]:  # type: ignore[no-untyped-def]
    tenant = make_tenant(session, slug="westside")
    product = make_product(session, tenant, "Registration", amount_cents=15000)
    addresses = []
    for n in range(FAMILIES):
        parent = make_parent(session, tenant, f"Family {n:02d}", f"family{n:02d}@example.org")
        make_link(session, tenant, make_player(session, tenant, parent), product)
        addresses.append(parent.email)
    session.commit()
    return addresses


def command_env(database_url: str, server: RecordingServer) -> dict[str, str]:
    env = dict(os.environ)
    env.update(DATABASE_URL=database_url, EMAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1",
               SMTP_PORT=str(server.controller.port), SMTP_STARTTLS="false", STRIPE_API_KEY="",
               EMAIL_FROM="Westside Treasurer <treasurer@westside.example>")
    return env


def send_outstanding(env: dict[str, str], *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "core", "send-outstanding", *extra], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def test_reruns_after_kills_at_random_points_email_each_family_once_or_ask_the_admin(
    database_url, owing_families, smtp_server
):
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    env = command_env(database_url, smtp_server)
    kills = 0
    for attempt in range(KILLS * 3):
        if kills == KILLS:
            break
        smtp_server.receiving.clear()
        process = send_outstanding(env, "--all", "--yes")
        if attempt % 2:  # anywhere: starting up, syncing, queueing, between messages, in a message
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=random_instant(rng, attempt // 2 % 3))
        elif receiving(smtp_server, process):  # as the server takes a message in, or just after
            time.sleep(rng.uniform(0, 0.08))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.communicate()
        kills += process.returncode == -signal.SIGKILL
        assert max(smtp_server.copies().values(), default=0) <= 1, f"a family got two copies (seed {seed})"
    assert kills == KILLS, f"only {kills} kills landed (seed {seed})"
    smtp_server.delay = 0  # no more kills: the rest need no window

    code, out, err = finish(send_outstanding(env, "--all", "--yes"))  # the same command, left to finish
    awaiting = {m["to"]: (m["message"], m["header"]) for m in AWAITING.finditer(err)}
    copies = smtp_server.copies()
    assert max(copies.values()) == 1, f"a family got two copies (seed {seed})"
    assert set(owing_families) <= set(copies) | set(awaiting), f"a family was left out (seed {seed})\n{out}\n{err}"
    assert code == (1 if awaiting else 0), f"the exit status does not say what awaits (seed {seed})\n{err}"

    # The admin looks for each Message-ID in the sent mail and decides; nothing else is sent again.
    for campaign_id, messages in awaiting_by_campaign(err).items():
        decisions = []
        for to, message in messages:
            decisions += ["--was-sent" if copies[to] else "--send-again", message]
        code, _, decided_err = finish(send_outstanding(env, "--resume", campaign_id, *decisions))
        assert code == 0 and not AWAITING.search(decided_err), decided_err
    code, out, err = finish(send_outstanding(env, "--all", "--yes"))
    assert code == 0 and "Nothing to send." in out, err
    assert smtp_server.copies() == Counter(owing_families), f"(seed {seed})"


def random_instant(rng: random.Random, third: int) -> float:
    """A random instant in the given third of ``INSTANTS``."""
    start, end = INSTANTS
    width = (end - start) / 3
    return rng.uniform(start + third * width, start + (third + 1) * width)


def receiving(server: RecordingServer, process: subprocess.Popen[str]) -> bool:
    """Wait until the server is taking a message in; False if the process ended first."""
    while not server.receiving.wait(timeout=0.02):
        if process.poll() is not None:
            return False
    return True


def awaiting_by_campaign(err: str) -> dict[str, list[tuple[str, str]]]:
    """The messages listed for the admin's decision, by campaign (each list ends with its resume line)."""
    found: dict[str, list[tuple[str, str]]] = {}
    listed: list[tuple[str, str]] = []
    for line in err.splitlines():
        if match := AWAITING.search(line):
            listed.append((match["to"], match["message"]))
        elif match := DECIDE.search(line):
            found[match["campaign"]], listed = listed, []
    return found
