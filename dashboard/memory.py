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

ARENAS = 2
_M_ARENA_MAX = -8  # glibc's mallopt parameter


def cap_allocator_arenas(arenas: int = ARENAS) -> bool:
    """Cap the allocator's arenas at ``arenas``, once and before many threads have allocated
    (new arenas are created up to the cap; arenas already made stay). True when it took."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl, say)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, arenas))


def release_free_memory() -> None:
    """Hand the allocator's free pages back to the machine (glibc's ``malloc_trim``): after a
    run that read a large league, what it freed otherwise stays counted against the server."""
    if not sys.platform.startswith("linux"):
        return
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim.argtypes = (ctypes.c_size_t,)
    trim(0)
