"""The stress engine, schedule noise and the trace: races fail every run, with how to replay
them, and correct code never fails."""

from __future__ import annotations

import textwrap

import pytest

from conftest import write_kata

COUNTER = """
import threading

class Counter:
    def __init__(self):
        self._value = 0
        self._lock = threading.Lock()

    def increment(self):
        {body}

    @property
    def value(self):
        return self._value

def hammer(counter, threads=8, per_thread=1000):
    start = threading.Barrier(threads)
    def work():
        start.wait()
        for _ in range(per_thread):
            counter.increment()
    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return counter.value
"""
UNLOCKED = "self._value += 1"
LOCKED = "with self._lock:\n            self._value += 1"
TEST = """
def test_no_update_is_lost(kata, kata_stress):
    def scenario():
        return kata.hammer(kata.Counter(), threads=8, per_thread=1000)
    def check(total):
        if total != 8000:
            return f"8 threads each added 1000 but the count rose by {total}: updates were lost"
    kata_stress.run(scenario, check)
"""


def _counter(pytester, body):
    write_kata(pytester, COUNTER.replace("{body}", body), textwrap.dedent(TEST), timeout=20)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_the_trace_catches_an_unlocked_increment_without_noise_every_time(pytester, seed):
    _counter(pytester, UNLOCKED)
    result = pytester.runpytest_subprocess(
        "katas/demo", f"--kata-seed={seed}", "--kata-noise=off", "--kata-scheduler=noise"
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "RACE: Thread-* and Thread-* both change Counter._value (line 10) with no one lock "
            "held by both from the read to the write*",
            "*Thread-* | Thread-*",
            "*read  Counter._value = *(line 10)*",
            "*write Counter._value = *(line 10)*",
            "*Nothing orders the two: neither held a lock across the whole update*",
            "Replay: pytest katas/demo/test_demo.py::test_no_update_is_lost "
            f"--kata-seed={seed} --kata-start-method=* --kata-target=katas --kata-noise=off "
            "--kata-scheduler=noise",
        ]
    )
    assert "FORBIDDEN" not in result.stdout.str()  # caught by the trace, before any count


def test_a_locked_increment_passes_with_the_trace_on(pytester):
    _counter(pytester, LOCKED)
    result = pytester.runpytest_subprocess("katas/demo", "--kata-stress-budget=0.5")
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_noise_alone_fails_an_unlocked_increment_with_every_seed(pytester, seed):
    _counter(pytester, UNLOCKED)
    result = pytester.runpytest_subprocess(
        "katas/demo", f"--kata-seed={seed}", "--kata-trace=off", "--kata-scheduler=noise"
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "RACE: 8 threads each added 1000 but the count rose by *: updates were lost "
            f"(run * of a stress test under schedule noise, seed {seed})",
            "*Outcomes seen:",
            "*outcome*count*verdict",
            "*FORBIDDEN",
            "*run(s) in * s; failure rate *",
            f"*Replay: pytest katas/demo/test_demo.py::test_no_update_is_lost "
            f"--kata-seed={seed} --kata-start-method=* --kata-target=katas --kata-trace=off "
            "--kata-scheduler=noise",
        ]
    )


def test_a_locked_increment_passes_the_whole_budget_under_noise_alone(pytester):
    _counter(pytester, LOCKED)
    result = pytester.runpytest_subprocess(
        "katas/demo", "--kata-stress-budget=1", "--kata-trace=off", "--kata-scheduler=noise"
    )
    result.assert_outcomes(passed=1)


def test_the_report_carries_the_seed_of_a_race(pytester):
    import json

    _counter(pytester, UNLOCKED)
    path = pytester.path / "r.json"
    pytester.runpytest_subprocess(
        "katas/demo", "--kata-seed=77", f"--kata-report={path}", "--kata-scheduler=noise"
    )
    (test,) = json.loads(path.read_text())["tests"]
    assert (test["failure_class"], test["seed"]) == ("race", 77)


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_noise_reaches_child_processes_under_every_start_method(pytester, method):
    write_kata(
        pytester,
        textwrap.dedent(
            """
            import multiprocessing
            def _report(conn):
                from pytest_katas import schedule
                conn.send(schedule.jitter.rng is not None)
            def child_has_noise():
                mine, theirs = multiprocessing.Pipe()
                child = multiprocessing.Process(target=_report, args=(theirs,))
                child.start()
                answer = mine.recv()
                child.join()
                return answer
            """
        ),
        textwrap.dedent(
            """
            def test_children_of_a_stress_run_get_noise(kata, kata_stress):
                kata_stress.run(kata.child_has_noise,
                                lambda on: None if on else "no noise in the child",
                                max_runs=3)
            def test_children_outside_a_stress_run_do_not(kata):
                assert kata.child_has_noise() is False
            """
        ),
        timeout=30,
    )
    result = pytester.runpytest_subprocess(
        "katas/demo", f"--kata-start-method={method}", "--kata-scheduler=noise"
    )
    result.assert_outcomes(passed=2)
