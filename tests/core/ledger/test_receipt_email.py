"""The "payment received" email: what it says, that it goes through the outbox once, and who may send it."""

from __future__ import annotations

import email
import email.policy
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select

from core.access.permissions import Role
from core.db import session_factory
from core.email.backends.file import FileBackend
from core.email.campaigns import build_manifest
from core.email.payment_received import preview_receipt, send_receipt
from core.email.registry import OUTSTANDING_BALANCE
from core.errors import EmailDeliveryError, InvalidInput, PermissionDenied
from core.ledger.entries import record_payment
from core.models import EmailCampaign, EmailMessage, MessageStatus, PaymentMethod
from tests.factories import acting

EMAIL_FROM = "Alpha Treasurer <treasurer@alpha.example.org>"


def _pay(session, books, cents, **fields):
    change = record_payment(session, books.treasurer, parent_id=books.okafor.id, amount_cents=cents,
                            method=PaymentMethod.CASH, received_on=date(2026, 9, 3), **fields)
    session.commit()
    return change.entry_id


def _outbox(directory: Path) -> list[email.message.EmailMessage]:
    if not directory.exists():
        return []
    return [email.message_from_bytes(path.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
            for path in sorted(directory.glob("*.eml"))]


def test_the_receipt_says_what_the_payment_settled_and_what_is_still_owed(session, books):
    books.tenant.time_zone = "America/Chicago"
    books.tenant.brand_primary_color = "#0a3d62"
    payment = _pay(session, books, 20000, reference="check 1042")
    preview = preview_receipt(session, books.treasurer, payment_id=payment, email_from=EMAIL_FROM)
    assert preview.rendered.subject == "Alpha League: we received your payment of $200.00"
    text = preview.rendered.text
    assert "cash payment of $200.00 on September 3, 2026 (reference check 1042)" in text
    assert "| Amy | $150.00" in text  # oldest due first: Amy's registration, then part of Al's
    assert "| Al | $50.00" in text
    assert "What is still owed after this payment: $160.00." in text  # $360 billed - $200
    assert "(America/Chicago)" in text
    assert "#0a3d62" in preview.rendered.html  # the league's brand, inlined
    assert preview.to_address == "ngozi@example.org"
    assert preview.already is None


def test_the_receipts_footer_offers_no_unsubscribe_from_reminders(session, books):
    preview = preview_receipt(session, books.treasurer, payment_id=_pay(session, books, 5000), email_from=EMAIL_FROM)
    html, text = preview.rendered.html, preview.rendered.text
    for part in (html, text):
        assert "reminder" not in part.lower() and "unsubscribe" not in part.lower()
        assert "Questions? Reply to this email" in part and "Sent by " in part  # the rest of the footer stays
    assert 'class="unsubscribe"' not in html
    assert preview.message["List-Unsubscribe"] is None  # nor a header a mail client would show as one


def test_a_receipt_is_sent_through_the_outbox_once_however_often_it_is_asked(session, engine, books, tmp_path):
    payment = _pay(session, books, 36000)
    backend = FileBackend(tmp_path / "outbox")
    sessions = session_factory(engine)
    first = send_receipt(sessions, books.treasurer, payment_id=payment, backend=backend, email_from=EMAIL_FROM)
    again = send_receipt(sessions, books.treasurer, payment_id=payment, backend=backend, email_from=EMAIL_FROM)
    assert (first.sent, first.newly_sent, first.to_address) == (True, True, "ngozi@example.org")
    assert (again.sent, again.newly_sent, again.campaign_id) == (True, False, first.campaign_id)
    sent = _outbox(tmp_path / "outbox")
    assert len(sent) == 1
    assert sent[0]["List-Unsubscribe"] is None  # as sent: a reminder opt-out does not stop receipts
    assert "Everything is paid: you owe nothing more." in sent[0].get_body(("plain",)).get_content()
    session.expire_all()
    preview = preview_receipt(session, books.treasurer, payment_id=payment, email_from=EMAIL_FROM)
    assert preview.already is not None and preview.already.startswith("sent to ngozi@example.org")


def test_a_failed_receipt_is_sent_again_when_asked_not_queued_twice(session, engine, books, tmp_path):
    class Down:
        parallel_sends = 1

        def send(self, message):
            raise EmailDeliveryError("the mail server said no")

    payment = _pay(session, books, 5000)
    sessions = session_factory(engine)
    failed = send_receipt(sessions, books.treasurer, payment_id=payment, backend=Down(), email_from=EMAIL_FROM)
    assert (failed.sent, failed.status) == (False, "failed")
    retried = send_receipt(sessions, books.treasurer, payment_id=payment, backend=FileBackend(tmp_path / "o"),
                           email_from=EMAIL_FROM)
    assert retried.sent and retried.campaign_id == failed.campaign_id
    assert len(_outbox(tmp_path / "o")) == 1
    assert session.scalar(select(EmailMessage.status).where(EmailMessage.campaign_id == failed.campaign_id)) \
        is MessageStatus.SENT


def test_a_receipt_is_no_reminder_it_holds_no_family_back(session, engine, books, tmp_path):
    payment = _pay(session, books, 5000)  # the Okafors still owe $310
    send_receipt(session_factory(engine), books.treasurer, payment_id=payment, backend=FileBackend(tmp_path),
                 email_from=EMAIL_FROM)
    manifest = build_manifest(session, acting(books.tenant), OUTSTANDING_BALANCE, cooldown_days=7)
    assert books.okafor.id in {entry.parent_id for entry in manifest.recipients}


def test_no_address_no_receipt_and_nothing_queued(session, engine, books, tmp_path):
    books.okafor.email = None
    payment = _pay(session, books, 5000)
    preview = preview_receipt(session, books.treasurer, payment_id=payment, email_from=EMAIL_FROM)
    assert preview.to_address is None and "no email address" in (preview.address_problem or "")
    with pytest.raises(InvalidInput, match="no email address on file"):
        send_receipt(session_factory(engine), books.treasurer, payment_id=payment, backend=FileBackend(tmp_path),
                     email_from=EMAIL_FROM)
    assert session.scalars(select(EmailCampaign)).all() == []


@pytest.mark.parametrize("role", [Role.COACH, None])
def test_only_who_records_payments_may_send_a_receipt(session, engine, books, tmp_path, role):
    payment = _pay(session, books, 5000)
    user = acting(books.tenant, role) if role else None
    with pytest.raises(PermissionDenied):
        preview_receipt(session, user, payment_id=payment, email_from=EMAIL_FROM)  # type: ignore[arg-type]
    with pytest.raises(PermissionDenied):
        send_receipt(session_factory(engine), user, payment_id=payment,  # type: ignore[arg-type]
                     backend=FileBackend(tmp_path), email_from=EMAIL_FROM)
    assert _outbox(tmp_path) == []
