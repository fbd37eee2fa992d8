"""Before a send to everyone: the payment sync runs when Stripe is configured, and says so."""

from __future__ import annotations

import sys
import types

from core.email.presend import sync_payments_first
from core.settings import Secret, Settings
from tests.factories import acting, make_tenant

STRIPE = Settings(stripe_api_key=Secret("sk_test_123"))


def test_without_stripe_the_sync_is_skipped_with_a_note(session):
    outcome = sync_payments_first(session, acting(make_tenant(session)), settings=Settings())
    assert not outcome.ran and "Stripe is not configured" in outcome.note


def test_without_the_payment_sync_module_the_send_goes_on_with_a_note(session, monkeypatch):
    monkeypatch.setitem(sys.modules, "core.payment_sync", None)  # import fails as if absent
    outcome = sync_payments_first(session, acting(make_tenant(session)), settings=STRIPE)
    assert not outcome.ran and "not synced first" in outcome.note


def test_an_injected_sync_runs_in_the_callers_session(session):
    calls = []
    user = acting(make_tenant(session))
    outcome = sync_payments_first(session, user, settings=STRIPE,
                                  sync=lambda s, u: calls.append((s, u)) or types.SimpleNamespace(summary="3 paid"))
    assert calls == [(session, user)] and outcome.ran and outcome.note.endswith("3 paid")


def test_the_payment_sync_module_is_used_with_the_configured_stripe_gateway(session, monkeypatch):
    from core.stripe_gateway import StripeGateway

    calls = []
    module = types.ModuleType("core.payment_sync")
    module.sync_payments = lambda s, u, gateway: calls.append(gateway) or "ok"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "core.payment_sync", module)
    outcome = sync_payments_first(session, acting(make_tenant(session)), settings=STRIPE)
    assert outcome.ran and len(calls) == 1 and isinstance(calls[0], StripeGateway)
