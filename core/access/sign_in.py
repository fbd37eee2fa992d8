"""Checks of the ``[auth]`` section that Streamlit's OpenID Connect sign-in (``st.login``) reads.

Only names are reported, never values: the section holds the client secret and the
cookie secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEFAULT_PROVIDER = "default"
_SHARED_KEYS = ("redirect_uri", "cookie_secret")
_PROVIDER_KEYS = ("client_id", "client_secret", "server_metadata_url")


def oidc_providers(auth_section: Mapping[str, Any]) -> list[str]:
    """The providers people can sign in with: ``"default"`` for settings directly in ``[auth]``,
    then the name of each ``[auth.<name>]`` table, in file order."""
    providers = [DEFAULT_PROVIDER] if "client_id" in auth_section else []
    providers += [
        str(name) for name, value in auth_section.items() if isinstance(value, Mapping) and "client_id" in value
    ]
    return providers


def oidc_configuration_problem(auth_section: Mapping[str, Any]) -> str | None:
    """What is missing for sign-in to work, or None. Names settings, never their values."""
    if not auth_section:
        return (
            "AUTH_MODE is oidc but there is no [auth] section in .streamlit/secrets.toml. "
            "Add one (see .streamlit/secrets.toml.example), or set AUTH_MODE=demo on a computer of your own."
        )
    missing = [key for key in _SHARED_KEYS if not auth_section.get(key)]
    providers = oidc_providers(auth_section)
    if not providers:
        missing.append("client_id (in [auth] or in an [auth.<provider>] table)")
    for provider in providers:
        table = auth_section if provider == DEFAULT_PROVIDER else auth_section[provider]
        prefix = "" if provider == DEFAULT_PROVIDER else f"{provider}."
        missing += [f"{prefix}{key}" for key in _PROVIDER_KEYS if not table.get(key)]
    underscored = [provider for provider in providers if "_" in provider]
    if underscored:
        return (
            "Streamlit does not accept an underscore in a sign-in provider's name: rename "
            + ", ".join(f"[auth.{name}]" for name in underscored) + "."
        )
    if missing:
        return "The [auth] section in .streamlit/secrets.toml is missing: " + ", ".join(missing) + "."
    return None
