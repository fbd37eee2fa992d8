"""Pacing: keep a sender under a per-minute rate, shared by every thread that sends."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Pacer:
    """Spaces calls at ``per_minute`` a minute across threads, allowing a burst of ``burst``.

    Each ``wait()`` reserves the next slot and sleeps until it (the generic cell rate
    algorithm). With ``burst=1`` slots are strictly evenly spaced. A larger ``burst`` lets a
    sender that fell behind (a slow database commit, a late thread) reclaim up to
    ``burst - 1`` missed slots at once, so its average stays at the rate; no window of any
    length ever sees more than its share of the rate plus ``burst - 1`` calls.
    """

    def __init__(
        self,
        per_minute: float,
        *,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("the rate must be more than zero a minute")
        if burst < 1:
            raise ValueError("the burst must be at least one call")
        self.interval = 60.0 / per_minute
        self.burst = burst
        self._clock, self._sleep = clock, sleep
        self._next_slot = float("-inf")
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = self._clock()
            slot = max(self._next_slot, now - (self.burst - 1) * self.interval)
            self._next_slot = slot + self.interval
        if slot > now:
            self._sleep(slot - now)

    def hold_off(self, seconds: float) -> None:
        """Push every later slot back by ``seconds`` (the provider asked us to slow down)."""
        with self._lock:
            self._next_slot = max(self._next_slot, self._clock() + seconds)
