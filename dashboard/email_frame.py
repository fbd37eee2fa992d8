"""Showing an email's HTML exactly as sent, inside a sandboxed frame tall enough for all of it."""

from __future__ import annotations

import html
import re

import streamlit as st

# Measured in Chromium (the league's email at 420 to 1,000 pixels wide): about 640 pixels for
# the masthead, the greeting, a one-row table and the footer, 50 to 70 more per table row, and
# a line of 18 pixels per 60 to 90 characters of the text around the table. The estimate takes the narrow end of each, so the
# footer is always inside the frame; below a short email the page's own background shows.
_BASE_HEIGHT = 320
_ROW_HEIGHT = 68
_LINE_HEIGHT = 18
_CHARACTERS_PER_LINE = 60
_TABLES_AND_TAGS = re.compile(r"<style.*?</style>|<table.*?</table>|<[^>]+>", re.DOTALL | re.IGNORECASE)
_ROWS = re.compile(r"<tr[\s>]", re.IGNORECASE)


def email_height(body: str) -> int:
    """The height, in pixels, that shows all of ``body`` (an email's HTML part) without scrolling.

    A sandboxed frame cannot be measured from outside (that is what the sandbox is for), so
    the height is estimated from the email's table rows and its amount of text.
    """
    rows = len(_ROWS.findall(body))
    text = " ".join(html.unescape(_TABLES_AND_TAGS.sub(" ", body)).split())  # the rows are counted above
    return _BASE_HEIGHT + _ROW_HEIGHT * rows + _LINE_HEIGHT * (len(text) // _CHARACTERS_PER_LINE + 1)


def sandboxed_email(body: str, *, height: int | None = None, title: str = "Email preview") -> None:
    """Render ``body`` (the exact HTML part) in an ``<iframe sandbox>`` with no permissions.

    The empty ``sandbox`` attribute blocks scripts, forms, pop-ups and same-origin access, so
    whatever the HTML holds cannot touch the dashboard. The bytes shown are the bytes sent.
    The frame is as tall as the whole email, footer included (``email_height``), unless
    ``height`` says otherwise.
    """
    height = height or email_height(body)
    frame = (
        f'<iframe sandbox="" title="{html.escape(title)}" referrerpolicy="no-referrer" '
        f'style="width:100%;height:{height}px;border:1px solid rgba(128,128,128,0.35);border-radius:6px;background:white" '
        f'srcdoc="{html.escape(body, quote=True)}"></iframe>'
    )
    st.iframe(frame, height=height + 12, alt=title)
