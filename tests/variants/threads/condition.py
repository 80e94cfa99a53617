"""VARIANT: a Condition guards the count, and the threads start together when a Condition
says so: every update happens inside `with cond:`, and value reads under it too."""

from __future__ import annotations

import threading


class Counter:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._count = 0

    def increment(self, by: int = 1) -> None:
        with self._cond:
            self._count += by

    @property
    def value(self) -> int:
        with self._cond:
            return self._count


class _StartLine:
    """Threads wait here until the last one has arrived, then all go."""

    def __init__(self, parties: int) -> None:
        self._cond = threading.Condition()
        self._waiting = parties

    def wait(self) -> None:
        with self._cond:
            self._waiting -= 1
            if self._waiting == 0:
                self._cond.notify_all()
            while self._waiting:
                self._cond.wait()


def hammer(counter, threads: int = 8, per_thread: int = 10_000) -> int:
    line = _StartLine(threads)

    def work() -> None:
        line.wait()
        for _ in range(per_thread):
            counter.increment()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return counter.value
