"""The supervisor: hangs, deadlocks, crashes, leaks and caps become verdicts, and nothing a
kata test starts outlives it. Each test runs a purpose-built kata in a fresh pytest."""

from __future__ import annotations

import multiprocessing
import textwrap

import pytest

import pytest_katas
from conftest import pids_left, write_kata

RECORD = """
import os
def record(path):
    with open(path, "a") as f:
        f.write(f"{os.getpid()}\\n")
"""


def run(pytester: pytest.Pytester, impl: str, tests: str, *args: str, timeout: float = 3):
    write_kata(pytester, textwrap.dedent(impl), textwrap.dedent(tests), timeout)
    return pytester.runpytest_subprocess("katas/demo", "-p", "no:cacheprovider", *args)


def test_it_fails_a_hang_at_the_deadline_and_shows_where(pytester):
    result = run(
        pytester,
        """
        import threading
        def wait_forever():
            threading.Event().wait()
        """,
        """
        def test_returns(kata):
            kata.wait_forever()
        """,
        "--kata-trace=off",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "HANG: the test did not finish after 3 s*",
            "*test process (pid *) blocked in a threading Condition/Event/Barrier wait() "
            "at katas/demo/demo.py:4*",
        ]
    )


def test_a_wait_nobody_can_end_fails_at_once_not_at_the_deadline(pytester):
    result = run(
        pytester,
        """
        import threading
        def wait_forever():
            threading.Event().wait()
        """,
        """
        def test_returns(kata):
            kata.wait_forever()
        """,
        timeout=60,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "HANG: every process of the test waits and none can go on: test process waits in "
            "wait() at katas/demo/demo.py:4 (`threading.Event().wait()`)",
            "Who waits for what*",
        ]
    )
    # Named as it happens, not at the deadline: 2x margin for a busy machine either way.
    assert result.duration < 30  # the deadline is 60 s


# How busy the machine looks to the supervisor, whatever it really is: pytest's process
# (the supervisor) loads this conftest.py before any test.
BUSY = """
from pytest_katas import waits
waits.load = lambda: {load}
"""
NAPS = """
import time
def nap(seconds):
    time.sleep(seconds)
"""


@pytest.mark.parametrize("load,passes", [(3.0, True), (0.5, False)])
def test_a_busy_machine_stretches_the_deadline_and_a_quiet_one_does_not(pytester, load, passes):
    pytester.makeconftest(BUSY.format(load=load))
    # A 3 s nap against a 2 s deadline: on a machine with three tasks per core, 6 s.
    result = run(pytester, NAPS, "def test_naps(kata):\n    kata.nap(3)\n", timeout=2)
    result.assert_outcomes(**({"passed": 1} if passes else {"failed": 1}))


def test_a_hang_on_a_busy_machine_says_how_long_it_was_given(pytester):
    pytester.makeconftest(BUSY.format(load=2.0))
    result = run(pytester, NAPS, "def test_naps(kata):\n    kata.nap(3600)\n", timeout=1)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "HANG: the test did not finish after 1 s*",
            "*It was 1 s. The machine was busy (2.0 tasks per core), so the test was given "
            "2.0 s in all.",
        ]
    )


def test_the_stretch_follows_the_load_per_core_up_to_three_times(monkeypatch):
    from pytest_katas import waits

    for load_average, cores, expected in [(0.5, 2, 1.0), (4.0, 2, 2.0), (30.0, 2, 3.0)]:
        monkeypatch.setattr(waits.os, "getloadavg", lambda a=load_average: (a, a, a))
        monkeypatch.setattr(waits.os, "cpu_count", lambda c=cores: c)
        assert waits.stretch() == expected
        assert waits.quiet() == (waits.BUSY_QUIET if expected > 1 else waits.QUIET)
        assert pytest_katas.patience(4.0) == 4.0 * expected  # a kata test's waits follow

    def unknown() -> tuple[float, float, float]:
        raise OSError("no load average here")

    monkeypatch.setattr(waits.os, "getloadavg", unknown)
    assert waits.load() == 0.0 and waits.stretch() == 1.0


