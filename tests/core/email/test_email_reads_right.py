"""The email reads right in every mail reader: subjects keep their spaces, the greeting uses a
first name, and every reminder says how to unsubscribe (a line and a List-Unsubscribe header)."""

from __future__ import annotations

import email
import email.policy
from email.header import decode_header, make_header
from urllib.parse import unquote

import pytest

from core.email.backends.file import FileBackend
from core.email.campaigns import preview_email, send_test_email
from core.email.registry import OUTSTANDING_BALANCE, Recipient, everyone_who_owes
from core.email.rendering import compose_message, message_id_for, render_email
from core.roster.importing import import_roster
from tests.core.email.conftest import EMAIL_FROM, read_outbox
from tests.core.email.test_rendering import BRAND, balance
from tests.factories import acting

ACCENTED_SUBJECTS = [
    "Westside Youth Basketball: $150.00 outstanding for Zoë Lefèvre",
    "WWW: $150.00 outstanding for Léa Núñez and Zoë Lefèvre",
    "WWWWWWW: $150.00 outstanding for Ana O'Brien and Zoë Lefèvre",
    "WWWWW: $150.00 outstanding for Ana O'Brien and Chloé Søndergaard",
    "A much longer league name than most leagues have: $1,150.00 outstanding for Léa Lefèvre, Zoë Müller "
    "and Ελένη Παπαδοπούλου",
]


def _sent(subject: str) -> bytes:
    rendered = render_email(OUTSTANDING_BALANCE, balance("Ana"), BRAND)
    rendered = type(rendered)(subject=subject, html=rendered.html, text=rendered.text)
    message = compose_message(rendered, brand=BRAND, to_name="Ana", to_address="ana@example.org",
                              message_id=message_id_for(tenant_id=1, campaign_id=2, parent_id=7,
                                                        domain="westside.example.org"))
    return message.as_bytes()


def _raw_header(raw: bytes, name: str) -> str:
    """The header as it travels: folded lines joined back (as a reader unfolds them)."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    lines = head.split("\r\n")
    start = next(i for i, line in enumerate(lines) if line.lower().startswith(name.lower() + ":"))
    value = [lines[start].split(":", 1)[1]]
    for line in lines[start + 1:]:
        if not line.startswith((" ", "\t")):
            break
        value.append(line)
    return "".join(value).strip()


@pytest.mark.parametrize("subject", ACCENTED_SUBJECTS)
def test_an_accented_subject_keeps_every_space_in_both_decoders(subject):
    raw = _sent(subject)
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == subject  # Python's email parser
    assert str(make_header(decode_header(_raw_header(raw, "Subject")))) == subject  # RFC 2047 decoding
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii() and all(len(line) <= 78 for line in head.split(b"\r\n") if line.startswith(b"Subject"))


def test_the_subject_the_library_used_to_break_now_keeps_zoe_lefevres_space():
    raw = _sent("WWWWWWW: $150.00 outstanding for Ana O'Brien and Zoë Lefèvre")
    assert "Zoë Lefèvre" in str(make_header(decode_header(_raw_header(raw, "Subject"))))
    assert "ZoëLefèvre" not in email.message_from_bytes(raw, policy=email.policy.default)["Subject"]


def test_a_plain_subject_is_sent_as_written():
    raw = _sent("Westside: $150.00 outstanding for Amy")
    assert b"Subject: Westside: $150.00 outstanding for Amy\r\n" in raw


def test_the_greeting_uses_the_parents_first_name_when_the_roster_gives_one():
    owed = balance("Smith, Jennifer")
    greeted = Recipient(**{name: getattr(owed, name) for name in vars(owed)}, first_name="Jennifer")
    assert "Hi Jennifer," in render_email(OUTSTANDING_BALANCE, greeted, BRAND).text
    assert "Hi Smith, Jennifer," in render_email(OUTSTANDING_BALANCE, owed, BRAND).text


def test_the_roster_first_name_reaches_the_greeting(session, league):
    admin = acting(league["tenant"])
    players = (
        "player_ref,first_name,last_name,status,team,parent_ref,parent_name,parent_first_name,parent_email\n"
        f"K-NEW,Kim,Lee,signed,Red,{league['ana'].external_ref},Ana O'Neil <& Co>,Ana,ana@example.org\n"
    ).encode()
    assert import_roster(session, admin, players, commit=True).committed
    session.commit()
    recipient = next(r for r in everyone_who_owes(session, admin) if r.parent_id == league["ana"].id)
    assert isinstance(recipient, Recipient) and recipient.first_name == "Ana"
    preview = preview_email(session, admin, parent_id=league["ana"].id, email_type=OUTSTANDING_BALANCE,
                            email_from=EMAIL_FROM)
    assert "Hi Ana," in preview.rendered.text


def test_the_email_does_not_speak_of_payments_showing_here():
    rendered = render_email(OUTSTANDING_BALANCE, balance("Ana"), BRAND)
    for part in (rendered.text, rendered.html):
        assert "show here" not in part
    assert "a payment can take a day to reach our records" in " ".join(rendered.text.split())


def test_every_reminder_has_an_unsubscribe_line_to_the_leagues_reply_address():
    rendered = render_email(OUTSTANDING_BALANCE, balance("Zoë Lefèvre"), BRAND)
    assert "Unsubscribe" in rendered.html and "mailto:replies@westside.example.org?subject=" in rendered.html
    assert "Don't want these reminders? Email replies@westside.example.org" in rendered.text


def test_the_list_unsubscribe_header_is_a_mailto_naming_the_family():
    raw = _sent("Westside: $150.00 outstanding for Amy")
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    value = str(parsed["List-Unsubscribe"])
    assert value.startswith("<mailto:replies@westside.example.org?subject=") and value.endswith(">")
    assert unquote(value.split("subject=", 1)[1].rstrip(">")) == "Unsubscribe Ana from Westside <Hoops> & Co reminders"
    assert _raw_header(raw, "List-Unsubscribe") == value  # one plain ASCII line, not encoded words


def test_without_a_reply_address_unsubscribing_goes_to_the_sender():
    from dataclasses import replace

    brand = replace(BRAND, reply_to=None)
    message = compose_message(render_email(OUTSTANDING_BALANCE, balance("Ana"), brand), brand=brand, to_name="Ana",
                              to_address="ana@example.org", message_id="<m1@westside.example.org>")
    assert str(message["List-Unsubscribe"]).startswith("<mailto:treasurer@westside.example.org?subject=")


def test_a_test_send_carries_the_unsubscribe_line_and_header(session, league, outbox_dir):
    admin = acting(league["tenant"])
    send_test_email(session.get_bind(), admin, parent_id=league["ben"].id, test_address="me@example.org",
                    email_type=OUTSTANDING_BALANCE, backend=FileBackend(outbox_dir), email_from=EMAIL_FROM)
    [message] = read_outbox(outbox_dir)
    assert str(message["List-Unsubscribe"]).startswith("<mailto:treasurer-replies@westside.example.org?subject=")
    assert "Don't want these reminders?" in message.get_body(("plain",)).get_content()
    assert message["Subject"].startswith("[TEST] Westside Hoops:")
