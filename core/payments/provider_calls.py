"""Calls to the payment provider run on worker threads, a bounded number in flight at once,
their results handed back one at a time on the calling thread (the backfill, payment sync)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

from core.errors import PaymentProviderError

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


def _never() -> bool:
    return False


def run_concurrently(
    tasks: Iterable[tuple[K, Callable[[], T]]],
    *,
    concurrency: int,
    on_done: Callable[[K, T | None, PaymentProviderError | None], None],
    should_stop: Callable[[], bool] = _never,
    thread_name_prefix: str = "provider",
) -> None:
    """Run provider calls on worker threads, at most ``concurrency`` in flight.

    ``tasks`` are (key, call) pairs, taken from the iterable only as a place frees up.
    ``on_done(key, value, error)`` runs on the calling thread, one result at a time, so it
    may use the caller's database session; a ``PaymentProviderError`` raised by a call is
    handed to it as ``error``. No new call starts once ``should_stop()`` is true. Anything
    else (a bug, an interrupt, an error raised by ``on_done`` or ``should_stop``) cancels the
    calls that have not started, starts no more, and propagates once the running ones end.
    """
    pending: Iterator[tuple[K, Callable[[], T]]] = iter(tasks)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=thread_name_prefix) as pool:
        in_flight: dict[Future[T], K] = {}

        def submit_next() -> None:
            if should_stop():
                return
            for key, call in pending:
                in_flight[pool.submit(call)] = key
                return

        try:
            for _ in range(concurrency):
                submit_next()
            while in_flight:
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:
                    key = in_flight.pop(future)
                    try:
                        value = future.result()
                    except PaymentProviderError as exc:
                        on_done(key, None, exc)
                    else:
                        on_done(key, value, None)
                    submit_next()
        except BaseException:
            for future in in_flight:
                future.cancel()
            raise
