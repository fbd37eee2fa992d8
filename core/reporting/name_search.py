"""Name search that ignores case and accents: "garcia" finds "García", "zoe" finds "ZOË".

One folding, written three ways that agree: ``fold`` in Python (for the search term), and
``folded(column)`` in SQL — PostgreSQL's built-in ``translate`` (no extension needed), and on
SQLite a function registered on every connection (``register_sqlite_functions``), since its
``lower()`` only knows ASCII. Each accented Latin letter in the table becomes its plain
lower-case letter, a combining accent (a name saved decomposed, as some Mac programs do:
"e" followed by U+0301) is dropped, and anything else is lower-cased and kept as it is.

The database applies ``folded`` when a name is written, not when it is searched: parents and
players keep their folded names in ``search_name``, generated columns (``core.models``), so a
search compares stored text (trigram-indexed on PostgreSQL). Changing the folding therefore
needs a migration that adds those columns again (see migration 0009).
"""

from __future__ import annotations

import unicodedata
from typing import Any

from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import String

ACCENTED = (
    "ÀÁÂÃÄÅàáâãäåĀāĂăĄąÇçĆćĈĉĊċČčĎďĐđÈÉÊËèéêëĒēĔĕĖėĘęĚěĜĝĞğĠġĢģĤĥĦħÌÍÎÏìíîïĨĩĪīĬĭĮįİ"
    "ĴĵĶķĹĺĻļĽľŁłÑñŃńŅņŇňÒÓÔÕÖØòóôõöøŌōŎŏŐőŔŕŖŗŘřŚśŜŝŞşŠšŢţŤťŦŧÙÚÛÜùúûüŨũŪūŬŭŮůŰűŲų"
    "ŴŵÝýÿŶŷŸŹźŻżŽž"
)
# Letters Unicode does not decompose into a base letter and an accent.
_UNDECOMPOSED = {"Đ": "d", "đ": "d", "Ħ": "h", "ħ": "h", "Ł": "l", "ł": "l", "Ø": "o", "ø": "o", "Ŧ": "t", "ŧ": "t"}
PLAIN = "".join(
    _UNDECOMPOSED.get(letter) or unicodedata.normalize("NFKD", letter)[0].lower() for letter in ACCENTED
)
# Combining diacritical marks: ``translate`` deletes what has no counterpart in PLAIN.
COMBINING = "".join(chr(code) for code in range(0x0300, 0x0370))
_TABLE = str.maketrans(ACCENTED, PLAIN, COMBINING)
SQLITE_FUNCTION = "billing_fold"


def fold(text: str) -> str:
    """``text`` without accents, in lower case (what ``folded`` computes in the database)."""
    return text.translate(_TABLE).lower()


def contains_pattern(search: str) -> str:
    """The ``LIKE`` pattern (escape character ``\\``) of stored folded names holding ``search``."""
    folded_search = fold(search.strip()).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{folded_search}%"


def _sqlite_fold(value: Any) -> Any:
    return fold(value) if isinstance(value, str) else value


def register_sqlite_functions(dbapi_connection: Any) -> None:
    """Give a new SQLite connection the function ``folded`` compiles to."""
    dbapi_connection.create_function(SQLITE_FUNCTION, 1, _sqlite_fold, deterministic=True)


class folded(FunctionElement[str]):  # noqa: N801 - reads as a SQL function
    """``fold`` applied to a column or expression in SQL."""

    type = String()
    inherit_cache = True
    name = "folded"


@compiles(folded, "postgresql")
def _folded_postgresql(element: folded, compiler: Any, **kw: Any) -> str:
    argument = compiler.process(element.clauses, **kw)
    return f"lower(translate({argument}, '{ACCENTED}{COMBINING}', '{PLAIN}'))"


@compiles(folded, "sqlite")
def _folded_sqlite(element: folded, compiler: Any, **kw: Any) -> str:
    return f"{SQLITE_FUNCTION}({compiler.process(element.clauses, **kw)})"
