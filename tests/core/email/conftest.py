"""A small league with every kind of parent the email path has to handle."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage as MimeMessage
from pathlib import Path

import pytest

from core.email.skip_reasons import describe_skip
from core.models import EmailMessage, LinkStatus, PlayerStatus, ProductKind
from tests.factories import make_link, make_parent, make_player, make_product, make_team, make_tenant

EMAIL_FROM = "League Treasurer <treasurer@westside.example.org>"


@pytest.fixture
def league(session):
    tenant = make_tenant(
        session,
        slug="westside",
        name="Westside Hoops",
        brand_primary_color="#123456",
        brand_accent_color="#abcdef",
        logo_url="https://westside.example.org/logo.png",
        sender_name="Westside Treasurer",
        reply_to="treasurer-replies@westside.example.org",
        footer_text="Westside Hoops · 1 Court Street",
    )
    team = make_team(session, tenant, "Red")
    registration = make_product(session, tenant, "Registration", amount_cents=15000)
    dues = make_product(session, tenant, "Monthly dues", kind=ProductKind.MONTHLY, amount_cents=6000)
    ana = make_parent(session, tenant, "Ana O'Neil <& Co>", "ana@example.org")
    amy = make_player(session, tenant, ana, team, first_name="Amy", last_name="O'Neil")
    al = make_player(session, tenant, ana, team, first_name="Al", last_name="O'Neil")
    make_link(session, tenant, amy, registration)
    make_link(session, tenant, amy, dues)
    make_link(session, tenant, al, registration)
    ben = make_parent(session, tenant, "Bénédicte Zoë", "ben@example.org")
    make_link(session, tenant, make_player(session, tenant, ben, team, first_name="Bo", last_name="Zoë"), registration)
    cat = make_parent(session, tenant, "Cat Noemail", None)
    make_link(session, tenant, make_player(session, tenant, cat, team, first_name="Cy"), registration)
    dan = make_parent(session, tenant, "Dan Optout", "dan@example.org", email_opt_out=True)
    make_link(session, tenant, make_player(session, tenant, dan, team, first_name="Di"), registration)
    eve = make_parent(session, tenant, "Eve Paid", "eve@example.org")
    make_link(session, tenant, make_player(session, tenant, eve, team, first_name="Ed"), registration, status=LinkStatus.PAID)
    fay = make_parent(session, tenant, "Fay Typo", "fay@@example.org")
    make_link(session, tenant, make_player(session, tenant, fay, team, first_name="Fi"), registration)
    gus = make_parent(session, tenant, "Gus Withdrawn", "gus@example.org")
    make_link(
        session, tenant, make_player(session, tenant, gus, team, first_name="Gil", status=PlayerStatus.WITHDRAWN),
        registration,
    )
    session.commit()
    return {"tenant": tenant, "ana": ana, "ben": ben, "cat": cat, "dan": dan, "eve": eve, "fay": fay, "gus": gus,
            "registration": registration, "dues": dues, "team": team}


@pytest.fixture
def outbox_dir(tmp_path: Path) -> Path:
    return tmp_path / "outbox"


def read_outbox(directory: Path) -> list[MimeMessage]:
    """Every ``.eml`` file in the outbox, parsed."""
    if not directory.exists():
        return []
    return [
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
        for path in sorted(directory.glob("*.eml"))
    ]


def recipients(directory: Path) -> list[str]:
    """The To address of every file in the outbox (a parent twice means a double send)."""
    return sorted(message["To"].addresses[0].addr_spec for message in read_outbox(directory))


def skip_words(message: EmailMessage) -> str | None:
    """Why a message was skipped, in the words the pages and the command line show."""
    if message.skip_reason is None:
        return None
    return describe_skip(message.skip_reason, campaign_id=message.skip_campaign_id,
                         cooldown_days=message.campaign.cooldown_days)


def dead_process_token() -> str:
    """The sender token (``core.email.senders``) of a run on this host whose process has exited."""
    import socket
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return f"pid:{socket.gethostname()}:{process.pid}:"


ANOTHER_HOSTS_RUN = "pid:another-host.example:4242:"  # a run nobody here can check
