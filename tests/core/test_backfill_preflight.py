"""What stops a backfill commit, or is said before it: one rule for the command line and the page."""

from __future__ import annotations

import pytest

from core.backfill import (
    BackfillItem,
    BackfillNotReady,
    BackfillPlan,
    PendingSwitchOff,
    PlanAction,
    PreflightKind,
    backfill_preflight,
)
from core.models import ProductKind
from core.settings import Secret, Settings

TEST_KEY = Secret("sk_test_123")
LIVE_KEY = Secret("sk_live_123")
THANK_YOU = "https://westside.example/thanks"


def _plan(*, to_mint: int = 1, to_switch_off: int = 0) -> BackfillPlan:
    items = tuple(
        BackfillItem(key=f"k{n}", player_id=n, player_name="Amy Player", parent_id=1, parent_name="Ana O'Neil",
                     product_id=1, product_name="Registration", product_kind=ProductKind.ONE_TIME,
                     amount_cents=15000, currency="usd", action=PlanAction.MINT, reason="required")
        for n in range(to_mint)
    )
    switch_offs = tuple(PendingSwitchOff(n, f"plink_{n}", "Amy Player", "Ana O'Neil", "Registration")
                        for n in range(to_switch_off))
    return BackfillPlan(tenant_id=1, tenant_slug="westside", league_key="k", items=items, currency="usd",
                        pending_switch_offs=switch_offs)


def test_without_a_stripe_key_only_the_commit_is_stopped():
    assert backfill_preflight(Settings(), _plan(), commit=False).notes == ()
    preflight = backfill_preflight(Settings(), _plan(), commit=True)
    [problem] = preflight.problems
    assert problem.kind is PreflightKind.STRIPE_NOT_CONFIGURED and not preflight.ok
    with pytest.raises(BackfillNotReady) as refused:
        preflight.raise_for_problems()
    assert str(refused.value) == ("STRIPE_API_KEY is not set: add it to the environment or .streamlit/secrets.toml "
                                  "to create payment links (the dry run works without it).")


@pytest.mark.parametrize("commit", [False, True])
def test_live_links_to_the_placeholder_thank_you_page_are_stopped_and_the_dry_run_says_so(commit):
    preflight = backfill_preflight(Settings(stripe_api_key=LIVE_KEY), _plan(), commit=commit)
    [problem] = preflight.problems
    assert problem.kind is PreflightKind.PLACEHOLDER_THANK_YOU_PAGE
    assert problem.message.endswith("before creating live payment links.")


def test_test_links_to_the_placeholder_thank_you_page_are_a_warning():
    preflight = backfill_preflight(Settings(stripe_api_key=TEST_KEY), _plan(), commit=True)
    [warning] = preflight.warnings
    assert preflight.ok and warning.message.endswith("(fine for a test key).")


def test_only_minting_needs_the_thank_you_page():
    only_switching_off = _plan(to_mint=0, to_switch_off=2)
    assert backfill_preflight(Settings(stripe_api_key=LIVE_KEY), only_switching_off, commit=True).notes == ()


def test_a_thank_you_page_set_leaves_nothing_to_say():
    settings = Settings(stripe_api_key=LIVE_KEY, payment_success_url=THANK_YOU)
    assert backfill_preflight(settings, _plan(), commit=True).notes == ()


def test_the_leagues_own_thank_you_page_counts_where_the_server_has_none():
    from core.access.league_settings import effective_settings
    from core.models import Tenant

    settings = Settings(stripe_api_key=LIVE_KEY)
    league = effective_settings(Tenant(payment_success_url=THANK_YOU), settings)
    assert backfill_preflight(settings, _plan(), commit=True, in_force=league).notes == ()
    assert not backfill_preflight(settings, _plan(), commit=True).ok
