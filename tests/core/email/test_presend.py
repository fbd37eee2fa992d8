"""Before a send to everyone: payments are synced from Stripe, and a failed sync refuses the send."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from core.composition import make_payment_gateway
from core.email.presend import PaymentsNotSynced, sync_payments_first
from core.errors import PaymentProviderError
from core.models import AuditEntry, LinkStatus, PaymentLink
from core.payments.stripe_gateway import StripeGateway
from core.payments.sync import SyncResult
from core.settings import Secret, Settings
from tests.factories import acting, make_link, make_parent, make_player, make_product, make_tenant
from tests.stripe_links import mirror_links

STRIPE = Settings(stripe_api_key=Secret("sk_test_123"))


def stripe_gateway_of(settings: Settings):  # type: ignore[no-untyped-def]
    """The gateway a driver's ``Services`` would hand in for these settings."""
    return make_payment_gateway(settings)


def stand_in_gateway(stand_in):  # type: ignore[no-untyped-def]
    return stripe_gateway_of(Settings(stripe_api_key=Secret("sk_test_stand_in"), stripe_api_base=stand_in.api_base))


@pytest.fixture
def owing_league(session, stripe_stand_in):  # type: ignore[no-untyped-def]
    """Two families who owe, their links mirrored in the Stripe stand-in."""
    tenant = make_tenant(session)
    product = make_product(session, tenant, "Registration", amount_cents=15000)
    links = [make_link(session, tenant, make_player(session, tenant, make_parent(session, tenant)), product)
             for _ in range(2)]
    session.commit()
    mirror_links(stripe_stand_in, session, links)
    return tenant, links


def test_without_stripe_the_send_goes_ahead_and_says_payments_were_not_synced(engine, session):
    outcome = sync_payments_first(engine, acting(make_tenant(session)), gateway=None)
    assert not outcome.ran and outcome.note == "Payments were not synced first: Stripe is not configured."


def test_a_sync_that_stripe_refuses_refuses_the_send_and_says_why(engine, session, owing_league, stripe_stand_in):
    tenant, _ = owing_league
    stripe_stand_in.inject("error", status=401, message="Invalid API Key provided", times=None,
                           path="/v1/events")

    with pytest.raises(PaymentsNotSynced) as refused:
        sync_payments_first(engine, acting(tenant), gateway=stand_in_gateway(stripe_stand_in))

    message = str(refused.value)
    assert message.startswith("Payments could not be synced from Stripe (")
    assert "Invalid API Key provided" in message
    assert message.endswith("; nothing was sent. Try again, or fix the Stripe problem first.")


def test_a_sync_that_raises_refuses_the_send(engine, session):
    def broken(_session, _user):  # type: ignore[no-untyped-def]
        raise PaymentProviderError("Stripe is down")

    with pytest.raises(PaymentsNotSynced, match=r"\(Stripe is down\); nothing was sent"):
        sync_payments_first(engine, acting(make_tenant(session)), gateway=stripe_gateway_of(STRIPE), sync=broken)


def test_a_sync_that_did_not_complete_refuses_the_send(engine, session):
    def half_done(_session, _user):  # type: ignore[no-untyped-def]
        return SyncResult(full=False, started_at=None, errors=["link 7: timed out"])  # type: ignore[arg-type]

    with pytest.raises(PaymentsNotSynced, match="link 7: timed out"):
        sync_payments_first(engine, acting(make_tenant(session)), gateway=stripe_gateway_of(STRIPE), sync=half_done)


def test_a_family_who_paid_is_synced_first_in_its_own_committed_unit_of_work(
    engine, session, owing_league, stripe_stand_in
):
    tenant, links = owing_league
    stripe_stand_in.complete_checkout_session(links[0].stripe_payment_link_id)
    session.rollback()

    outcome = sync_payments_first(engine, acting(tenant), gateway=stand_in_gateway(stripe_stand_in))

    assert outcome.ran and outcome.note.startswith("Payments synced from Stripe first: Payment sync (new payments since the last check): 1 paid")
    # Committed by the sync's own session: another session (the one the campaign is built in) sees it.
    session.expire_all()
    assert session.get(PaymentLink, links[0].id).status is LinkStatus.PAID
    assert session.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "sync")) == 1


def test_the_default_sync_uses_the_stripe_gateway_it_is_given(engine, session, monkeypatch):
    gateways = []

    def recording_sync(_session, _user, gateway):  # type: ignore[no-untyped-def]
        gateways.append(gateway)
        return SyncResult(full=False, started_at=None, synced_at=object())  # type: ignore[arg-type]

    monkeypatch.setattr("core.email.presend.sync_payments", recording_sync)
    given = stripe_gateway_of(STRIPE)
    outcome = sync_payments_first(engine, acting(make_tenant(session)), gateway=given)
    assert outcome.ran and len(gateways) == 1 and isinstance(gateways[0], StripeGateway)
    assert gateways[0] is given
