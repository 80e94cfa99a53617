"""VARIANT: each thread adds to its own cell (threading.local); value sums the cells under a lock."""

from __future__ import annotations

import threading


class Counter:
    def __init__(self) -> None:
        self._mine = threading.local()
        self._cells: list[list[int]] = []
        self._lock = threading.Lock()  # guards the list of cells, not the adding

    def _cell(self) -> list[int]:
        cell = getattr(self._mine, "cell", None)
        if cell is None:
            cell = self._mine.cell = [0]
            with self._lock:
                self._cells.append(cell)  # kept after the thread ends, so nothing is lost
        return cell

    def increment(self, by: int = 1) -> None:
        self._cell()[0] += by  # only this thread ever writes this cell

    @property
    def value(self) -> int:
        with self._lock:
            return sum(cell[0] for cell in self._cells)


def hammer(counter, threads: int = 8, per_thread: int = 10_000) -> int:
    barrier = threading.Barrier(threads + 1)  # the workers and this thread

    def work() -> None:
        barrier.wait()
        for _ in range(per_thread):
            counter.increment()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    for worker in workers:
        worker.join()
    return counter.value
