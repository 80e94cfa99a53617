"""VARIANT: the workers are Process subclasses that carry the shared dict and lock.

A subclass's run() replaces target=; under spawn and forkserver the whole object is pickled
to the child, attributes and all, so the dict proxy and the lock travel with it.
"""

from __future__ import annotations

import multiprocessing


class Decrementer(multiprocessing.Process):
    def __init__(self, shared, lock) -> None:
        super().__init__()
        self.shared = shared
        self.lock = lock

    def run(self) -> None:
        with self.lock:
            self.shared["count"] -= 1


class WordCounter(multiprocessing.Process):
    def __init__(self, words: list[str], shared, lock) -> None:
        super().__init__()
        self.words = words
        self.shared = shared
        self.lock = lock

    def run(self) -> None:
        for word in self.words:
            with self.lock:
                self.shared[word] = self.shared.get(word, 0) + 1


def _run_all(processes: list[multiprocessing.Process]) -> None:
    for process in processes:
        process.start()
    for process in processes:
        process.join()


def count_down(start: int = 100, workers: int = 50) -> int:
    with multiprocessing.Manager() as manager:
        shared = manager.dict()
        shared["count"] = start
        lock = multiprocessing.RLock()
        _run_all([Decrementer(shared, lock) for _ in range(workers)])
        return int(shared["count"])


def tally(words: list[str], workers: int = 4) -> dict[str, int]:
    with multiprocessing.Manager() as manager:
        shared = manager.dict()
        lock = multiprocessing.Lock()
        _run_all([WordCounter(words[n::workers], shared, lock) for n in range(workers)])
        return dict(shared.items())
