"""MUTANT: tally reads a word's count under the lock, but writes it back after releasing it.

expect: race
clause: C8
trace: race
"""

from __future__ import annotations

import multiprocessing


def _take_one(shared, lock) -> None:
    # `shared["count"] -= 1` is two messages to the manager: a read, then a write. Another
    # process can read the same old value in between, and then one of the two writes is
    # lost. Holding the lock across both makes the pair one step for everyone else.
    with lock:
        shared["count"] -= 1


def count_down(start: int = 100, workers: int = 50) -> int:
    # `with` shuts the manager's server process down when we are done with it.
    with multiprocessing.Manager() as manager:
        shared = manager.dict({"count": start})
        lock = multiprocessing.Lock()  # ONE lock, made here and handed to every worker
        processes = [
            multiprocessing.Process(target=_take_one, args=(shared, lock)) for _ in range(workers)
        ]
        for process in processes:
            process.start()
        for process in processes:  # the count is final only once every worker is done
            process.join()
        return shared["count"]


def _count_words(words: list[str], shared, lock) -> None:
    for word in words:
        with lock:  # the read and the write of one word, as one step
            seen = shared.get(word, 0)
        shared[word] = seen + 1


def tally(words: list[str], workers: int = 4) -> dict[str, int]:
    with multiprocessing.Manager() as manager:
        shared = manager.dict()
        lock = multiprocessing.Lock()
        processes = [
            multiprocessing.Process(target=_count_words, args=(words[n::workers], shared, lock))
            for n in range(workers)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        # A proxy stops working once the manager shuts down: copy into a plain dict.
        return dict(shared)
