"""Money is integer minor units. These turn it into text and back, never through floats.

An amount in a file is read one way only. ``1,000.00`` and ``150.00`` have a decimal point;
``150,00`` and ``1.500,00`` have a decimal comma. Which one a file uses is decided once for
the whole file (``MoneyNotation``), and an amount that does not fit it, or that could mean two
things (``1.500``: one dollar fifty, or fifteen hundred?), is refused with the reason, never
read with a changed magnitude.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass

from core.errors import InvalidInput

_SYMBOLS = {"usd": "$", "cad": "CA$", "aud": "A$", "eur": "€", "gbp": "£"}

# Above this, one item's amount is imported only once someone confirms it is meant: a
# misread decimal mark makes amounts a hundred times too big, and $10,000 is more than any
# one registration, dues period or uniform of a youth league.
LARGE_AMOUNT_CENTS = 1_000_000
MAX_WHOLE_DIGITS = 7  # up to $9,999,999

_AMOUNT = re.compile(r"\$?\s*(?P<number>[0-9.,]+)")
# A decimal mark is a point or a comma followed by one or two digits at the end.
_DECIMAL_PART = re.compile(r"(?P<mark>[.,])(?P<digits>\d{1,2})\Z")


class DecimalMark(enum.Enum):
    POINT = "."
    COMMA = ","

    @property
    def word(self) -> str:
        return "point" if self is DecimalMark.POINT else "comma"

    @property
    def other(self) -> DecimalMark:
        return DecimalMark.COMMA if self is DecimalMark.POINT else DecimalMark.POINT


@dataclass(frozen=True)
class MoneyNotation:
    """How one file writes its amounts: its decimal mark (None: nothing in it says), and why.

    With a decimal mark, the other mark may separate thousands (in groups of three digits).
    Without one, an amount holding a separator cannot be read one way only and is refused.
    """

    decimal_mark: DecimalMark | None
    reason: str


DECIMAL_POINT = MoneyNotation(DecimalMark.POINT, "amounts have a decimal point")


def shown_decimal_mark(text: str) -> DecimalMark | None:
    """The decimal mark ``text`` shows: a point or comma followed by one or two final digits."""
    match = _AMOUNT.fullmatch(text.strip())
    decimal = _DECIMAL_PART.search(match["number"]) if match else None
    return DecimalMark(decimal["mark"]) if decimal else None


def file_notation(*, comma_separated: bool, amounts: Iterable[tuple[int, str]]) -> MoneyNotation:
    """The notation of a file, from its separator and every ``(line, amount text)`` in it.

    A comma-separated file has a decimal point: a comma there can only separate thousands.
    A semicolon- or tab-separated file (what a spreadsheet in a decimal-comma country exports)
    has the decimal mark of the first amount that shows one (``150,00`` or ``150.00``); an
    amount written with the other one is then refused, so a file is read as decimal-comma only
    when every amount showing a mark uses a comma.
    """
    if comma_separated:
        return MoneyNotation(DecimalMark.POINT, "a comma-separated file has amounts with a decimal point")
    for line, text in amounts:
        mark = shown_decimal_mark(text)
        if mark is not None:
            return MoneyNotation(mark, f"line {line} writes {text.strip()!r}, so this file's amounts have a decimal {mark.word}")
    return MoneyNotation(None, "no amount in this file shows whether it has a decimal point or a decimal comma")


def format_cents(amount_cents: int, currency: str = "usd") -> str:
    """``15000, 'usd'`` → ``'$150.00'``; negative amounts keep their sign in front."""
    sign = "-" if amount_cents < 0 else ""
    whole, cents = divmod(abs(amount_cents), 100)
    symbol = _SYMBOLS.get(currency.lower())
    number = f"{whole:,}.{cents:02d}"
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {currency.upper()}"


def parse_money(text: str, notation: MoneyNotation = DECIMAL_POINT) -> int:
    """An amount of money in cents, read in the file's ``notation``; ``InvalidInput`` saying why not.

    ``'150'``, ``'150.5'``, ``'$150.00'`` and ``'1,000.00'`` with a decimal point; ``'150,00'``
    and ``'1.500,00'`` with a decimal comma. Refused: an amount with the other decimal mark,
    three digits after the decimal mark, separators not between groups of three digits, and a
    separator in a file whose notation is unknown (``'1.500'`` could be 1.50 or 1500.00).
    """
    match = _AMOUNT.fullmatch(text.strip())
    if not match:
        raise InvalidInput(f"{text!r} is not an amount of money (use a form like 150 or 150.00)")
    number = match["number"]
    decimal = _DECIMAL_PART.search(number)
    whole, cents = (number[: decimal.start()], decimal["digits"]) if decimal else (number, "")
    mark = notation.decimal_mark
    if decimal and mark is not None and decimal["mark"] != mark.value:
        shown = DecimalMark(decimal["mark"])
        hint = _digits_of(whole, shown)
        rewrite = f" (here {hint}{mark.value}{cents.ljust(2, '0')})" if hint else ""
        raise InvalidInput(
            f"{text!r} has a decimal {shown.word}, but {notation.reason}; write every amount of the file "
            f"the same way{rewrite}"
        )
    if not whole.isdigit():
        whole = _thousands(text, whole, notation, has_decimal=decimal is not None)
    if len(whole) > MAX_WHOLE_DIGITS:
        raise InvalidInput(f"{text!r} is not an amount of money (use a form like 150 or 150.00)")
    amount_cents = int(whole) * 100 + int(cents.ljust(2, "0"))
    if amount_cents <= 0:
        raise InvalidInput(f"{text!r} must be more than zero")
    return amount_cents


def _thousands(text: str, whole: str, notation: MoneyNotation, *, has_decimal: bool) -> str:
    """The digits of ``whole`` (the part before any decimals), its thousands separators checked."""
    mark = notation.decimal_mark
    if not whole:
        raise InvalidInput(f"{text!r} is not an amount of money (use a form like 150 or 150.00)")
    if mark is None:
        words = " and ".join(m.word for m in DecimalMark if m.value in whole)
        raise InvalidInput(
            f"{text!r} is ambiguous: its {words} may separate thousands or be a decimal mark, and "
            f"{notation.reason}; write amounts without thousands separators and with two decimals "
            "(like 1500.00, or 1500,00 for a decimal comma)"
        )
    before, _, after = whole.rpartition(mark.value)
    if mark.value in whole and not has_decimal and after.isdigit() and len(after) >= 3 and mark.value not in before:
        readings = f"{before.replace(mark.other.value, '')}{after} or {before}{mark.value}{after[:2]}"
        raise InvalidInput(
            f"{text!r} has {len(after)} digits after the decimal {mark.word}, but an amount has at most two "
            f"({notation.reason}); write it as {readings}"
        )
    digits = _digits_of(whole, mark)
    if digits is None:
        raise InvalidInput(
            f"{text!r} is not an amount of money: with a decimal {mark.word}, a {mark.other.word} may only "
            f"separate thousands, between groups of three digits (like {_EXAMPLES[mark]})"
        )
    return digits


_EXAMPLES = {DecimalMark.POINT: "1,500.00", DecimalMark.COMMA: "1.500,00"}


def _digits_of(whole: str, mark: DecimalMark) -> str | None:
    """The digits of ``whole`` read with decimal ``mark``: the other mark separates thousands in
    groups of three. None when ``whole`` is not written that way."""
    if whole.isdigit():
        return whole
    groups = whole.split(mark.other.value)
    if len(groups[0]) in (1, 2, 3) and all(len(g) == 3 for g in groups[1:]) and all(g.isdigit() for g in groups):
        return "".join(groups)
    return None
