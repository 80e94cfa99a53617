"""VARIANT: the lock is a Manager().Lock() proxy, and tally deals out contiguous chunks.

The lock lives in the manager's server process like the dict does; acquiring it is one more
round trip, but it serialises the workers just as well as a multiprocessing.Lock.
"""

from __future__ import annotations

import multiprocessing


def _decrement(shared, lock) -> None:
    with lock:
        shared["count"] -= 1


def count_down(start: int = 100, workers: int = 50) -> int:
    with multiprocessing.Manager() as manager:
        shared = manager.dict({"count": start})
        lock = manager.Lock()
        processes = [
            multiprocessing.Process(target=_decrement, args=(shared, lock)) for _ in range(workers)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        return shared["count"]


def _add_words(chunk: list[str], shared, lock) -> None:
    for word in chunk:
        with lock:
            if word in shared:
                shared[word] += 1
            else:
                shared[word] = 1


def tally(words: list[str], workers: int = 4) -> dict[str, int]:
    size = -(-len(words) // workers) if words else 0  # ceiling: the last chunk may be short
    chunks = [words[n * size : (n + 1) * size] for n in range(workers)]
    with multiprocessing.Manager() as manager:
        shared = manager.dict()
        lock = manager.Lock()
        processes = [
            multiprocessing.Process(target=_add_words, args=(chunk, shared, lock))
            for chunk in chunks
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        return shared.copy()
