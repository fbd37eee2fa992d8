"""``python -m core send-outstanding``: test send, send to everyone with confirmation, exit status."""

from __future__ import annotations

import io

import pytest

from cli.main import main
from tests.core.email import conftest as email_fixtures
from tests.core.email.conftest import ANOTHER_HOSTS_RUN, EMAIL_FROM, dead_process_token, read_outbox, recipients

# The email tests' league and outbox, as fixtures of this module too.
league, outbox_dir = email_fixtures.league, email_fixtures.outbox_dir


@pytest.fixture
def cli_env(monkeypatch, database_url, outbox_dir, tmp_path):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("EMAIL_BACKEND", "file")
    monkeypatch.setenv("EMAIL_OUTBOX_DIR", str(outbox_dir))
    monkeypatch.setenv("EMAIL_FROM", EMAIL_FROM)
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    return outbox_dir


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_test_send_goes_to_the_test_address_only(league, cli_env, capsys):
    code = main(["send-outstanding", "--test-email", "me@example.org", "--parent", str(league["ben"].id)])
    assert code == 0
    (message,) = read_outbox(cli_env)
    assert message["To"].addresses[0].addr_spec == "me@example.org"
    assert message["Subject"].strip().startswith("[TEST] Westside Hoops: $150.00")
    out = capsys.readouterr().out
    assert "1 sent, 0 failed" in out
    assert "Test send: Bénédicte Zoë's email ($150.00) to me@example.org" in out


def test_a_test_send_names_the_parent_by_parent_ref_or_email_address(league, cli_env, capsys):
    assert main(["send-outstanding", "--test-email", "me@example.org", "--parent", league["ben"].external_ref]) == 0
    assert "Test send: Bénédicte Zoë's email ($150.00) to me@example.org" in capsys.readouterr().out
    assert main(["send-outstanding", "--test-email", "me@example.org", "--parent", "ANA@Example.org"]) == 0
    assert "Test send: Ana O'Neil <& Co>'s email ($360.00) to me@example.org" in capsys.readouterr().out
    assert recipients(cli_env) == ["me@example.org", "me@example.org"]


def test_a_parent_not_in_the_league_is_one_line_and_nothing_is_sent(league, cli_env, capsys, session):
    from tests.factories import make_parent, make_tenant

    other = make_tenant(session, "eastside")
    make_parent(session, other, "Eve East", "eve@east.example.org", external_ref="PA-900")
    session.commit()
    for reference in ("PA-999", "PA-900", "eve@east.example.org"):
        code = main(["send-outstanding", "--tenant", "westside", "--test-email", "me@example.org",
                     "--parent", reference])
        assert code == 1
        assert capsys.readouterr().err == (
            f"error: No parent {reference!r} in this league: give their id, parent_ref or email address.\n"
        )
    assert read_outbox(cli_env) == []


def test_a_test_send_without_a_parent_uses_the_first_who_owes(league, cli_env):
    assert main(["send-outstanding", "--test-email", "me@example.org"]) == 0
    (message,) = read_outbox(cli_env)
    assert "Ana O'Neil" in message.get_body(("plain",)).get_content()


