"""When demo mode (anyone may pick any role) must refuse to start.

Demo mode is for looking around on one's own computer. It refuses when the server can be
reached from elsewhere (it listens on anything but loopback) or when real sign-in is
configured (an ``[auth]`` section exists), because then it is a production install where
a role picker would hand out admin rights to whoever opens the page.
"""

from __future__ import annotations

import ipaddress

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}
_FIX = (
    'set server.address = "127.0.0.1" in .streamlit/config.toml (or start with '
    "--server.address 127.0.0.1) to keep the demo on this computer, or use real sign-in: "
    "AUTH_MODE=oidc with an [auth] section in .streamlit/secrets.toml."
)


def is_loopback(server_address: str | None) -> bool:
    """True when ``server_address`` (Streamlit's ``server.address``) only accepts local connections.

    Unset or empty means Streamlit listens on every interface: not loopback. A Unix socket is
    not treated as loopback either, since it is normally published through a proxy.
    """
    address = (server_address or "").strip()
    if not address or address.startswith("unix://"):
        return False
    if address.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:  # any other host name may resolve to a public address
        return False


def demo_mode_refusal(server_address: str | None, auth_configured: bool) -> str | None:
    """Why demo mode must not start here, or None when it may."""
    if auth_configured:
        return (
            "Demo mode is switched off because sign-in is configured (there is an [auth] section in "
            "the secrets). Set AUTH_MODE=oidc so that people sign in, or remove the [auth] section "
            "to run the demo."
        )
    if not is_loopback(server_address):
        address = (server_address or "").strip()
        if not address:
            where = "every network interface (server.address is not set)"
        elif address.startswith("unix://"):
            where = f"a Unix socket ({address}), which is normally published through a proxy"
        else:
            where = f"{address}, which is not this computer only"
        return (
            "Demo mode lets anyone pick any role, including admin, so it only runs when the server "
            f"listens on this computer alone. This server listens on {where}. To fix it, {_FIX}"
        )
    return None