def test_a_wait_with_a_timeout_is_not_taken_for_a_deadlock(pytester):
    result = run(
        pytester,
        """
        import threading
        def wait_a_while():
            return threading.Event().wait(1.5)
        """,
        """
        def test_returns(kata):
            assert kata.wait_a_while() is False
        """,
        timeout=10,  # a 1.5 s wait: room for a busy machine, whatever the default
    )
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_it_fails_a_hang_in_a_child_and_ends_the_child(pytester, method):
    pidfile = pytester.path / "pids"
    result = run(
        pytester,
        RECORD
        + f"""
import multiprocessing
def _child(conn):
    record({str(pidfile)!r})
    conn.recv()
def stuck():
    record({str(pidfile)!r})
    mine, theirs = multiprocessing.Pipe()
    child = multiprocessing.Process(target=_child, args=(theirs,), name="consumer")
    child.start()
    child.join()
""",
        """
        def test_returns(kata):
            kata.stuck()
        """,
        f"--kata-start-method={method}",
        "--kata-trace=off",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "HANG:*",
            "*consumer (pid *) blocked in Connection.recv() at katas/demo/demo.py:10 "
            "(`conn.recv()`)*",
            "*>> katas/demo/demo.py:10 in _child",
            "*test process (pid *) blocked in Process.join()*",
        ]
    )
    assert len(pidfile.read_text().split()) == 2
    assert pids_left(pidfile) == []


TWO_LOCKS = """
        import multiprocessing
        def _one_way(first, second, ready, go):
            with first:
                ready.set()
                go.wait()
                with second:
                    pass
        def deadlock():
            a, b = multiprocessing.Lock(), multiprocessing.Lock()
            ready = [multiprocessing.Event(), multiprocessing.Event()]
            go = multiprocessing.Event()
            procs = [
                multiprocessing.Process(target=_one_way, args=(a, b, ready[0], go)),
                multiprocessing.Process(target=_one_way, args=(b, a, ready[1], go)),
            ]
            for p in procs:
                p.start()
            for r in ready:
                r.wait()
            go.set()
            for p in procs:
                p.join()
"""


def test_it_names_a_deadlock_on_two_locks(pytester):
    result = run(
        pytester,
        TWO_LOCKS,
        """
        def test_returns(kata):
            kata.deadlock()
        """,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "HANG: Process-* waits at line 7 for the lock Process-* took at line 4; Process-* "
            "waits at line 7 for the lock Process-* took at line 4: each holds what the other "
            "needs, a deadlock*",
            "*Process-1 waits in acquire() at katas/demo/demo.py:7 (`with second:`): the lock "
            "is held by Process-2 (taken at line 4)",
        ]
    )
    assert result.duration < 30  # a few seconds; a busy machine may take twice that


def test_it_names_a_deadlock_on_two_locks_at_the_deadline_without_the_trace(pytester):
    result = run(
        pytester, TWO_LOCKS, "def test_returns(kata):\n    kata.deadlock()\n", "--kata-trace=off"
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["HANG:*Lock.acquire()*deadlock*"])


@pytest.mark.parametrize("how", ["os.abort()", "os.kill(os.getpid(), signal.SIGKILL)"])
def test_it_reports_a_child_killed_by_a_signal_with_its_target(pytester, how):
    result = run(
        pytester,
        f"""
        import multiprocessing, os, signal
        def _doomed():
            {how}
        def crash():
            child = multiprocessing.Process(target=_doomed)
            child.start()
            child.join()
            return child.exitcode
        """,
        """
        def test_returns(kata):
            assert kata.crash() == 0
        """,
    )
    result.assert_outcomes(failed=1)
    signal_name = "SIGABRT" if "abort" in how else "SIGKILL"
    result.stdout.fnmatch_lines(
        [f"CRASH: child process 'Process-1' (pid *, target _doomed at *) killed by {signal_name}*"]
    )


