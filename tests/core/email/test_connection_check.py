""""Check the connection": each backend connects and signs in without sending anything."""

from __future__ import annotations

import json
from urllib.parse import urlparse

import pytest
from googleapiclient.discovery import build
from googleapiclient.http import HttpMockSequence

from core.access.permissions import Role
from core.email.backends.file import FileBackend
from core.email.backends.gmail import GmailBackend
from core.email.backends.smtp import SmtpBackend
from core.errors import EmailDeliveryError, PermissionDenied
from core.models import Tenant
from core.settings import Secret
from core.setup.checklist import check_email_connection
from tests.core.email.test_backends import authenticator, certificate, free_port, smtp_server  # noqa: F401
from tests.core.email.test_gmail_backend import error
from tests.factories import acting


def test_the_file_backend_checks_its_folder_takes_files_and_leaves_nothing(tmp_path):
    folder = tmp_path / "outbox"
    said = FileBackend(folder).check()
    assert "can be written to" in said and "delivers nothing" in said
    assert list(folder.iterdir()) == []


def test_a_file_outbox_that_cannot_be_written_fails_the_check(tmp_path):
    (tmp_path / "taken").write_text("a file, not a folder")
    with pytest.raises(EmailDeliveryError, match="cannot be written to"):
        FileBackend(tmp_path / "taken" / "outbox").check()


def test_smtp_check_logs_in_after_starttls_and_sends_nothing(smtp_server, certificate):  # noqa: F811
    server_tls, client_tls = certificate
    collector, port = smtp_server(tls_context=server_tls, require_starttls=True, authenticator=authenticator,
                                  auth_required=True, auth_require_tls=True)
    backend = SmtpBackend("127.0.0.1", port, username="treasurer", password=Secret("s3cret"),
                          ssl_context=client_tls)
    said = backend.check()
    assert f"127.0.0.1:{port} (STARTTLS) and logged in as treasurer" in said
    assert collector.envelopes == []


def test_smtp_check_with_a_wrong_password_says_so_without_the_password(smtp_server, certificate):  # noqa: F811
    server_tls, client_tls = certificate
    _, port = smtp_server(tls_context=server_tls, require_starttls=True, authenticator=authenticator,
                          auth_required=True)
    backend = SmtpBackend("127.0.0.1", port, username="treasurer", password=Secret("wrong-pass"),
                          ssl_context=client_tls)
    with pytest.raises(EmailDeliveryError, match="did not accept the SMTP login") as caught:
        backend.check()
    assert "wrong-pass" not in str(caught.value)


def test_smtp_check_with_no_server_listening_says_it_could_not_connect():
    with pytest.raises(EmailDeliveryError, match="Could not connect"):
        SmtpBackend("127.0.0.1", free_port(), starttls=False, timeout=2).check()


def _gmail(*responses):  # type: ignore[no-untyped-def]
    http = HttpMockSequence(list(responses))
    return GmailBackend(lambda: build("gmail", "v1", http=http, cache_discovery=False), sends_per_minute=6000), http


def test_gmail_check_reads_the_profile_and_sends_nothing():
    profile = ({"status": "200", "content-type": "application/json"},
               json.dumps({"emailAddress": "treasurer@westside.example", "messagesTotal": 3}))
    backend, http = _gmail(profile)
    assert backend.check() == "Signed in to Gmail as treasurer@westside.example; nothing was sent."
    (uri, method, _body, _headers), = http.request_sequence
    assert method == "GET" and urlparse(uri).path == "/gmail/v1/users/me/profile"


def test_gmail_credentials_that_may_only_send_pass_the_check():
    backend, _ = _gmail(error(403, "insufficientPermissions"))
    assert "may send but not read" in backend.check()


def test_gmail_refusing_the_credentials_fails_the_check():
    backend, _ = _gmail(error(401, "authError"))
    with pytest.raises(EmailDeliveryError, match=r"did not accept the credentials \(401\)"):
        backend.check()


@pytest.mark.parametrize("role", [Role.COACH, Role.TREASURER])
def test_only_an_admin_may_check_the_connection(tmp_path, role):
    league = Tenant(id=1, slug="westside", name="Westside")
    with pytest.raises(PermissionDenied):
        check_email_connection(acting(league, role), FileBackend(tmp_path))
    assert "can be written to" in check_email_connection(acting(league), FileBackend(tmp_path))
