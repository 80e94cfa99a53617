"""VARIANT: a SyncManager started and shut down by hand, a lock made by a helper, and reads
by count_down before and after the work.

count_down fills the dict after making it, looks at the count before starting anyone, hands
the workers their arguments through functools.partial and kwargs, and reads the final count
while holding the lock; the workers take a Manager RLock with acquire/release and write
with update(). tally deals out chunks with divmod and copies the result item by item.
"""

from __future__ import annotations

import functools
import multiprocessing
from multiprocessing.managers import SyncManager


def _make_lock(manager: SyncManager):
    return manager.RLock()


def _subtract(shared, *, lock) -> None:
    lock.acquire()
    try:
        now = shared["count"]
        shared.update(count=now - 1)
    finally:
        lock.release()


def count_down(start: int = 100, workers: int = 50) -> int:
    manager = SyncManager()
    manager.start()
    try:
        shared = manager.dict()
        shared["count"] = start
        assert shared["count"] == start  # a look before the work: nobody has started yet
        lock = _make_lock(manager)
        processes = [
            multiprocessing.Process(
                target=functools.partial(_subtract, shared), kwargs={"lock": lock}
            )
            for _ in range(workers)
        ]
        for process in processes:
            process.start()
        for process in reversed(processes):
            process.join()
        with lock:
            return shared["count"]
    finally:
        manager.shutdown()


def _count(chunk: list[str], shared, lock) -> None:
    for word in chunk:
        with lock:
            shared[word] = shared[word] + 1 if word in shared else 1


def tally(words: list[str], workers: int = 4) -> dict[str, int]:
    size, extra = divmod(len(words), workers)
    chunks, at = [], 0
    for n in range(workers):
        take = size + (1 if n < extra else 0)
        chunks.append(words[at : at + take])
        at += take
    with multiprocessing.Manager() as manager:
        shared = manager.dict()
        lock = multiprocessing.Lock()
        processes = [
            multiprocessing.Process(target=_count, args=(chunk, shared, lock)) for chunk in chunks
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        return {word: count for word, count in shared.items()}
