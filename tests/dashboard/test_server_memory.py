"""The dashboard server keeps its allocator to two arenas and hands freed pages back
(``dashboard.memory``): checked in a fresh process, as the server would start, on glibc."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc's allocator only"
)

# Six threads (as six browser sessions' scripts) allocate at once and hold it; then glibc's own
# report (malloc_stats, on stderr) lists the arenas in use.
SESSIONS = textwrap.dedent("""
    import ctypes, sys, threading
    from dashboard.memory import cap_allocator_arenas
    if sys.argv[1] == "capped":
        assert cap_allocator_arenas()
    started, done = threading.Barrier(7), threading.Event()
    def session():
        held = [bytearray(4000) for _ in range(500)]  # beyond Python's own small-object pools
        started.wait()
        done.wait()
    threads = [threading.Thread(target=session) for _ in range(6)]
    for thread in threads:
        thread.start()
    started.wait()
    ctypes.CDLL(None).malloc_stats()
    done.set()
""")


def _arenas(mode: str) -> int:
    report = subprocess.run([sys.executable, "-c", SESSIONS, mode], cwd=REPO, capture_output=True, text=True,
                            check=True, timeout=60).stderr
    return sum(1 for line in report.splitlines() if line.startswith("Arena "))


def test_sessions_share_two_arenas_once_capped() -> None:
    assert _arenas("capped") <= 2


def test_without_the_cap_each_session_thread_gets_its_own_arena() -> None:
    # The check above can fail: the same threads, uncapped, spread over more arenas.
    assert _arenas("uncapped") > 2


RELEASE = textwrap.dedent("""
    import re
    from pathlib import Path
    from dashboard.memory import release_free_memory
    def resident_kb():
        return int(re.search(r"VmRSS:\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1))
    rows = [bytearray(3000) for _ in range(40_000)]  # about 120 MB, as a large league's rows
    keep = rows[::1000]  # a few survive, so the heap's top cannot simply shrink
    del rows
    before = resident_kb()
    release_free_memory()
    print(before, resident_kb())
""")


def test_freed_memory_goes_back_to_the_machine() -> None:
    before, after = map(int, subprocess.run([sys.executable, "-c", RELEASE], cwd=REPO, capture_output=True,
                                            text=True, check=True, timeout=60).stdout.split())
    assert before - after > 50_000, (before, after)  # kB: most of the freed 120 MB
