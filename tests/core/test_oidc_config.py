"""The [auth] section is checked before anyone is sent to the identity provider."""

from __future__ import annotations

from core.access.sign_in import oidc_configuration_problem, oidc_providers

GOOGLE = {
    "redirect_uri": "https://billing.example.org/oauth2callback",
    "cookie_secret": "s3cret-cookie-value",
    "client_id": "id.apps.googleusercontent.com",
    "client_secret": "client-s3cret-value",
    "server_metadata_url": "https://accounts.google.com/.well-known/openid-configuration",
}


def test_a_complete_default_provider_has_no_problem():
    assert oidc_configuration_problem(GOOGLE) is None
    assert oidc_providers(GOOGLE) == ["default"]


def test_named_providers_each_get_a_sign_in_button():
    section = {
        "redirect_uri": GOOGLE["redirect_uri"],
        "cookie_secret": "x" * 32,
        "google": {k: GOOGLE[k] for k in ("client_id", "client_secret", "server_metadata_url")},
        "microsoft": {k: GOOGLE[k] for k in ("client_id", "client_secret", "server_metadata_url")},
    }
    assert oidc_configuration_problem(section) is None
    assert oidc_providers(section) == ["google", "microsoft"]


def test_no_auth_section_says_how_to_fix_it():
    problem = oidc_configuration_problem({})
    assert problem is not None and "[auth]" in problem and "secrets.toml.example" in problem


def test_missing_settings_are_named_without_showing_any_secret():
    section = {k: v for k, v in GOOGLE.items() if k not in {"cookie_secret", "server_metadata_url"}}
    problem = oidc_configuration_problem(section)
    assert problem is not None
    assert "cookie_secret" in problem and "server_metadata_url" in problem
    assert "client-s3cret-value" not in problem


def test_a_provider_name_with_an_underscore_is_refused():
    section = {"redirect_uri": "https://x/oauth2callback", "cookie_secret": "c", "google_ws": dict(GOOGLE)}
    problem = oidc_configuration_problem(section)
    assert problem is not None and "[auth.google_ws]" in problem
