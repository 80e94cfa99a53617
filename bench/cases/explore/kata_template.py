"""The one test of the throwaway kata that bench/explore.py builds for each counter.

Copied as ``katas/tally/test_tally.py``; ``kata.Counter`` is the case under test.
"""

from __future__ import annotations

import threading


def test_no_increment_is_lost(kata, kata_stress):
    # The controlled scheduler tries the interleavings of a tiny scenario; noise and plain
    # repetition need many threads and many increments to stand a chance.
    threads, per_thread = (2, 2) if kata_stress.controlled else (8, 500)

    def scenario() -> int:
        counter = kata.Counter()
        start_line = threading.Barrier(threads)

        def work() -> None:
            start_line.wait()
            for _ in range(per_thread):
                counter.increment()

        workers = [threading.Thread(target=work) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return counter.value

    def check(total: int) -> str | None:
        wanted = threads * per_thread
        if total == wanted:
            return None
        return (
            f"{threads} threads each added 1 {per_thread} times: the count is {total}, not {wanted}"
        )

    kata_stress.run(scenario, check)
