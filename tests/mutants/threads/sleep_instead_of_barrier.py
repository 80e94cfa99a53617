"""MUTANT: hammer() has no real starting line: each thread sleeps 0.05 s and hopes the others
have been started by then.

expect: contract
clause: C6
"""

from __future__ import annotations

import threading
import time


class Counter:
    """A count that many threads may add to at once."""

    def __init__(self) -> None:
        self._value = 0
        # ONE lock, made once and shared by every call. A lock made inside increment()
        # would be a new, private lock each time: nobody else could ever be waiting on it.
        self._lock = threading.Lock()

    def increment(self, by: int = 1) -> None:
        # `+=` is three steps: read the old value, add, write it back. Another thread
        # may run between the read and the write; the lock makes the three steps one.
        with self._lock:
            self._value += by

    @property
    def value(self) -> int:
        # A property with no setter: reading works, `counter.value = 5` raises AttributeError.
        with self._lock:
            return self._value


def _pound(counter, times: int) -> None:
    time.sleep(0.05)  # "long enough" for every thread to have been started
    for _ in range(times):
        counter.increment()


def hammer(counter, threads: int = 8, per_thread: int = 10_000) -> int:
    workers = [threading.Thread(target=_pound, args=(counter, per_thread)) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()  # read the count only once every thread has finished adding
    return counter.value