def test_it_reports_an_exception_in_a_pool_worker_with_its_traceback(pytester):
    result = run(
        pytester,
        """
        import multiprocessing
        def _half(n):
            return 10 // n
        def halves(numbers):
            with multiprocessing.Pool(2) as pool:
                pending = [pool.apply_async(_half, (n,)) for n in numbers]
                pool.close()
                pool.join()
            return [p.get() for p in pending if p.successful()]
        """,
        """
        def test_returns(kata):
            assert kata.halves([1, 0, 2]) == [10, 5, 5]
        """,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["a task raised in a Pool worker:", "*in _half*", "*ZeroDivisionError*"]
    )


def test_it_reports_an_exception_raised_in_a_child(pytester):
    result = run(
        pytester,
        """
        import multiprocessing
        def _child():
            raise KeyError("no such word")
        def work():
            child = multiprocessing.Process(target=_child)
            child.start()
            child.join()
            return 42
        """,
        """
        def test_returns(kata):
            assert kata.work() == 41
        """,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["CRASH: child process 'Process-1'*raised KeyError*", "*raise KeyError*"]
    )


def test_it_fails_a_test_that_leaks_a_process_a_thread_and_a_socket(pytester):
    pidfile = pytester.path / "pids"
    result = run(
        pytester,
        RECORD
        + f"""
import multiprocessing, socket, threading, time
KEEP = []
def _linger():
    record({str(pidfile)!r})
    time.sleep(60)
def careless():
    multiprocessing.Process(target=_linger, name="lingerer").start()
    threading.Thread(target=time.sleep, args=(60,), name="sleeper", daemon=True).start()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    KEEP.append(server)
    return 1
""",
        """
        def test_returns(kata):
            assert kata.careless() == 1
        """,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "LEAK: the code left 3 thing(s) running or open",
            "left behind after the test returned:",
            "*process lingerer (pid *, target _linger at katas/demo/demo.py:*) is still running",
            "*thread 'sleeper' is still running, started at katas/demo/demo.py:*",
            "*socket (fd *, 127.0.0.1:* LISTEN) is still open",
        ]
    )
    assert pids_left(pidfile) == []


def test_it_stops_a_fork_bomb_at_the_process_cap(pytester):
    pidfile = pytester.path / "pids"
    result = run(
        pytester,
        RECORD
        + f"""
import multiprocessing, time
def _grow(depth):
    record({str(pidfile)!r})
    kids = [multiprocessing.Process(target=_grow, args=(depth + 1,)) for _ in range(2)]
    if depth < 7:
        for kid in kids:
            kid.start()
    time.sleep(30)
def bomb():
    _grow(0)
""",
        """
        def test_returns(kata):
            kata.bomb()
        """,
        "--kata-max-processes=20",
        timeout=20,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["CAP: more than 20 processes ran at once (kata_max_processes = 20)*"]
    )
    assert pids_left(pidfile) == []


def test_it_stops_endless_output_at_the_output_cap(pytester):
    result = run(
        pytester,
        """
        def chatter():
            while True:
                print("all work and no play " * 10)
        """,
        """
        def test_returns(kata):
            kata.chatter()
        """,
        "--kata-max-output=64KiB",
        timeout=20,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["CAP: the code wrote more than 64.0 KiB of output*"])


def test_a_crash_of_the_test_process_itself_is_a_verdict_not_a_dead_run(pytester):
    result = run(
        pytester,
        """
        import os
        def die():
            os.abort()
        def fine():
            return 1
        """,
        """
        def test_dies(kata):
            kata.die()
        def test_after_it(kata):
            assert kata.fine() == 1
        """,
    )
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["CRASH: the test process was killed by SIGABRT*"])


def test_it_reports_hangs_normally_under_xdist(pytester):
    result = run(
        pytester,
        """
        import threading
        def wait_forever():
            threading.Event().wait()
        def fine():
            return 1
        """,
        """
        def test_hangs(kata):
            kata.wait_forever()
        def test_passes(kata):
            assert kata.fine() == 1
        """,
        "-n",
        "2",
        "--kata-keep-going",  # both tests run, whichever worker runs the hang first
    )
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*HANG: every process of the test waits and none can go on*"])