def test_an_invalid_test_address_is_one_line_on_stderr_and_exit_1(league, cli_env, capsys):
    assert main(["send-outstanding", "--test-email", "not-an-address"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: 'not-an-address' is not a valid email address") and err.count("\n") == 1
    assert read_outbox(cli_env) == []


def test_all_without_yes_and_without_a_terminal_refuses_and_sends_nothing(league, cli_env, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    assert main(["send-outstanding", "--all"]) == 1
    captured = capsys.readouterr()
    assert "Will email 2 parents, $510.00 in total" in captured.out
    assert "Dan Optout: opted out of email" in captured.out
    assert "Payments were not synced first: Stripe is not configured." in captured.out
    assert "Pass --yes" in captured.err
    assert read_outbox(cli_env) == []


def test_all_asks_on_the_terminal_and_sends_when_confirmed(league, cli_env, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    assert main(["send-outstanding", "--all"]) == 0
    assert "Send 2 emails now? [y/N]" in capsys.readouterr().out
    assert recipients(cli_env) == ["ana@example.org", "ben@example.org"]


def test_all_answered_no_sends_nothing(league, cli_env, monkeypatch):
    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    assert main(["send-outstanding", "--all"]) == 1
    assert read_outbox(cli_env) == []


def test_all_with_yes_sends_and_a_rerun_emails_nobody_twice(league, cli_env, capsys):
    assert main(["send-outstanding", "--all", "--yes"]) == 0
    assert "2 sent, 0 failed" in capsys.readouterr().out
    assert main(["send-outstanding", "--all", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "Will email 0 parents" in out and "Nothing to send." in out
    assert "emailed within the 3-day cool-down" in out  # the cron log says why each family was skipped
    assert recipients(cli_env) == ["ana@example.org", "ben@example.org"]


def queue_a_send_whose_run(engine, sender: str) -> int:  # type: ignore[no-untyped-def]
    """A send to everyone queued by a run (``sender``) that then stopped before sending anything."""
    from core.access.leagues import find_tenant
    from core.db import session_factory
    from core.email.campaigns import start_campaign
    from core.email.registry import OUTSTANDING_BALANCE
    from tests.factories import acting

    with session_factory(engine)() as session:
        campaign = start_campaign(session, acting(find_tenant(session, None)), OUTSTANDING_BALANCE,
                                  email_from="League <league@example.org>", sender=sender)
        session.commit()
        return campaign.id


def test_a_send_whose_run_stopped_is_finished_by_the_next_send_to_everyone_exactly_once(league, cli_env, capsys,
                                                                                         engine):
    campaign_id = queue_a_send_whose_run(engine, dead_process_token())
    assert main(["send-outstanding", "--all", "--yes"]) == 0
    captured = capsys.readouterr()
    assert f"Campaign #{campaign_id} did not finish (2 still queued) and its run stopped" in captured.err
    assert "already queued in another send" in captured.out  # not queued a second time...
    assert f"Campaign #{campaign_id}: 2 sent, 0 failed" in captured.out  # ...but sent by the stopped send
    assert recipients(cli_env) == ["ana@example.org", "ben@example.org"]
    assert main(["send-outstanding", "--all", "--yes"]) == 0
    assert "Nothing to send." in capsys.readouterr().out
    assert recipients(cli_env) == ["ana@example.org", "ben@example.org"]


def test_an_interrupted_send_is_pointed_at_by_the_next_one(league, cli_env, capsys, engine):
    """A run nobody here can check (another machine's): pointed at, not taken over."""
    campaign_id = queue_a_send_whose_run(engine, ANOTHER_HOSTS_RUN)
    assert main(["send-outstanding", "--all", "--yes"]) == 0
    captured = capsys.readouterr()
    assert f"Campaign #{campaign_id} did not finish (2 still queued)" in captured.err
    assert f"--resume {campaign_id}" in captured.err
    assert "already queued in another send" in captured.out
    assert recipients(cli_env) == []
    assert main(["send-outstanding", "--resume", str(campaign_id)]) == 0
    assert recipients(cli_env) == ["ana@example.org", "ben@example.org"]


def test_a_send_another_run_is_sending_right_now_is_not_called_unfinished(league, cli_env, capsys, engine):
    from core.email.senders import live_sender

    with live_sender(engine) as alive:  # that other run, alive while this one runs
        campaign_id = queue_a_send_whose_run(engine, alive)
        assert main(["send-outstanding", "--all", "--yes"]) == 0
    captured = capsys.readouterr()
    assert f"Campaign #{campaign_id} is being sent by another run right now" in captured.err
    assert "did not finish" not in captured.err and "--resume" not in captured.err
    assert "Nothing to send." in captured.out and recipients(cli_env) == []


def test_a_failed_send_exits_non_zero_and_names_who_failed(league, cli_env, capsys, monkeypatch,
                                                           smtp_nobody_answers):
    assert main(["send-outstanding", "--all", "--yes"]) == 1
    err = capsys.readouterr().err
    assert "failed: Ana O'Neil <& Co> <ana@example.org>: Could not connect" in err
    assert "--resume" in err
    monkeypatch.setenv("EMAIL_BACKEND", "file")
    campaign_id = int(err.split("--resume ")[1].split()[0])
    assert main(["send-outstanding", "--resume", str(campaign_id), "--retry-failed"]) == 0
    assert recipients(cli_env) == ["ana@example.org", "ben@example.org"]


def test_options_that_do_not_go_together_are_refused(league, cli_env, capsys):
    assert main(["send-outstanding", "--all", "--parent", "1"]) == 1
    assert main(["send-outstanding", "--test-email", "me@example.org", "--yes"]) == 1
    assert "--yes goes with --all" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["send-outstanding", "--all", "--test-email", "me@example.org"])


class PaysWhileAsked(Terminal):
    """A terminal where, while the admin reads the manifest, a family's payment lands."""

    def __init__(self, answer: str, pay) -> None:  # type: ignore[no-untyped-def]
        super().__init__(answer)
        self.pay = pay

    def readline(self, *args) -> str:  # type: ignore[no-untyped-def]
        self.pay()
        return super().readline(*args)


def test_all_sends_nothing_when_the_list_changed_between_the_manifest_and_the_confirmation(
    league, cli_env, capsys, monkeypatch, session
):
    from sqlalchemy import select

    from core.models import PaymentLink, Player
    from tests.factories import pay_link

    def ben_pays() -> None:
        ben_players = select(Player.id).where(Player.parent_id == league["ben"].id)
        for link in session.scalars(select(PaymentLink).where(PaymentLink.player_id.in_(ben_players))).all():
            pay_link(session, link)
        session.commit()

    monkeypatch.setattr("sys.stdin", PaysWhileAsked("y\n", ben_pays))
    assert main(["send-outstanding", "--all"]) == 1
    captured = capsys.readouterr()
    assert "Will email 2 parents, $510.00 in total" in captured.out
    assert captured.err.startswith("error: The list changed since you reviewed it: review again.")
    assert captured.err.count("\n") == 1
    assert read_outbox(cli_env) == []


def test_all_sends_nothing_when_the_payment_sync_fails(league, cli_env, capsys, monkeypatch, stripe_stand_in):
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_stand_in")
    monkeypatch.setenv("STRIPE_API_BASE", stripe_stand_in.api_base)
    stripe_stand_in.inject("error", status=401, message="Invalid API Key provided", times=None,
                           path="/v1/events")
    assert main(["send-outstanding", "--all", "--yes"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: Payments could not be synced from Stripe (") and err.count("\n") == 1
    assert "Invalid API Key provided" in err and "nothing was sent" in err
    assert read_outbox(cli_env) == []


def test_a_backend_that_cannot_send_is_refused_before_anything_is_queued(league, cli_env, capsys, monkeypatch, session):
    """Queued first, a campaign would hold every parent ("already queued") until resumed."""
    from sqlalchemy import func, select

    from core.models import EmailCampaign

    monkeypatch.setenv("EMAIL_BACKEND", "smtp")
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.delenv("EMAIL_FROM", raising=False)
    assert main(["send-outstanding", "--all", "--yes"]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("error: EMAIL_FROM is not set") and "queued" not in captured.out
    session.expire_all()
    assert session.execute(select(func.count()).select_from(EmailCampaign)).scalar_one() == 0


def test_the_leagues_own_sender_address_lifts_the_placeholder_refusal_and_is_the_from(league, cli_env, monkeypatch,
                                                                                     session, capsys):
    from aiosmtpd.controller import Controller

    from core.models import Tenant
    from tests.core.email.test_backends import Collector, free_port

    collector = Collector()
    server = Controller(collector, hostname="127.0.0.1", port=free_port())
    server.start()
    try:
        monkeypatch.setenv("EMAIL_BACKEND", "smtp")
        monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("SMTP_PORT", str(server.port))
        monkeypatch.setenv("SMTP_STARTTLS", "false")
        monkeypatch.delenv("EMAIL_FROM")
        assert main(["send-outstanding", "--test-email", "me@example.org"]) == 1
        assert "placeholder address treasurer@example.org" in capsys.readouterr().err
        assert collector.envelopes == []

        tenant = session.get(Tenant, league["tenant"].id)
        tenant.sender_address = "billing@westside.example.org"
        session.commit()
        assert main(["send-outstanding", "--test-email", "me@example.org"]) == 0
    finally:
        server.stop()
    [(mail_from, rcpt, _)] = collector.envelopes
    assert (mail_from, rcpt) == ("billing@westside.example.org", ["me@example.org"])
