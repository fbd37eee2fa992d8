"""The preview frame is tall enough for the whole email, footer included."""

from __future__ import annotations

from dataclasses import replace

import pytest

from core.email.registry import OUTSTANDING_BALANCE
from core.email.rendering import render_email
from dashboard.email_frame import email_height
from tests.core.email.test_rendering import BRAND, balance

# Heights Chromium gave these emails at 420 pixels wide (the narrowest frame a phone shows),
# where they are tallest: the frame must be at least as tall.
MEASURED_AT_420_PIXELS = [(1, False, 707), (1, True, 789), (5, True, 1061), (12, True, 1537), (30, True, 2761)]


@pytest.mark.parametrize("rows, long_footer, measured", MEASURED_AT_420_PIXELS)
def test_the_frame_is_at_least_as_tall_as_the_email_as_chromium_draws_it(rows, long_footer, measured):
    footer = "Westside Youth Basketball · 100 Court Street · Springfield " * 5 if long_footer else None
    body = render_email(OUTSTANDING_BALANCE, balance("Ana", *[f"Kid{i} Lefèvre-Søndergaard" for i in range(rows)]),
                        replace(BRAND, footer_text=footer)).html
    assert email_height(body) >= measured


def test_a_longer_email_gets_a_taller_frame():
    short = render_email(OUTSTANDING_BALANCE, balance("Ana", "Amy"), BRAND).html
    longer = render_email(OUTSTANDING_BALANCE, balance("Ana", "Amy", "Al", "Bo", "Cy"), BRAND).html
    assert email_height(longer) > email_height(short)
