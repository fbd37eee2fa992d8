"""The file and SMTP backends, for real: files on disk and an SMTP server started by the test."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import socket
import ssl

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from core.composition import make_email_backend
from core.email.backends.file import FileBackend
from core.email.backends.smtp import SmtpBackend
from core.email.brand import Brand
from core.email.registry import OUTSTANDING_BALANCE
from core.email.rendering import compose_message, render_email
from core.errors import EmailDeliveryError
from core.settings import Secret, Settings
from tests.core.email.test_rendering import BRAND, balance


def a_message(address: str = "ana@example.org", brand: Brand = BRAND):  # type: ignore[no-untyped-def]
    return compose_message(render_email(OUTSTANDING_BALANCE, balance("Ana Zoë", "Amy"), brand), brand=brand,
                           to_name="Ana Zoë", to_address=address, message_id="<c1.p7.test@westside.example.org>")


# --- file ---------------------------------------------------------------------------------------

def test_the_file_backend_writes_the_exact_bytes_as_an_eml_file(tmp_path):
    message = a_message()
    provider_id = FileBackend(tmp_path / "outbox").send(message)
    written = tmp_path / "outbox" / provider_id
    assert written.suffix == ".eml" and written.read_bytes() == message.as_bytes()
    parsed = email.message_from_bytes(written.read_bytes(), policy=email.policy.default)
    assert parsed["To"].addresses[0].display_name == "Ana Zoë"
    assert list((tmp_path / "outbox").glob(".*partial")) == []


def test_the_file_backend_keeps_every_send_so_a_double_send_would_show(tmp_path):
    backend = FileBackend(tmp_path)
    first, second = backend.send(a_message()), backend.send(a_message())
    assert first != second and len(list(tmp_path.glob("*.eml"))) == 2


def test_an_outbox_folder_that_cannot_be_written_is_a_delivery_error(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(EmailDeliveryError, match="outbox folder"):
        FileBackend(blocker / "outbox").send(a_message())


def test_the_file_backend_is_the_default(tmp_path):
    backend = make_email_backend(Settings(email_outbox_dir=tmp_path))
    assert isinstance(backend, FileBackend) and backend.directory == tmp_path


# --- SMTP ---------------------------------------------------------------------------------------

class Collector:
    def __init__(self) -> None:
        self.envelopes: list[tuple[str, list[str], bytes]] = []
        self.refuse: set[str] = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        if address in self.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK queued"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):  # type: ignore[no-untyped-def]
    """A self-signed certificate for 127.0.0.1 and a client context that trusts it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_path, key_path)
    client = ssl.create_default_context(cafile=str(cert_path))
    return server, client


def authenticator(server, session, envelope, mechanism, auth_data):  # type: ignore[no-untyped-def]
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"treasurer", b"s3cret")
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp_server():  # type: ignore[no-untyped-def]
    started: list[Controller] = []

    def start(**options):  # type: ignore[no-untyped-def]
        collector = Collector()
        controller = Controller(collector, hostname="127.0.0.1", port=free_port(), **options)
        controller.start()
        started.append(controller)
        return collector, controller.port

    yield start
    for controller in started:
        controller.stop()


def test_smtp_delivers_the_message_over_a_plain_connection(smtp_server):
    collector, port = smtp_server()
    backend = SmtpBackend("127.0.0.1", port, starttls=False)
    message = a_message()
    provider_id = backend.send(message)
    backend.send(a_message("ben@example.org"))
    backend.close()
    assert provider_id == "<c1.p7.test@westside.example.org>"
    assert [rcpt for _, rcpt, _ in collector.envelopes] == [["ana@example.org"], ["ben@example.org"]]
    mail_from, _, content = collector.envelopes[0]
    assert mail_from == "treasurer@westside.example.org"
    received = email.message_from_bytes(content, policy=email.policy.default)
    assert received["Message-ID"] == "<c1.p7.test@westside.example.org>"
    assert _lf(received.get_body(("html",)).get_content()) == _lf(message.get_body(("html",)).get_content())


def _lf(text: str) -> str:
    return text.replace("\r\n", "\n")


def test_smtp_logs_in_after_starttls(smtp_server, certificate):
    server_tls, client_tls = certificate
    collector, port = smtp_server(tls_context=server_tls, require_starttls=True, authenticator=authenticator,
                                  auth_required=True, auth_require_tls=True)
    backend = SmtpBackend("127.0.0.1", port, username="treasurer", password=Secret("s3cret"),
                          starttls=True, ssl_context=client_tls)
    backend.send(a_message())
    backend.close()
    assert len(collector.envelopes) == 1


def test_smtp_over_implicit_tls(smtp_server, certificate):
    server_tls, client_tls = certificate
    collector, port = smtp_server(ssl_context=server_tls)
    backend = SmtpBackend("127.0.0.1", port, starttls=False, use_ssl=True, ssl_context=client_tls)
    backend.send(a_message())
    backend.close()
    assert len(collector.envelopes) == 1


def test_a_wrong_smtp_password_is_a_delivery_error_without_the_password(smtp_server, certificate):
    server_tls, client_tls = certificate
    _, port = smtp_server(tls_context=server_tls, require_starttls=True, authenticator=authenticator,
                          auth_required=True)
    backend = SmtpBackend("127.0.0.1", port, username="treasurer", password=Secret("wrong-pass"),
                          ssl_context=client_tls)
    with pytest.raises(EmailDeliveryError, match="did not accept the SMTP login") as caught:
        backend.send(a_message())
    assert "wrong-pass" not in str(caught.value)


def test_a_refused_recipient_is_a_delivery_error_and_the_next_message_still_goes(smtp_server):
    collector, port = smtp_server()
    collector.refuse.add("gone@example.org")
    backend = SmtpBackend("127.0.0.1", port, starttls=False)
    with pytest.raises(EmailDeliveryError, match="refused the recipient") as caught:
        backend.send(a_message("gone@example.org"))
    assert not caught.value.retryable
    backend.send(a_message())
    assert [rcpt for _, rcpt, _ in collector.envelopes] == [["ana@example.org"]]


def test_no_smtp_server_listening_is_a_retryable_delivery_error():
    with pytest.raises(EmailDeliveryError, match="Could not connect") as caught:
        SmtpBackend("127.0.0.1", free_port(), starttls=False, timeout=2).send(a_message())
    assert caught.value.retryable


SENDER = "Westside Treasurer <treasurer@westside.example>"


def test_the_smtp_backend_is_built_from_the_settings():
    backend = make_email_backend(Settings(email_backend="smtp", smtp_host="mail.example.org", smtp_port=465,
                                    smtp_ssl=True, smtp_username="u", smtp_password=Secret("p"),
                                    email_from=SENDER))
    assert isinstance(backend, SmtpBackend)
    assert (backend.host, backend.port, backend.use_ssl, backend.starttls) == ("mail.example.org", 465, True, False)
    with pytest.raises(EmailDeliveryError, match="SMTP_HOST"):
        make_email_backend(Settings(email_backend="smtp", email_from=SENDER))


def test_a_backend_that_delivers_refuses_the_placeholder_sender(tmp_path):
    """Families would get email from, and reply to, treasurer@example.org: nobody reads it."""
    with pytest.raises(EmailDeliveryError, match="EMAIL_FROM is not set.*EMAIL_BACKEND is smtp"):
        make_email_backend(Settings(email_backend="smtp", smtp_host="mail.example.org"))
    assert isinstance(make_email_backend(Settings(email_backend="file", email_outbox_dir=tmp_path)), FileBackend)
