"""VARIANT: explicit acquire()/release() in try/finally, Thread subclasses, an Event as the starting line."""

from __future__ import annotations

import threading


class Counter:
    __slots__ = ("_lock", "_n")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._n = 0

    def increment(self, by: int = 1) -> None:
        self._lock.acquire()
        try:
            n = self._n
            self._n = n + by
        finally:
            self._lock.release()

    value = property(lambda self: self._n, doc="the count, read-only")


class _Worker(threading.Thread):
    def __init__(self, counter, go: threading.Event, times: int) -> None:
        super().__init__(daemon=True)
        self.counter = counter
        self.go = go
        self.times = times

    def run(self) -> None:
        self.go.wait()
        for _ in range(self.times):
            self.counter.increment()


def hammer(counter, threads: int = 8, per_thread: int = 10_000) -> int:
    go = threading.Event()
    workers = [_Worker(counter, go, per_thread) for _ in range(threads)]
    for worker in workers:
        worker.start()
    go.set()  # everyone has been started: let them all go at once
    while workers:
        workers.pop().join()
    return counter.value
