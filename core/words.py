"""Counts in words: the one plural rule every page, email, CSV and command line uses."""

from __future__ import annotations


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``1 item``, ``2 items``, ``1,200 families`` (``plural_form`` where adding "s" is wrong)."""
    word = singular if count == 1 else (plural_form or singular + "s")
    return f"{count:,} {word}"
