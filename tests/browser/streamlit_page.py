"""Waiting for Streamlit, which renders client-side and reruns after every interaction."""

from __future__ import annotations

from playwright.sync_api import Error, Page

_RUNNING = '[data-testid="stStatusWidgetRunningIcon"]'
_STALE = '[data-stale="true"]'
_IDLE = f"""() => document.querySelector('[data-testid="stApp"]') !== null
    && !document.querySelector('{_RUNNING}')
    && document.querySelectorAll('{_STALE}').length === 0"""


def wait_until_idle(page: Page, timeout_ms: int = 45_000) -> None:
    """Wait until the script run has finished and no stale element is left on screen."""
    page.wait_for_timeout(300)  # let a rerun triggered by the last click begin
    try:
        page.wait_for_function(_IDLE, timeout=timeout_ms)
    except Error as exc:
        running = page.locator(_RUNNING).count()
        stale = page.locator(_STALE).count()
        raise AssertionError(f"the app did not settle: running={running} stale={stale}") from exc