def test_pytest_timeout_firing_first_still_leaves_nothing_behind(pytester):
    pytest.importorskip("pytest_timeout")
    pidfile = pytester.path / "pids"
    result = run(
        pytester,
        RECORD
        + f"""
import multiprocessing, time
def _sleep():
    record({str(pidfile)!r})
    time.sleep(60)
def slow():
    child = multiprocessing.Process(target=_sleep)
    child.start()
    child.join()
""",
        """
        def test_returns(kata):
            kata.slow()
        """,
        "-p",
        "timeout",
        "--timeout=2",
        timeout=30,
    )
    result.assert_outcomes(failed=1)
    # the supervisor keeps pytest-timeout's deadline for a kata test (see plugin.py)
    result.stdout.fnmatch_lines(["*HANG*", "*deadline was pytest-timeout's*"])
    assert pids_left(pidfile) == []


BLOCKING = {
    "recv": ("a, b = multiprocessing.Pipe()\n    a.recv()", "Connection.recv()"),
    "accept": (
        "s = socket.socket()\n    s.bind(('127.0.0.1', 0))\n    s.listen()\n    s.accept()",
        "socket.accept()",
    ),
    "join": (
        "p = multiprocessing.Process(target=time.sleep, args=(60,))\n    p.start()\n    p.join()",
        "Process.join()",
    ),
    "Lock.acquire": (
        "lock = multiprocessing.Lock()\n    lock.acquire()\n    lock.acquire()",
        "Lock.acquire()",
    ),
    "Queue.get": ("q = multiprocessing.Queue()\n    q.get()", "Queue.get()"),
    "Pool.join": (
        "pool = multiprocessing.Pool(2)\n    pool.apply_async(time.sleep, (60,))\n"
        "    pool.close()\n    pool.join()",
        "Pool.join()",
    ),
    "AsyncResult.get": (
        "pool = multiprocessing.Pool(2)\n    pool.apply_async(time.sleep, (60,)).get()",
        "AsyncResult.get()",
    ),
}


@pytest.mark.parametrize("call", list(BLOCKING))
def test_it_reads_the_test_process_stack_whatever_it_is_blocked_in(pytester, call):
    code, shown = BLOCKING[call]
    result = run(
        pytester,
        f"import multiprocessing, socket, time\ndef block():\n    {code}\n",
        """
        def test_returns(kata):
            kata.block()
        """,
        "--kata-trace=off",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [f"*test process (pid *) blocked in {shown} at katas/demo/demo.py:*"]
    )


def test_a_child_crash_that_leaves_the_parent_waiting_fails_long_before_the_deadline(pytester):
    result = run(
        pytester,
        """
        import multiprocessing
        def _child(conn):
            raise ValueError("bad item")
        def wait_for_child():
            mine, theirs = multiprocessing.Pipe()
            child = multiprocessing.Process(target=_child, args=(theirs,))
            child.start()
            return mine.recv()
        """,
        """
        def test_returns(kata):
            kata.wait_for_child()
        """,
        timeout=60,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "CRASH: child process 'Process-1' (pid *, target _child at *) raised ValueError: "
            'bad item at katas/demo/demo.py:4 (`raise ValueError("bad item")`); test process '
            "waits forever in recv() at katas/demo/demo.py:9 (`return mine.recv()`): the pipe's "
            "write end is still open in test process itself (made it at line 6, never closed)*"
        ]
    )
    assert result.duration < 30


def test_nothing_outlives_a_pytest_that_is_killed_mid_test(pytester):
    import os
    import signal
    import subprocess
    import sys
    import time

    pidfile = pytester.path / "pids"
    write_kata(
        pytester,
        RECORD
        + f"""
import multiprocessing, time
def _sleep():
    record({str(pidfile)!r})
    time.sleep(120)
def slow():
    record({str(pidfile)!r})
    kids = [multiprocessing.Process(target=_sleep) for _ in range(3)]
    for kid in kids:
        kid.start()
    for kid in kids:
        kid.join()
""",
        textwrap.dedent(
            """
            def test_returns(kata):
                kata.slow()
            """
        ),
        timeout=120,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "katas/demo", "-p", "no:cacheprovider"],
        cwd=pytester.path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(pids_left(pidfile)) < 4:
        time.sleep(0.1)
    assert len(pids_left(pidfile)) == 4, "the test never started its processes"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and pids_left(pidfile):
        time.sleep(0.05)
    assert pids_left(pidfile) == []


