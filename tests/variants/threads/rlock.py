"""VARIANT: an RLock instead of a Lock, and value reads the count without taking it."""

from __future__ import annotations

import threading


class Counter:
    def __init__(self) -> None:
        self._count = 0
        self._guard = threading.RLock()

    def increment(self, by: int = 1) -> None:
        with self._guard:
            self._count = self._count + by

    @property
    def value(self) -> int:
        return self._count  # one read of one attribute: no update can be half done


def hammer(counter, threads: int = 8, per_thread: int = 10_000) -> int:
    ready = threading.Barrier(threads)

    def loop() -> None:
        ready.wait()
        for _ in range(per_thread):
            counter.increment()

    pool = [threading.Thread(target=loop, name=f"hammer-{n}") for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return counter.value
