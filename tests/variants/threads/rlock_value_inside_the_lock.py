"""VARIANT: increment() holds an RLock and reads the count through `self.value`, which takes
the same RLock again (an RLock lets its holder do that), and returns the new count; hammer()
reads the value before the work too, and its starting line is a Semaphore the main thread
releases once per thread after the last start()."""

from __future__ import annotations

import threading


class Counter:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._value = 0

    def increment(self, by: int = 1) -> int:
        with self._lock:
            self._value = self.value + by
            return self._value

    @property
    def value(self) -> int:
        with self._lock:
            return self._value


def hammer(counter, threads: int = 8, per_thread: int = 10_000) -> int:
    print(f"hammering a counter at {counter.value}")
    go = threading.Semaphore(0)

    def work() -> None:
        go.acquire()
        for _ in range(per_thread):
            counter.increment()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    go.release(threads)
    for worker in workers:
        worker.join()
    return counter.value
