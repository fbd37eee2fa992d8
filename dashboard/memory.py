"""The server's memory as the machine sees it.

glibc's allocator gives every thread that allocates an arena of its own, up to eight per core,
and an arena keeps what it once held. Streamlit runs each browser session's script in a thread
of its own, so each new session used to keep a large league's worth of freed rows in an arena
nobody else reused. Two arenas are plenty for a server whose threads mostly wait on the
database: ``cap_allocator_arenas`` sets that, as ``MALLOC_ARENA_MAX=2`` would, from inside the
process (so it holds however the dashboard is started). Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any

ARENAS = 2
_M_ARENA_MAX = -8  # glibc's mallopt parameter


def cap_allocator_arenas(arenas: int = ARENAS) -> bool:
    """Cap the allocator's arenas at ``arenas``, once and before many threads have allocated
    (new arenas are created up to the cap; arenas already made stay). True when it took."""
    mallopt = _glibc("mallopt", ctypes.c_int, ctypes.c_int)
    return mallopt is not None and bool(mallopt(_M_ARENA_MAX, arenas))


def release_free_memory() -> None:
    """Hand the allocator's free pages back to the machine (glibc's ``malloc_trim``): after a
    run that read a large league, what it freed otherwise stays counted against the server."""
    trim = _glibc("malloc_trim", ctypes.c_size_t)
    if trim is not None:
        trim(0)


def _glibc(name: str, *argtypes: type) -> Any:
    """glibc's function ``name`` (returning an int), or None elsewhere (another system, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    function.argtypes = argtypes
    function.restype = ctypes.c_int
    return function
