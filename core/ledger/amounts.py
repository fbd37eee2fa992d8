"""Money a treasurer types (``175.00``, ``$175``, ``175.00 USD``), in the league's currency.

The one place the ledger reads an amount of money: a later fix of ``core.money.parse_money``
lands everywhere at once.
"""

from __future__ import annotations

import re

from core.errors import InvalidInput
from core.money import parse_money

_CODE = re.compile(r"^\s*(?:([A-Za-z]{3})\s+)?(.*?)(?:\s+([A-Za-z]{3}))?\s*$")


def parse_amount(text: str, *, currency: str) -> int:
    """Cents of a positive amount in ``currency`` (the league's).

    A currency code may be written before or after the number; another currency than the
    league's is refused, as is anything ``parse_money`` refuses (``abc``, ``-5.00``,
    ``10.005``, ``0``).
    """
    match = _CODE.match(text)
    number, codes = text, []
    if match:
        before, number, after = match.groups()
        codes = [code for code in (before, after) if code]
    for code in codes:
        if code.lower() != currency.lower():
            raise InvalidInput(
                f"{text.strip()!r} is in {code.upper()}, but this league keeps its books in {currency.upper()}."
            )
    return parse_money(number)


def check_currency(given: str | None, *, league_currency: str) -> str:
    """The league's currency; ``InvalidInput`` when ``given`` is another one."""
    if given is not None and given.strip().lower() != league_currency.lower():
        raise InvalidInput(
            f"{given.strip().upper()} is not this league's currency: it keeps its books in {league_currency.upper()}."
        )
    return league_currency.lower()
