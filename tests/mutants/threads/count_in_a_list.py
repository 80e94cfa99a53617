"""MUTANT: the count is the one item of a list that increment() adds to with no lock
(`self._box[0] += by`). Reading the attribute is not where the race is: the item is read
and written back with nothing in between that a hook sees.

expect: race
clause: C3
"""

from __future__ import annotations

import threading


class Counter:
    """A count that many threads may add to at once."""

    def __init__(self) -> None:
        self._box = [0]
        # ONE lock, made once and shared by every call. A lock made inside increment()
        # would be a new, private lock each time: nobody else could ever be waiting on it.
        self._lock = threading.Lock()

    def increment(self, by: int = 1) -> None:
        self._box[0] += by

    @property
    def value(self) -> int:
        # A property with no setter: reading works, `counter.value = 5` raises AttributeError.
        with self._lock:
            return self._box[0]


def _pound(counter, start_line: threading.Barrier, times: int) -> None:
    start_line.wait()  # nobody starts until everybody has been started
    for _ in range(times):
        counter.increment()


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
