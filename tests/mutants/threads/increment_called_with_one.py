"""MUTANT: hammer()'s threads call `counter.increment(1)`, an argument that a counter of another
kind need not accept.

expect: wrong
clause: C5
"""

from __future__ import annotations

import threading


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


def _pound(counter, start_line: threading.Barrier, times: int) -> None:
    start_line.wait()  # nobody starts until everybody has been started
    for _ in range(times):
        counter.increment(1)


def hammer(counter, threads: int = 8, per_thread: int = 10_000) -> int:
    # Starting a thread takes a while; without the barrier the first thread could be
    # done before the last one exists, and the counter would never be contended.
    start_line = threading.Barrier(threads)
    workers = [
        threading.Thread(target=_pound, args=(counter, start_line, per_thread))
        for _ in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()  # read the count only once every thread has finished adding
    return counter.value
