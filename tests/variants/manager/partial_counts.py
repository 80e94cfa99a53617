"""VARIANT: tally's workers count locally and merge their partial counts under the lock.

Each worker touches the shared dict only once per distinct word it saw, in one locked merge;
count_down takes the lock by hand with acquire/release and shuts the manager down itself.
"""

from __future__ import annotations

import multiprocessing
from collections import Counter


def _decrement(shared, lock) -> None:
    lock.acquire()
    try:
        shared["count"] = shared["count"] - 1
    finally:
        lock.release()


def count_down(start: int = 100, workers: int = 50) -> int:
    manager = multiprocessing.Manager()
    try:
        shared = manager.dict(count=start)
        lock = multiprocessing.Lock()
        processes = []
        for _ in range(workers):
            process = multiprocessing.Process(target=_decrement, args=(shared, lock))
            process.start()
            processes.append(process)
        for process in processes:
            process.join()
        return shared.get("count")
    finally:
        manager.shutdown()


def _merge_partial(words: list[str], shared, lock) -> None:
    partial = Counter(words)  # no one else can see this: no lock needed while counting
    with lock:  # but the merge reads and writes shared keys: one worker at a time
        for word, n in partial.items():
            shared[word] = shared.get(word, 0) + n


def tally(words: list[str], workers: int = 4) -> dict[str, int]:
    with multiprocessing.Manager() as manager:
        shared = manager.dict()
        lock = multiprocessing.Lock()
        processes = [
            multiprocessing.Process(target=_merge_partial, args=(words[n::workers], shared, lock))
            for n in range(workers)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        return {word: shared[word] for word in shared.keys()}
