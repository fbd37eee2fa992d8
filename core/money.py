"""Money is integer minor units. These turn it into text and back, never through floats."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from core.errors import InvalidInput

_SYMBOLS = {"usd": "$", "cad": "CA$", "aud": "A$", "eur": "€", "gbp": "£"}
_MONEY_RE = re.compile(r"^\$?\s*(\d{1,7})(?:\.(\d{1,2}))?$")


def format_cents(amount_cents: int, currency: str = "usd") -> str:
    """``15000, 'usd'`` → ``'$150.00'``; negative amounts keep their sign in front."""
    sign = "-" if amount_cents < 0 else ""
    whole, cents = divmod(abs(amount_cents), 100)
    symbol = _SYMBOLS.get(currency.lower())
    number = f"{whole:,}.{cents:02d}"
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {currency.upper()}"


def parse_money(text: str) -> int:
    """``'150'``, ``'150.5'``, ``'$150.00'`` → cents. Refuses anything that is not plain money."""
    cleaned = text.strip().replace(",", "")
    match = _MONEY_RE.match(cleaned)
    if not match:
        raise InvalidInput(f"{text!r} is not an amount of money (use a form like 150 or 150.00)")
    whole, frac = match.groups()
    try:
        cents = int((Decimal(whole) * 100) + Decimal((frac or "0").ljust(2, "0")))
    except InvalidOperation:  # pragma: no cover - the regex admits only digits
        raise InvalidInput(f"{text!r} is not an amount of money") from None
    if cents <= 0:
        raise InvalidInput(f"{text!r} must be more than zero")
    return cents
