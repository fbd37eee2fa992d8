"""The Setup checklist page: each thing the league needs, its state and the fix; never a secret."""

from __future__ import annotations

import pytest


def _text(at) -> str:  # type: ignore[no-untyped-def]
    return " ".join(element.value for kind in ("markdown", "caption", "info", "success", "error")
                    for element in at.get(kind))


def test_the_checklist_shows_the_state_of_each_thing_and_never_the_stripe_key(demo_league, open_app, monkeypatch):
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_VERYSECRET123")
    at = open_app("admin", page="setup")
    assert not at.exception
    text = _text(at)
    for title in ("Stripe key", "Thank-you page", "Sender address", "Email sending", "Sign-in", "Database",
                  "Players and families", "Payment links"):
        assert f"**{title}**" in text or title in text
    assert "A test key: payment links take no real money." in text
    assert "VERYSECRET" not in text and "sk_test_" not in text.replace("sk_test_…", "")
    assert "The placeholder https://example.org/thank-you" in text
    assert "Off (demo mode)" in text


def test_without_a_key_the_checklist_says_how_to_set_one(demo_league, open_app, monkeypatch):
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    at = open_app("admin", page="setup")
    assert "None: payment links cannot be created yet." in _text(at)


def test_the_database_is_shown_masked(demo_league, open_app, database_url):
    at = open_app("admin", page="setup")
    text = _text(at)
    if database_url.startswith("postgresql"):
        assert "(PostgreSQL)" in text and r"\*\*\*@127.0.0.1" in text and "postgres@" not in text
    else:
        assert "a file on this computer" in text


def test_checking_the_file_backend_connection_sends_nothing(demo_league, open_app, tmp_path):
    at = open_app("admin", page="setup")
    at.button(key="check_email_connection").click().run()
    assert not at.exception
    assert any("can be written to" in s.value for s in at.success)
    assert not list((tmp_path / "outbox").glob("*.eml"))


def test_a_failing_smtp_check_is_shown_as_an_error(demo_league, open_app, smtp_nobody_answers):
    at = open_app("admin", page="setup")
    at.button(key="check_email_connection").click().run()
    assert not at.exception
    assert any("Could not connect" in e.value for e in at.error)


@pytest.mark.parametrize("role", ["treasurer", "coach"])
def test_only_an_admin_opens_the_checklist(demo_league, open_app, role):
    at = open_app(role, page="setup")
    assert not at.exception
    assert any("may not" in e.value for e in at.error)