def test_it_stops_a_test_that_uses_more_memory_than_the_cap(pytester):
    result = run(
        pytester,
        """
        import time
        def hog():
            block = b"x" * (300 << 20)
            time.sleep(10)
            return len(block)
        """,
        """
        def test_returns(kata):
            kata.hog()
        """,
        "--kata-max-memory=100MiB",
        timeout=20,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["CAP: the test's processes used * of memory, over the 100.0 MiB cap (kata_max_memory)*"]
    )


def test_the_watchdog_is_a_fresh_interpreter_not_a_fork_of_threaded_pytest(pytester):
    # An xdist worker has threads; on 3.12+ a fork from it warns that the child may
    # deadlock. The sandbox must fork (it carries the test), the watchdog need not.
    result = run(
        pytester,
        "def add(a, b):\n    return a + b\n",
        """
        def test_adds(kata):
            assert kata.add(2, 3) == 5
        """,
        "-n",
        "2",
        "-W",
        "always::DeprecationWarning",
    )
    result.assert_outcomes(passed=1)
    assert "use of fork() may lead to deadlocks" not in result.stdout.str()


def test_a_forkserver_child_boots_without_runpys_warning(pytester):
    # Preloading the stand-in main in the forkserver made runpy warn in every child that it
    # was imported before it ran: a line of noise per process in the learner's output.
    if "forkserver" not in multiprocessing.get_all_start_methods():
        pytest.skip("no forkserver here")
    result = run(
        pytester,
        """
        import multiprocessing
        def _child(box):
            box.put(1)
        def children(n):
            box = multiprocessing.Queue()
            kids = [multiprocessing.Process(target=_child, args=(box,)) for _ in range(n)]
            for kid in kids:
                kid.start()
            got = sum(box.get() for _ in kids)
            for kid in kids:
                kid.join()
            return got
        """,
        """
        def test_children(kata):
            assert kata.children(3) == 3
            print("done")
        """,
        "--kata-start-method=forkserver",
        "-rA",
    )
    result.assert_outcomes(passed=1)
    assert "found in sys.modules" not in result.stdout.str()


# -- the test's result, as the supervisor reads it -------------------------------------------


def _read_back(tmp_path, outcome: object, nonce: object) -> str:
    from types import SimpleNamespace

    from pytest_katas import supervise
    from pytest_katas.channel import ResultRecord, RunDir

    rundir = RunDir(tmp_path)
    rundir.write_result(ResultRecord(outcome, nonce))
    watch = SimpleNamespace(spec=SimpleNamespace(rundir=rundir, nonce="proof"), reaped={}, pid=1)
    found = supervise._finished(watch)  # type: ignore[arg-type]
    return f"{found.status} {found.kind.name.lower() if found.kind else ''}: {found.message}"


def test_a_result_with_its_proof_is_the_tests_verdict(tmp_path):
    from pytest_katas.verdict import Outcome

    outcome = Outcome(status="passed", kind=None, message="", details="").to_json()
    assert _read_back(tmp_path, outcome, "proof") == "passed : "


@pytest.mark.parametrize(
    ("outcome", "nonce", "why"),
    [
        ({"status": "passed"}, None, "does not carry the proof"),
        ({"status": "passed"}, 12345, "does not carry the proof"),
        (["passed"], "proof", "not in the form the test process writes"),
        ({"status": "passed", "kind": None}, "proof", "not in the form the test process writes"),
    ],
    ids=["no proof", "a proof that is not text", "not an object", "fields missing"],
)
def test_a_result_without_the_proof_or_in_another_form_is_tampered(tmp_path, outcome, nonce, why):
    assert _read_back(tmp_path, outcome, nonce).startswith("failed tampered: "), why
    assert why in _read_back(tmp_path, outcome, nonce)
