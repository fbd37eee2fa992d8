"""The one thread pool for calls to the payment provider: bounded, results on the calling thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from core.errors import PaymentProviderError
from core.payments.provider_calls import run_concurrently


class Recorder:
    """Calls that note when they start, and an ``on_done`` that notes what it was handed."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: list[int] = []
        self.done: list[tuple[int, Any, PaymentProviderError | None]] = []

    def call(self, key: int, then: Callable[[], Any] = lambda: None) -> Callable[[], Any]:
        def run() -> Any:
            with self.lock:
                self.started.append(key)
            then()
            return f"value {key}"

        return run

    def on_done(self, key: int, value: Any, error: PaymentProviderError | None) -> None:
        self.done.append((key, value, error))


class Boom(Exception):
    """A bug in a call or a callback: not a provider error."""


class Crash(BaseException):
    """The process being interrupted."""


def test_at_most_concurrency_calls_are_in_flight_and_that_many_do_run_at_once():
    concurrency, total = 3, 24
    lock = threading.Lock()
    active = peak = 0
    first_ones = threading.Barrier(concurrency)  # breaks (and fails the test) unless 3 run at once
    pulled = 0
    in_flight_seen: list[int] = []

    def call(index: int) -> Callable[[], int]:
        def run() -> int:
            nonlocal active, peak
            with lock:
                active += 1
                peak = max(peak, active)
            if index < concurrency:
                first_ones.wait(timeout=5)
            time.sleep(0.005)
            with lock:
                active -= 1
            return index

        return run

    def tasks() -> Iterator[tuple[int, Callable[[], int]]]:
        nonlocal pulled
        for index in range(total):
            pulled += 1
            yield index, call(index)

    done: list[int] = []

    def on_done(key: int, value: int | None, error: PaymentProviderError | None) -> None:
        assert error is None and value == key
        in_flight_seen.append(pulled - len(done))  # submitted and not yet handed to on_done
        done.append(key)

    run_concurrently(tasks(), concurrency=concurrency, on_done=on_done)

    assert sorted(done) == list(range(total))
    assert peak == concurrency
    # tasks are taken from the iterable only as a place frees up, not all at once
    assert max(in_flight_seen) <= concurrency


def test_on_done_runs_on_the_calling_thread_and_calls_on_named_workers():
    caller = threading.get_ident()
    call_threads: list[str] = []
    done_threads: list[int] = []

    def call() -> None:
        call_threads.append(threading.current_thread().name)

    def on_done(key: int, value: Any, error: PaymentProviderError | None) -> None:
        done_threads.append(threading.get_ident())

    run_concurrently([(key, call) for key in range(6)], concurrency=2, on_done=on_done,
                     thread_name_prefix="stripe-test")

    assert done_threads == [caller] * 6
    assert len(call_threads) == 6 and all(name.startswith("stripe-test") for name in call_threads)


def test_provider_errors_are_handed_to_on_done_and_the_others_go_on():
    recorder = Recorder()

    def refuse() -> None:
        raise PaymentProviderError("card_declined", http_status=402)

    tasks = [(key, recorder.call(key, refuse if key % 2 else (lambda: None))) for key in range(6)]
    run_concurrently(tasks, concurrency=3, on_done=recorder.on_done)

    by_key = {key: (value, error) for key, value, error in recorder.done}
    assert sorted(by_key) == list(range(6))
    for key, (value, error) in by_key.items():
        if key % 2:
            assert value is None and isinstance(error, PaymentProviderError) and error.http_status == 402
        else:
            assert value == f"value {key}" and error is None


def test_another_exception_in_a_call_propagates_and_no_new_call_starts():
    recorder = Recorder()

    def bug() -> None:
        raise Boom("a bug")

    tasks = [(key, recorder.call(key, bug if key == 2 else (lambda: None))) for key in range(10)]
    with pytest.raises(Boom):
        run_concurrently(tasks, concurrency=1, on_done=recorder.on_done)

    assert recorder.started == [0, 1, 2]
    assert [key for key, _, _ in recorder.done] == [0, 1]


@pytest.mark.parametrize("raised", [Boom, Crash], ids=["an error", "an interrupt"])
def test_an_exception_raised_by_on_done_propagates_and_no_new_call_starts(raised: type[BaseException]):
    recorder = Recorder()

    def on_done(key: int, value: Any, error: PaymentProviderError | None) -> None:
        recorder.on_done(key, value, error)
        if len(recorder.done) == 3:
            raise raised()

    tasks = [(key, recorder.call(key)) for key in range(10)]
    with pytest.raises(raised):
        run_concurrently(tasks, concurrency=1, on_done=on_done)

    assert recorder.started == [0, 1, 2]


def test_an_exception_propagates_once_the_running_calls_end_and_starts_no_more():
    recorder = Recorder()
    ended: list[int] = []

    def on_done(key: int, value: Any, error: PaymentProviderError | None) -> None:
        raise Boom("on_done failed")

    second_running = threading.Event()

    def slow() -> None:
        second_running.set()
        time.sleep(0.1)
        ended.append(1)

    # key 0 returns once key 1 runs, and its on_done fails while key 1 is still running
    tasks = [(0, recorder.call(0, lambda: second_running.wait(5))), (1, recorder.call(1, slow))]
    tasks += [(key, recorder.call(key)) for key in range(2, 10)]
    with pytest.raises(Boom):
        run_concurrently(tasks, concurrency=2, on_done=on_done)

    assert ended == [1]
    assert sorted(recorder.started) == [0, 1]


def test_no_new_call_starts_once_should_stop_is_true():
    recorder = Recorder()
    tasks = [(key, recorder.call(key)) for key in range(10)]

    run_concurrently(tasks, concurrency=1, on_done=recorder.on_done, should_stop=lambda: len(recorder.done) >= 3)

    assert recorder.started == [0, 1, 2]
    assert [key for key, _, _ in recorder.done] == [0, 1, 2]


def test_nothing_starts_when_should_stop_is_already_true():
    recorder = Recorder()

    run_concurrently([(key, recorder.call(key)) for key in range(4)], concurrency=2, on_done=recorder.on_done,
                     should_stop=lambda: True)

    assert recorder.started == [] and recorder.done == []


def test_no_tasks_is_nothing_to_do():
    recorder = Recorder()

    run_concurrently([], concurrency=4, on_done=recorder.on_done)

    assert recorder.done == []
