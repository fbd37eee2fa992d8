"""Text from outside (names, file names, league settings) made safe to print on a terminal.

A name in a roster can hold an escape sequence that colours, retitles or clears the terminal
of whoever runs a command, a CR or LF that forges a line in a cron log, or a bidirectional
override that shows the rest of the line backwards. Every such character is printed as its
escape instead (``\\x1b``, ``\\r``, ``\\u202e``), so the operator sees that it is there.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from pathlib import Path

from core.errors import InvalidInput

# C0 controls (CR, LF, TAB and ESC among them), DEL, C1 controls (CSI is \x9b), the Unicode
# line and paragraph separators, and the bidirectional embeddings, overrides and isolates.
_UNSAFE_ON_A_TERMINAL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def shown(text: object) -> str:
    """``text`` as one safe line for a terminal: control characters made visible, the rest as is."""
    return _UNSAFE_ON_A_TERMINAL.sub(_visible, "" if text is None else str(text))


def _visible(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


def write_csv(target: Path, data: bytes | Iterable[bytes]) -> None:
    """Write a CSV the command made to ``target`` (``-``: standard output) and say where it went.

    ``data`` may come in chunks (a streamed export): each is written as it comes, so a large
    league's file never sits whole in memory.
    """
    chunks = [data] if isinstance(data, bytes) else data
    if str(target) == "-":
        for chunk in chunks:
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        return
    if target.is_dir():
        raise InvalidInput(f"{target} is a folder; give a file name for the CSV")
    partial = target.with_name(target.name + ".part")  # a file cut short never takes the name
    try:
        with partial.open("wb") as file:
            for chunk in chunks:
                file.write(chunk)
        partial.replace(target)
    except OSError as exc:
        raise InvalidInput(f"cannot write {target}: {exc.strerror}") from None
    finally:
        partial.unlink(missing_ok=True)
    print(f"Wrote {shown(str(target))}")
