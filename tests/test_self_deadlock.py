"""A thread that asks again for a non-reentrant Lock it holds by a `with` waits for itself
for ever: the plugin stops it at once and names both acquires, in the main thread or in
a worker, for a threading.Lock and a multiprocessing.Lock; an RLock taken again is fine,
and so is a Lock another thread releases for a waiter that did not take it by `with`."""

from __future__ import annotations

import textwrap

import pytest

from conftest import write_kata

COUNTER = """
import multiprocessing
import threading


class Counter:
    def __init__(self):
        self._n = 0
        self._lock = {lock}

    def increment(self):
        with self._lock:
            self._n = self.value + 1

    @property
    def value(self):
        with self._lock:
            return self._n


def pound(counter, threads=3, times=5):
    workers = [
        threading.Thread(target=lambda: [counter.increment() for _ in range(times)])
        for _ in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return counter.value
"""

TESTS = """
def test_main_thread(kata):
    counter = kata.Counter()
    counter.increment()
    assert counter.value == 1


def test_workers(kata):
    assert kata.pound(kata.Counter()) == 15
"""


def run(pytester: pytest.Pytester, impl: str, *args: str) -> pytest.RunResult:
    write_kata(pytester, textwrap.dedent(impl), textwrap.dedent(TESTS), 10)
    return pytester.runpytest_subprocess(
        "katas/demo", "-p", "no:cacheprovider", "--kata-noise=off", "--kata-keep-going", *args
    )


@pytest.mark.parametrize("lock", ["threading.Lock()", "multiprocessing.Lock()"])
def test_a_lock_taken_again_by_its_holder_fails_at_once_naming_both_acquires(pytester, lock):
    result = run(pytester, COUNTER.format(lock=lock), "--kata-scheduler=noise")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "HANG: increment() re-acquires a Lock this thread already holds: it took it at "
            "katas/demo/demo.py:12 (`with self._lock:`) and asks for it again at "
            "katas/demo/demo.py:17 (`with self._lock:`), in value(), so it waits for itself "
            "for ever",
        ]
    )
    result.stdout.no_fnmatch_line("*What the test saw*")
    assert "did not finish" not in result.stdout.str()  # stopped at once, not at a deadline


def test_under_the_controlled_scheduler_the_deadlock_says_the_thread_holds_the_lock(pytester):
    tests = """
    def test_pound(kata, kata_stress):
        kata_stress.run(lambda: kata.pound(kata.Counter(), 2, 1), lambda n: None)
    """
    impl = textwrap.dedent(COUNTER.format(lock="threading.Lock()"))
    write_kata(pytester, impl, textwrap.dedent(tests), 10)
    result = pytester.runpytest_subprocess("katas/demo", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "HANG: Deadlock: *",
            "*waits in acquire of the lock made at line 9, a Lock this thread already holds "
            "(it took it at line 12): it waits for itself (line 17 of demo.py)",
        ]
    )


@pytest.mark.parametrize("lock", ["threading.RLock()", "multiprocessing.RLock()"])
def test_an_rlock_taken_again_by_its_holder_is_fine(pytester, lock):
    run(pytester, COUNTER.format(lock=lock), "--kata-scheduler=noise").assert_outcomes(passed=2)


def test_a_lock_released_by_another_thread_is_no_self_deadlock(pytester):
    # The old way to wait for a signal: take the lock, then block on it until another thread
    # releases it. Taken by acquire(), not by a `with`, so nobody has been stopped.
    impl = """
    import threading

    def handshake():
        signal = threading.Lock()
        signal.acquire()
        helper = threading.Thread(target=signal.release)
        helper.start()
        signal.acquire()
        helper.join()
        return "done"
    """
    tests = """
    def test_handshake(kata):
        assert kata.handshake() == "done"
    """
    write_kata(pytester, textwrap.dedent(impl), textwrap.dedent(tests), 10)
    pytester.runpytest_subprocess("katas/demo", "-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_a_lock_taken_by_acquire_and_asked_for_again_is_a_deadlock_the_watch_names(pytester):
    impl = """
    import threading

    lock = threading.Lock()

    def twice():
        lock.acquire()
        lock.acquire()
    """
    tests = """
    def test_twice(kata):
        kata.twice()
    """
    write_kata(pytester, textwrap.dedent(impl), textwrap.dedent(tests), 10)
    result = pytester.runpytest_subprocess("katas/demo", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "HANG: test process waits in acquire() at katas/demo/demo.py:8 (`lock.acquire()`) "
            "for a Lock it already holds itself (taken at line 7): a Lock is not reentrant, so "
            "it waits for itself for ever",
        ]
    )
