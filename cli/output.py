"""Text from outside (names, file names, league settings) made safe to print on a terminal.

A name in a roster can hold an escape sequence that colours, retitles or clears the terminal
of whoever runs a command, a CR or LF that forges a line in a cron log, or a bidirectional
override that shows the rest of the line backwards. Every such character is printed as its
escape instead (``\\x1b``, ``\\r``, ``\\u202e``), so the operator sees that it is there.
"""

from __future__ import annotations

import re

# C0 controls (CR, LF, TAB and ESC among them), DEL, C1 controls (CSI is \x9b), the Unicode
# line and paragraph separators, and the bidirectional embeddings, overrides and isolates.
_UNSAFE_ON_A_TERMINAL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def shown(text: object) -> str:
    """``text`` as one safe line for a terminal: control characters made visible, the rest as is."""
    return _UNSAFE_ON_A_TERMINAL.sub(_visible, "" if text is None else str(text))


def _visible(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")
