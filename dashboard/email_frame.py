"""Showing an email's HTML exactly as sent, inside a sandboxed frame."""

from __future__ import annotations

import html

import streamlit as st

FRAME_HEIGHT = 620


def sandboxed_email(body: str, *, height: int = FRAME_HEIGHT, title: str = "Email preview") -> None:
    """Render ``body`` (the exact HTML part) in an ``<iframe sandbox>`` with no permissions.

    The empty ``sandbox`` attribute blocks scripts, forms, pop-ups and same-origin access, so
    whatever the HTML holds cannot touch the dashboard. The bytes shown are the bytes sent.
    """
    frame = (
        f'<iframe sandbox="" title="{html.escape(title)}" referrerpolicy="no-referrer" '
        f'style="width:100%;height:{height}px;border:1px solid rgba(128,128,128,0.35);border-radius:6px;background:white" '
        f'srcdoc="{html.escape(body, quote=True)}"></iframe>'
    )
    st.iframe(frame, height=height + 12, alt=title)
