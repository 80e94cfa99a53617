"""VARIANT: a Condition over a plain Lock is both the counter's guard and the starting line:
each thread counts itself in and waits with wait_for() until all have arrived."""

from __future__ import annotations

import threading


class Counter:
    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._count = 0

    def increment(self, by: int = 1) -> None:
        with self._cond:
            self._count += by

    @property
    def value(self) -> int:
        with self._cond:
            return self._count


def hammer(counter, threads: int = 8, per_thread: int = 10_000) -> int:
    line = threading.Condition(threading.Lock())
    arrived = [0]

    def work() -> None:
        with line:
            arrived[0] += 1
            line.notify_all()
            line.wait_for(lambda: arrived[0] == threads)
        for _ in range(per_thread):
            counter.increment()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return counter.value
