"""MUTANT: the count lives in a module-level variable, so every Counter shares one count and a
new Counter starts where the last one stopped.

expect: wrong
clause: C1
"""

from __future__ import annotations

import threading

_count = 0
_count_lock = threading.Lock()


class Counter:
    """A count that many threads may add to at once."""

    def __init__(self) -> None:
        pass

    def increment(self, by: int = 1) -> None:
        global _count
        with _count_lock:
            _count += by

    @property
    def value(self) -> int:
        # A property with no setter: reading works, `counter.value = 5` raises AttributeError.
        with _count_lock:
            return _count


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
