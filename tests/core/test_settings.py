"""Settings that would send families or money the wrong way are refused or warned about."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import PLACEHOLDER_SUCCESS_URL, ConfigurationError, load_settings


def _settings(tmp_path: Path, **environ: str):  # type: ignore[no-untyped-def]
    return load_settings(environ=environ, secrets_file=tmp_path / "none.toml")


@pytest.mark.parametrize("url", ["not-a-url", "westside.example/thanks", "ftp://westside.example/thanks", "https://"])
def test_a_thank_you_page_that_is_not_a_web_address_is_refused(tmp_path, url):
    with pytest.raises(ConfigurationError, match="PAYMENT_SUCCESS_URL must be a full web address"):
        _settings(tmp_path, PAYMENT_SUCCESS_URL=url)


def test_the_placeholder_thank_you_page_is_refused_for_live_links_and_warned_about_for_test_ones(tmp_path):
    assert _settings(tmp_path).payment_success_url == PLACEHOLDER_SUCCESS_URL
    assert "fine for a test key" in _settings(tmp_path, STRIPE_API_KEY="sk_test_x").success_url_problem()
    with pytest.raises(ConfigurationError, match="before creating live payment links"):
        _settings(tmp_path, STRIPE_API_KEY="sk_live_x").success_url_problem()
    own = _settings(tmp_path, STRIPE_API_KEY="sk_live_x", PAYMENT_SUCCESS_URL="https://westside.example/thanks")
    assert own.success_url_problem() is None


def test_only_a_backend_that_delivers_needs_a_real_sender(tmp_path):
    assert _settings(tmp_path).email_from_problem() is None  # the file outbox delivers nothing
    problem = _settings(tmp_path, EMAIL_BACKEND="gmail").email_from_problem()
    assert problem and "treasurer@example.org" in problem and "EMAIL_BACKEND is gmail" in problem
    assert _settings(tmp_path, EMAIL_BACKEND="smtp", EMAIL_FROM="Westside <money@westside.example>"
                     ).email_from_problem() is None
