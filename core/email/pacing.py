"""Pacing: keep a sender under a per-minute rate, shared by every thread that sends."""

from __future__ import annotations

import threading
import time
from typing import Callable


class Pacer:
    """Spaces calls evenly at ``per_minute`` a minute, across threads.

    Each ``wait()`` reserves the next free slot and sleeps until it. Slots are evenly spaced
    (no bursts), so a server counting over any window sees at most the configured rate.
    """

    def __init__(
        self,
        per_minute: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("the rate must be more than zero a minute")
        self.interval = 60.0 / per_minute
        self._clock, self._sleep = clock, sleep
        self._next_slot = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = self._clock()
            slot = max(now, self._next_slot)
            self._next_slot = slot + self.interval
        if slot > now:
            self._sleep(slot - now)

    def hold_off(self, seconds: float) -> None:
        """Push every later slot back by ``seconds`` (the provider asked us to slow down)."""
        with self._lock:
            self._next_slot = max(self._next_slot, self._clock() + seconds)
