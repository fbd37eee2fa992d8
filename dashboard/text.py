"""Showing text from outside (names, emails, file names) in Streamlit's Markdown safely."""

from __future__ import annotations

_MARKDOWN_SPECIALS = "\\`*_[]<>#|~$"


def plain(text: str | None) -> str:
    """``text`` shown as typed: no links, emphasis, HTML or maths from a roster or a form."""
    text = text or ""
    for character in _MARKDOWN_SPECIALS:
        text = text.replace(character, "\\" + character)
    return text
