"""Demo mode refuses to start where a role picker could hand admin rights to strangers."""

from __future__ import annotations

import pytest

from core.access.demo_guard import demo_mode_refusal, is_loopback


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.53", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_demo_mode_runs_on_a_loopback_address(address):
    assert demo_mode_refusal(address, False) is None
    assert is_loopback(address)


@pytest.mark.parametrize("address", [None, "", "   "])
def test_an_unset_address_means_every_interface_and_is_refused(address):
    reason = demo_mode_refusal(address, False)
    assert reason is not None
    assert "every network interface" in reason
    assert 'server.address = "127.0.0.1"' in reason


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.5", "billing.example.org"])
def test_a_network_address_is_refused_and_named(address):
    reason = demo_mode_refusal(address, False)
    assert reason is not None
    assert address in reason


def test_a_unix_socket_is_refused_because_a_proxy_publishes_it():
    reason = demo_mode_refusal("unix:///run/billing.sock", False)
    assert reason is not None and "Unix socket" in reason


def test_configured_sign_in_refuses_demo_mode_even_on_loopback():
    reason = demo_mode_refusal("127.0.0.1", True)
    assert reason is not None
    assert "[auth]" in reason and "AUTH_MODE=oidc" in reason
