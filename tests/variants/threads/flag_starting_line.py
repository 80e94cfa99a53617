"""VARIANT: the starting line is a flag: each thread polls it, sleeping a little, until the
main thread raises it after the last start(); the count is guarded by explicit
acquire()/release()."""

from __future__ import annotations

import threading
import time


class Counter:
    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._total = 0

    def increment(self, by: int = 1) -> None:
        self._guard.acquire()
        self._total += by
        self._guard.release()

    @property
    def value(self) -> int:
        return self._total


class _StartingLine:
    def __init__(self) -> None:
        self.open = False


def hammer(counter, threads: int = 8, per_thread: int = 10_000) -> int:
    line = _StartingLine()

    def work() -> None:
        while not line.open:
            time.sleep(0.001)
        for _ in range(per_thread):
            counter.increment()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    line.open = True
    for worker in workers:
        worker.join()
    return counter.value
