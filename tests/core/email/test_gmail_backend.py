"""The Gmail backend through googleapiclient's own HttpMockSequence: retries, back-off, quota."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs, urlparse

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from googleapiclient.discovery import build
from googleapiclient.http import HttpMockSequence

from core.composition import make_email_backend
from core.email.backends import DeliveryUncertain
from core.email.backends.gmail import GmailBackend, load_credentials
from core.email.backends.pacing import Pacer
from core.errors import EmailDeliveryError
from core.settings import Settings
from tests.core.email.test_backends import a_message


def ok(message_id: str = "18c0ffee") -> tuple[dict, str]:  # type: ignore[type-arg]
    return {"status": "200", "content-type": "application/json"}, json.dumps({"id": message_id, "threadId": "t1"})


def error(status: int, reason: str, **headers: str) -> tuple[dict, str]:  # type: ignore[type-arg]
    body = {"error": {"code": status, "message": f"{reason} happened",
                      "errors": [{"domain": "usageLimits", "reason": reason, "message": f"{reason} happened"}]}}
    return {"status": str(status), "content-type": "application/json", **headers}, json.dumps(body)


class Recorder:
    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def not_in_sent_mail() -> tuple[dict, str]:  # type: ignore[type-arg]
    return {"status": "200", "content-type": "application/json"}, json.dumps({"resultSizeEstimate": 0})


def in_sent_mail(gmail_id: str) -> tuple[dict, str]:  # type: ignore[type-arg]
    return ({"status": "200", "content-type": "application/json"},
            json.dumps({"messages": [{"id": gmail_id, "threadId": "t9"}], "resultSizeEstimate": 1}))


def gmail(responses, *, per_minute: float = 6000, searches=None):  # type: ignore[no-untyped-def]
    """A Gmail backend on HttpMockSequence; searches of the sent mail answer from ``searches``
    (default: never found), on a mock of their own, as they use credentials of their own."""
    http = HttpMockSequence(list(responses))
    search_http = HttpMockSequence(list(searches if searches is not None else [not_in_sent_mail()] * 20))
    sleep = Recorder()
    backend = GmailBackend(lambda: build("gmail", "v1", http=http, cache_discovery=False),
                           sends_per_minute=per_minute, sleep=sleep, base_delay=1.0,
                           search_service_factory=lambda: build("gmail", "v1", http=search_http,
                                                                cache_discovery=False))
    backend.search_http = search_http  # type: ignore[attr-defined]
    return backend, http, sleep


def test_a_message_is_sent_as_base64url_raw_to_users_me_messages_send():
    backend, http, _ = gmail([ok("abc123")])
    message = a_message()
    assert backend.send(message) == "abc123"
    (uri, method, body, _headers), = http.request_sequence
    assert method == "POST" and urlparse(uri).path == "/gmail/v1/users/me/messages/send"
    raw = json.loads(body)["raw"]
    assert base64.urlsafe_b64decode(raw) == message.as_bytes()


@pytest.mark.parametrize("refusal", [
    error(429, "rateLimitExceeded"),
    error(403, "userRateLimitExceeded"),
    error(403, "rateLimitExceeded"),
])
def test_rate_limits_are_retried_with_back_off(refusal):
    backend, http, sleep = gmail([refusal, refusal, ok("later")])
    assert backend.send(a_message()) == "later"
    assert len(http.request_sequence) == 3
    assert len(sleep.sleeps) == 2 and sleep.sleeps[1] > sleep.sleeps[0] >= 1.0


def test_a_mixed_storm_of_429_and_403_rate_limits_ends_in_one_send():
    backend, http, _ = gmail([error(429, "rateLimitExceeded"), error(403, "userRateLimitExceeded"),
                              error(403, "rateLimitExceeded"), ok("finally")])
    assert backend.send(a_message()) == "finally"
    assert len(http.request_sequence) == 4


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_server_error_may_have_sent_the_message_so_it_is_uncertain_and_not_retried(status):
    backend, http, sleep = gmail([error(status, "backendError"), ok("second copy")])
    with pytest.raises(DeliveryUncertain, match=f"Gmail answered {status}.*may have been sent"):
        backend.send(a_message())
    assert len(http.request_sequence) == 1 and sleep.sleeps == []


def test_a_retry_after_longer_than_the_longest_back_off_stops_the_run_with_the_message_queued():
    backend, http, sleep = gmail([error(429, "rateLimitExceeded", **{"retry-after": "3600"}), ok()])
    with pytest.raises(EmailDeliveryError, match="asked to wait 3600 s") as caught:
        backend.send(a_message())
    assert caught.value.quota_exhausted and len(http.request_sequence) == 1 and sleep.sleeps == []


def test_the_longest_gmail_send_is_shorter_than_a_stale_claim():
    from core.email.outbox import STALE_CLAIM_AFTER
    from core.settings import Settings

    backend = GmailBackend(lambda: None, sends_per_minute=Settings().gmail_sends_per_minute)
    assert 0 < backend.longest_send_seconds < STALE_CLAIM_AFTER.total_seconds()


def test_retry_after_from_gmail_is_honoured():
    backend, _, sleep = gmail([error(429, "rateLimitExceeded", **{"retry-after": "7"}), ok()])
    backend.send(a_message())
    assert len(sleep.sleeps) == 1 and 6.5 < sleep.sleeps[0] <= 7.0


def test_the_daily_limit_stops_at_once_as_quota_exhausted():
    backend, http, sleep = gmail([error(403, "dailyLimitExceeded"), ok()])
    with pytest.raises(EmailDeliveryError) as caught:
        backend.send(a_message())
    assert caught.value.quota_exhausted and "daily sending limit" in str(caught.value)
    assert len(http.request_sequence) == 1 and sleep.sleeps == []


def test_a_refusal_that_is_not_a_rate_limit_is_not_retried():
    backend, http, _ = gmail([error(400, "invalidArgument"), ok()])
    with pytest.raises(EmailDeliveryError, match="refused the message \\(400\\)") as caught:
        backend.send(a_message())
    assert not caught.value.retryable and not caught.value.quota_exhausted
    assert len(http.request_sequence) == 1


def test_a_permission_403_without_a_rate_limit_reason_is_not_retried():
    backend, http, _ = gmail([error(403, "insufficientPermissions"), ok()])
    with pytest.raises(EmailDeliveryError):
        backend.send(a_message())
    assert len(http.request_sequence) == 1


def test_endless_rate_limiting_stops_the_run_like_an_exhausted_quota():
    backend, http, _ = gmail([error(429, "rateLimitExceeded")] * 6)
    with pytest.raises(EmailDeliveryError, match="after 6 attempts") as caught:
        backend.send(a_message())
    assert caught.value.quota_exhausted and len(http.request_sequence) == 6


def test_a_dropped_connection_mid_send_is_reported_as_uncertain_not_retried():
    class Dropping(HttpMockSequence):
        def request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            self.request_sequence.append(args)
            raise ConnectionResetError("reset by peer")

    http = Dropping([])
    backend = GmailBackend(lambda: build("gmail", "v1", http=http, cache_discovery=False), sends_per_minute=600,
                           sleep=lambda s: None)
    with pytest.raises(DeliveryUncertain):
        backend.send(a_message())
    assert len(http.request_sequence) == 1


def test_the_pacer_spaces_sends_evenly_under_the_per_minute_rate():
    now = [100.0]
    sleeps: list[float] = []
    pacer = Pacer(60, clock=lambda: now[0], sleep=sleeps.append)
    for _ in range(4):
        pacer.wait()
    assert sleeps == [1.0, 2.0, 3.0]


def test_a_pacer_with_a_burst_lets_a_late_sender_catch_up_but_never_run_ahead():
    now = [0.0]
    sleeps: list[float] = []
    pacer = Pacer(60, burst=2, clock=lambda: now[0], sleep=sleeps.append)
    pacer.wait()          # t=0: slot 0
    now[0] = 5.0          # the sender fell behind by several slots
    pacer.wait()          # reclaims one missed slot: no wait
    pacer.wait()          # ...and one more at once, no more
    pacer.wait()          # then back to one a second
    assert sleeps == [1.0]
    now[0] = 6.0
    pacer.wait()
    assert sleeps == [1.0, 1.0]


def test_sends_go_through_the_pacer():
    now = [0.0]
    sleeps: list[float] = []
    backend, _, _ = gmail([ok("1"), ok("2"), ok("3")])
    backend.pacer = Pacer(30, clock=lambda: now[0], sleep=sleeps.append)
    for _ in range(3):
        backend.send(a_message())
    assert sleeps == [2.0, 4.0]


def _service_account_file(tmp_path):  # type: ignore[no-untyped-def]
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path = tmp_path / "service-account.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "league", "private_key_id": "k1", "private_key": pem,
        "client_email": "mailer@league.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }))
    return path


def test_a_service_account_sends_as_the_delegated_mailbox(tmp_path):
    credentials = load_credentials(_service_account_file(tmp_path), delegated_user="treasurer@westside.example.org")
    assert credentials._subject == "treasurer@westside.example.org"
    assert credentials.scopes == ["https://www.googleapis.com/auth/gmail.send"]


def test_a_service_account_without_a_delegated_mailbox_is_refused(tmp_path):
    with pytest.raises(EmailDeliveryError, match="GMAIL_DELEGATED_USER"):
        load_credentials(_service_account_file(tmp_path), delegated_user=None)


def test_an_oauth_token_file_is_accepted(tmp_path):
    path = tmp_path / "token.json"
    path.write_text(json.dumps({"type": "authorized_user", "client_id": "c", "client_secret": "s",
                                "refresh_token": "r", "token": "t"}))
    credentials = load_credentials(path, delegated_user=None)
    assert credentials.refresh_token == "r"


def test_the_gmail_backend_is_built_from_the_settings(tmp_path):
    sender = "Westside Treasurer <treasurer@westside.example.org>"
    settings = Settings(email_backend="gmail", gmail_credentials_file=_service_account_file(tmp_path),
                        gmail_delegated_user="treasurer@westside.example.org", gmail_sends_per_minute=30,
                        email_from=sender)
    backend = make_email_backend(settings)
    assert isinstance(backend, GmailBackend) and backend.pacer.interval == 2.0
    with pytest.raises(EmailDeliveryError, match="GMAIL_CREDENTIALS_FILE"):
        make_email_backend(Settings(email_backend="gmail", email_from=sender))


def test_only_the_gmail_module_imports_the_google_client():
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    importers = sorted(
        str(path.relative_to(root))
        for folder in ("core", "dashboard")
        if (root / folder).exists()
        for path in (root / folder).rglob("*.py")
        if "googleapiclient" in path.read_text() or "google.oauth2" in path.read_text()
    )
    assert importers == ["core/email/backends/gmail.py"]


def test_a_campaign_through_gmail_stops_cleanly_at_the_daily_limit_and_resumes(session, engine, league):
    from core.email.campaigns import start_campaign
    from core.email.outbox import drain_outbox
    from core.email.registry import OUTSTANDING_BALANCE
    from tests.core.email.conftest import EMAIL_FROM
    from tests.factories import acting

    admin = acting(league["tenant"])
    campaign = start_campaign(session, admin, OUTSTANDING_BALANCE, email_from=EMAIL_FROM)
    session.commit()
    backend, http, _ = gmail([error(429, "rateLimitExceeded"), ok("first"), error(403, "dailyLimitExceeded")])
    stopped = drain_outbox(engine, admin, campaign.id, backend=backend, email_from=EMAIL_FROM, workers=1)
    assert (stopped.sent, stopped.failed, stopped.remaining) == (1, 0, 1)
    assert "daily sending limit" in stopped.stopped_reason
    tomorrow, http2, _ = gmail([ok("second")])
    resumed = drain_outbox(engine, admin, campaign.id, backend=tomorrow, email_from=EMAIL_FROM, workers=1)
    assert (resumed.sent, resumed.remaining, resumed.succeeded) == (1, 0, True)
    sent_raw = [json.loads(body)["raw"] for _, _, body, _ in http.request_sequence + http2.request_sequence]
    to = [a_message_to(raw) for raw in sent_raw]
    assert sorted(set(to)) == ["ana@example.org", "ben@example.org"]


def test_a_server_error_through_gmail_leaves_the_message_interrupted_and_the_run_goes_on(session, engine, league):
    from core.email.campaigns import message_rows, start_campaign
    from core.email.outbox import drain_outbox, retry_messages
    from core.email.registry import OUTSTANDING_BALANCE
    from tests.core.email.conftest import EMAIL_FROM
    from tests.factories import acting

    admin = acting(league["tenant"])
    campaign = start_campaign(session, admin, OUTSTANDING_BALANCE, email_from=EMAIL_FROM)
    session.commit()
    backend, http, _ = gmail([error(503, "backendError"), ok("second")])
    result = drain_outbox(engine, admin, campaign.id, backend=backend, email_from=EMAIL_FROM, workers=1)
    assert (result.sent, result.failed, result.interrupted, result.remaining) == (1, 0, 1, 0)
    assert len(http.request_sequence) == 2  # one request per family: the 503 was not sent again
    (ana,) = [row for row in message_rows(session, admin, campaign.id) if row.status == "interrupted"]
    assert ana.to_address == "ana@example.org" and "may have been sent" in ana.reason
    # Only the admin puts it back in the queue.
    again, http2, _ = gmail([ok("third")])
    assert drain_outbox(engine, admin, campaign.id, backend=again, email_from=EMAIL_FROM).sent == 0
    assert http2.request_sequence == [] and retry_messages(session, admin, campaign.id) == 0


def a_message_to(raw: str) -> str:
    import email
    import email.policy
    return email.message_from_bytes(base64.urlsafe_b64decode(raw), policy=email.policy.default)["To"].addresses[0].addr_spec


# --- did an interrupted message go out? Gmail's sent mail says ------------------------------------

def test_the_sent_mail_is_searched_for_the_messages_own_message_id():
    backend, _, _ = gmail([], searches=[in_sent_mail("18sent"), not_in_sent_mail()])
    assert backend.find_sent("<c1.p1.abc@westside.example.org>") == "18sent"
    assert backend.find_sent("<c1.p2.def@westside.example.org>") is None
    (uri, method, _, _), _ = backend.search_http.request_sequence
    query = parse_qs(urlparse(uri).query)
    assert method == "GET" and urlparse(uri).path == "/gmail/v1/users/me/messages"
    assert query["q"] == ["rfc822msgid:c1.p1.abc@westside.example.org"] and query["labelIds"] == ["SENT"]


def test_without_read_access_the_search_cannot_tell():
    backend, _, _ = gmail([], searches=[error(403, "insufficientPermissions")])
    with pytest.raises(EmailDeliveryError, match="Could not search Gmail's sent mail \\(403\\)"):
        backend.find_sent("<x@example.org>")


def test_an_uncertain_send_that_gmail_finds_in_its_sent_mail_is_recorded_as_sent(session, engine, league):
    from core.email.campaigns import message_rows, start_campaign
    from core.email.outbox import drain_outbox
    from core.email.registry import OUTSTANDING_BALANCE
    from tests.core.email.conftest import EMAIL_FROM
    from tests.factories import acting

    admin = acting(league["tenant"])
    campaign = start_campaign(session, admin, OUTSTANDING_BALANCE, email_from=EMAIL_FROM)
    session.commit()
    backend, http, _ = gmail([error(503, "backendError"), ok("second")], searches=[in_sent_mail("18went")])
    result = drain_outbox(engine, admin, campaign.id, backend=backend, email_from=EMAIL_FROM, workers=1)
    assert (result.sent, result.interrupted, result.succeeded) == (1, 0, True)
    assert len(http.request_sequence) == 2  # nothing was sent twice
    ana = next(row for row in message_rows(session, admin, campaign.id) if row.to_address == "ana@example.org")
    assert (ana.status, ana.provider_message_id) == ("sent", "18went")
    (uri, _, _, _), = backend.search_http.request_sequence
    assert parse_qs(urlparse(uri).query)["q"] == [f"rfc822msgid:{ana.message_id_header.strip('<>')}"]


def test_a_message_of_a_killed_run_is_settled_from_gmails_sent_mail_when_the_send_is_resumed(
    session, engine, league
):
    """The run died inside the provider call: the resume asks Gmail, finds it, and sends nothing twice."""
    from sqlalchemy import update

    from core.email.campaigns import message_rows, start_campaign
    from core.email.outbox import drain_outbox
    from core.email.registry import OUTSTANDING_BALANCE
    from core.models import EmailMessage, MessageStatus, utcnow
    from tests.core.email.conftest import EMAIL_FROM, dead_process_token
    from tests.factories import acting

    admin = acting(league["tenant"])
    campaign = start_campaign(session, admin, OUTSTANDING_BALANCE, email_from=EMAIL_FROM)
    session.commit()
    ana = next(row for row in message_rows(session, admin, campaign.id) if row.to_address == "ana@example.org")
    session.execute(update(EmailMessage).where(EmailMessage.id == ana.id).values(
        status=MessageStatus.SENDING, claimed_at=utcnow(), attempts=1, claimed_by=dead_process_token()))
    session.commit()
    backend, http, _ = gmail([ok("ben")], searches=[in_sent_mail("18ana")])
    result = drain_outbox(engine, admin, campaign.id, backend=backend, email_from=EMAIL_FROM)
    assert (result.sent, result.interrupted, result.in_flight, result.succeeded) == (1, 0, 0, True)
    assert [a_message_to(json.loads(body)["raw"]) for _, _, body, _ in http.request_sequence] == ["ben@example.org"]
    shown = {row.to_address: (row.status, row.provider_message_id) for row in message_rows(session, admin, campaign.id)}
    assert shown["ana@example.org"] == ("sent", "18ana")

