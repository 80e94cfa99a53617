"""The trace: what learner code did, recorded in every process, and the verdicts drawn from
it whatever the schedule did (races, contracts, short writes, crashes explained). Each test
runs a purpose-built kata in a fresh pytest, noise off, so that only the trace can tell."""

from __future__ import annotations

import json
import textwrap
import threading

import pytest

from conftest import write_kata
from pytest_katas import channel, trace
from pytest_katas.channel import RunDir


def run(pytester: pytest.Pytester, impl: str, tests: str, *args: str, timeout: float = 10):
    write_kata(pytester, textwrap.dedent(impl), textwrap.dedent(tests), timeout)
    return pytester.runpytest_subprocess(
        "katas/demo", "-p", "no:cacheprovider", "--kata-noise=off", *args
    )


METHODS = ["fork", "spawn", "forkserver"]

RELAY = """
import multiprocessing
def _echo(inbox, writer, outbox):
    writer.close()
    got = []
    while True:
        try:
            got.append(inbox.recv())
        except EOFError:
            break
    outbox.send(got)
def relay(items):
    reader, writer = multiprocessing.Pipe(duplex=False)
    back, answer = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.Process(target=_echo, args=(reader, writer, answer))
    child.start()
    reader.close()
    answer.close()
    for item in items:
        writer.send(item)
    writer.close()
    got = back.recv()
    child.join()
    return got
"""


@pytest.mark.parametrize("method", METHODS)
def test_it_knows_which_process_holds_which_end_under_every_start_method(pytester, method):
    result = run(
        pytester,
        RELAY,
        f"""
        from pytest_katas import observed
        def test_ends(kata):
            assert kata.relay([1, 2]) == [1, 2]
            seen = observed(kata)
            first = seen.pipes()[0]
            (child,) = seen.children()
            writes = seen.history.copies[first.ends[1]]
            copies = {{(seen.name(c.pid), c.how, c.closed) for c in writes}}
            how = "inherited" if {method!r} == "fork" else "received"
            assert copies == {{("test process", "made", True), (child.name, how, True)}}, copies
            recvs = seen.events("recv", pid=child.pid)
            assert [e.extra[2] for e in recvs] == [None, None, "EOF"]
            assert recvs[-1].site.line == 8
        """,
        f"--kata-start-method={method}",
    )
    result.assert_outcomes(passed=1)


COUNT_DOWN = """
import multiprocessing
def _take(shared, lock):
    {body}
def count_down(workers=3):
    with multiprocessing.Manager() as manager:
        shared = manager.dict({{"count": 10}})
        lock = {lock}
        procs = [multiprocessing.Process(target=_take, args=(shared, lock)) for _ in range(workers)]
        for p in procs:
            p.start()
            {between}
        for p in procs:
            p.join()
        return shared["count"]
"""
COUNT_TEST = """
def test_count(kata):
    assert kata.count_down() == 7
"""


def _count_down(body: str, lock: str = "multiprocessing.Lock()", between: str = "pass") -> str:
    return COUNT_DOWN.format(body=body, lock=lock, between=between)


def test_a_manager_dict_updated_without_a_lock_is_a_race_whatever_the_count(pytester):
    # The workers start far apart, so their updates hardly ever overlap and the count is
    # nearly always right: only the trace can tell that nothing kept them apart.
    impl = _count_down('shared["count"] -= 1', between="time.sleep(0.2)")
    result = run(pytester, "import time\n" + impl, COUNT_TEST)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "RACE: Process-* and Process-* both change dict?'count'? (line 5) with no one lock "
            "held by both from the read to the write*",
            "*read  dict?'count'? = *(line 5)*",
            "*write dict?'count'? = *(line 5)*",
            "*neither held a lock across the whole update*",
            "Replay: pytest katas/demo/test_demo.py::test_count *--kata-noise=off",
        ]
    )


@pytest.mark.parametrize(
    "lock",
    ["multiprocessing.Lock()", "multiprocessing.RLock()", "manager.Lock()"],
)
def test_one_lock_held_across_the_update_is_no_race(pytester, lock):
    body = 'with lock:\n        shared["count"] -= 1'
    result = run(pytester, _count_down(body, lock), COUNT_TEST)
    result.assert_outcomes(passed=1)


def test_a_lock_released_between_the_read_and_the_write_protects_nothing(pytester):
    body = (
        'with lock:\n        n = shared["count"]\n    with lock:\n        shared["count"] = n - 1'
    )
    result = run(pytester, _count_down(body), COUNT_TEST)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["RACE: *dict?'count'?*"])


def test_updates_ordered_by_join_need_no_lock(pytester):
    result = run(pytester, _count_down('shared["count"] -= 1', between="p.join()"), COUNT_TEST)
    result.assert_outcomes(passed=1)


def test_readers_of_one_pipe_end_without_a_lock_are_a_race_naming_both(pytester):
    result = run(
        pytester,
        """
        import multiprocessing
        def _read(reader, out):
            out.put(reader.recv())
        def spread(items):
            reader, writer = multiprocessing.Pipe(duplex=False)
            out = multiprocessing.Queue()
            procs = [multiprocessing.Process(target=_read, args=(reader, out)) for _ in items]
            for p in procs:
                p.start()
            for item in items:
                writer.send(item)
            got = sorted(out.get() for _ in items)
            for p in procs:
                p.join()
            return got
        """,
        """
        def test_spread(kata):
            assert kata.spread([1, 2]) == [1, 2]
        """,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "RACE: Process-* and Process-* both call recv() on the same pipe end (the pipe made "
            "at line 6) with no lock held by both*",
            "*recv() begins  (line 4)*",
        ]
    )


COUNTER = """
import threading
class Counter:
    def __init__(self):
        self.n = 0
        self.lock = threading.Lock()
    def add(self):
        {body}
def pound(threads=4, times=50):
    counter = Counter()
    workers = [threading.Thread(target=lambda: [counter.add() for _ in range(times)])
               for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return counter.n
"""
POUND_TEST = """
def test_pound(kata):
    assert kata.pound() == 200
"""


@pytest.mark.parametrize(
    "body,verdict",
    [
        ("self.n += 1", "RACE: Thread-* and Thread-* both change Counter.n (line 8)*"),
        ("with threading.Lock():\n            self.n += 1", "RACE: *Counter.n*"),
        ("with self.lock:\n            self.n += 1", None),
    ],
    ids=["no lock", "a new lock each call", "one lock"],
)
def test_thread_updates_of_an_attribute_race_unless_one_lock_guards_them(pytester, body, verdict):
    result = run(pytester, COUNTER.format(body=body), POUND_TEST)
    if verdict is None:
        result.assert_outcomes(passed=1)
    else:
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines([verdict])


def test_a_flag_written_by_one_thread_and_read_by_another_is_no_race(pytester):
    result = run(
        pytester,
        """
        import threading, time
        class Worker:
            def __init__(self):
                self.running = True
                self.rounds = 0
            def loop(self):
                while self.running:
                    self.rounds = self.rounds + 1
                    time.sleep(0.001)
        def spin():
            w = Worker()
            t = threading.Thread(target=w.loop)
            t.start()
            time.sleep(0.05)
            w.running = False
            t.join()
            return w.rounds > 0
        """,
        """
        def test_spin(kata):
            assert kata.spin()
        """,
    )
    result.assert_outcomes(passed=1)


def test_a_short_send_treated_as_done_is_lost_bytes_with_its_line(pytester):
    result = run(
        pytester,
        """
        import socket
        def shout(data):
            a, b = socket.socketpair()
            with a, b:
                a.send(data)
                a.shutdown(socket.SHUT_WR)
                got = b""
                while chunk := b.recv(1 << 16):
                    got += chunk
            return len(got)
        def shout_all(data):
            a, b = socket.socketpair()
            with a, b:
                while data:
                    data = data[a.send(data):]
                a.shutdown(socket.SHUT_WR)
                got = b""
                while chunk := b.recv(1 << 16):
                    got += chunk
            return len(got)
        """,
        """
        def test_once(kata):
            kata.shout(b"x" * 1000)
        def test_loop(kata):
            assert kata.shout_all(b"x" * 1000) == 1000
        """,
    )
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "LOST: test process treated a short send() as done: send() at line 6 (`a.send(data)`) "
            "sent 500 of 1,000 bytes, and the other 500 were never sent",
        ]
    )


def test_a_reader_that_runs_out_before_its_sentinel_is_explained(pytester):
    result = run(
        pytester,
        """
        import multiprocessing
        def _read(reader, writer):
            writer.close()
            while reader.recv() is not None:
                pass
        def no_sentinel():
            reader, writer = multiprocessing.Pipe(duplex=False)
            child = multiprocessing.Process(target=_read, args=(reader, writer))
            child.start()
            reader.close()
            writer.send(1)
            writer.close()
            child.join()
            return child.exitcode
        """,
        """
        def test_exit(kata):
            assert kata.no_sentinel() == 0
        """,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "CRASH: child process 'Process-1' * raised EOFError at katas/demo/demo.py:5 "
            "(`while reader.recv() is not None:`). recv() raises EOFError once every copy of "
            "the pipe's write end is closed and the pipe is empty: this reader ran out before "
            "a sentinel came for it*",
        ]
    )
    assert "Traceback (most recent call last)" not in result.stdout.str()


def test_turning_the_trace_off_leaves_only_the_outcome(pytester):
    # Each worker ends before the next starts (polled, which the trace does not count as a
    # join): the count is right every time, on a busy machine too, and only the trace could
    # tell that nothing ordered the workers.
    impl = _count_down('shared["count"] -= 1', between="while p.is_alive(): time.sleep(0.01)")
    result = run(pytester, "import time\n" + impl, COUNT_TEST, "--kata-trace=off")
    result.assert_outcomes(passed=1)


def test_the_channel_reads_back_what_was_written_and_drops_what_is_not_a_record(tmp_path):
    rundir = RunDir(tmp_path)
    rundir.write(channel.EXITED, channel.Exited(pid=7, exitcode=-9))
    rundir.write(channel.RAISED, channel.Raised(pid=8, traceback="t", frames=(("f", 3, "g"),)))
    (tmp_path / "exit-9.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "exit-10.json").write_text(json.dumps({"pid": "ten"}), encoding="utf-8")
    (tmp_path / "exc-11.json").write_text(json.dumps([1, 2]), encoding="utf-8")
    assert rundir.read(channel.EXITED) == {7: channel.Exited(7, -9)}
    assert rundir.read(channel.RAISED)[8].frames == (("f", 3, "g"),)
    assert list(rundir.read(channel.RAISED)) == [8]
    fd = rundir.open_trace(5)
    assert fd is not None
    rundir.append_trace(fd, [[1, 2, "send", "p1w", -1, 3]])
    with open(rundir.trace_path(5), "a", encoding="utf-8") as handle:
        handle.write('[[2, 2, "recv"\n')  # a write cut short by a crash
    assert list(rundir.read_trace(5)) == [[1, 2, "send", "p1w", -1, 3]]


def test_the_run_state_survives_a_rewrite_in_place(tmp_path):
    rundir = RunDir(tmp_path)
    assert rundir.read_state() == channel.RunState()
    rundir.write_state(channel.RunState(noise=True, seed=12345678901, run=3, trace=False))
    rundir.write_state(channel.RunState(noise=False, seed=1, run=0, trace=True))
    assert rundir.read_state() == channel.RunState(noise=False, seed=1, run=0, trace=True)


def test_a_check_that_reads_the_trace_is_skipped_when_the_trace_is_off(pytester):
    result = run(
        pytester,
        RELAY,
        """
        from pytest_katas import observed
        def test_ends(kata):
            kata.relay([1])
            assert observed(kata).pipes()
        """,
        "--kata-trace=off",
        "-rs",
    )
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*this check reads the trace, which --kata-trace=off*"])


def test_a_trace_that_outgrows_its_cap_fails_a_passing_test_as_cap(pytester):
    result = run(
        pytester,
        """
        import threading
        def churn(times):
            lock = threading.Lock()
            for _ in range(times):
                with lock:
                    pass
            return times
        """,
        """
        def test_churn(kata):
            assert kata.churn(60_000) == 60_000
        """,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["CAP: test process made more than 100,000 observed calls in one test*"]
    )


def test_learner_code_that_finds_a_thread_dead_has_waited_for_it_but_a_test_has_not(pytester):
    result = run(
        pytester,
        """
        import threading, time
        def start():
            thread = threading.Thread(target=time.sleep, args=(0.05,))
            thread.start()
            return thread
        def wait_until_done(thread):
            while thread.is_alive():
                time.sleep(0.01)
        """,
        """
        import time
        from pytest_katas import observed
        def _ends(kata):
            seen = observed(kata)
            return {e.obj for e in seen.events("tjoin")} & {e.obj for e in seen.events("tstart")}
        def test_learner_polls(kata):
            kata.wait_until_done(kata.start())
            assert _ends(kata)
        def test_the_test_polls(kata):
            thread = kata.start()
            while thread.is_alive():
                time.sleep(0.01)
            assert not _ends(kata)
        """,
    )
    result.assert_outcomes(passed=2)


def test_a_finalizer_run_inside_a_trace_write_blocks_no_thread_and_loses_no_event(tmp_path):
    # Writing a batch allocates, and the garbage collector may then run a finalizer right
    # there: an unclosed Pool's, which waits for the pool's handler threads to end, and they
    # record, write and free their slots on the way. Neither they nor a hook inside the
    # finalizer may wait for the write that runs it (a pool never closed hung that way).
    rundir = RunDir(tmp_path)
    rec = trace.Recorder(rundir)
    write = rundir.append_trace
    inside: list[bool] = []

    def handler_thread():
        ident = threading.get_ident()
        rec.events.append([2, ident, "send", "inq", -1, None])
        rec.flush()  # before it blocks, as trace.wait_begin does
        rec.slot(ident)
        rec.release_slot(ident)  # as it ends

    def append_trace(fd, batch):
        if not inside:
            inside.append(True)
            handler = threading.Thread(target=handler_thread)
            handler.start()
            handler.join(timeout=5)
            inside.append(not handler.is_alive())
            rec.events.append([3, threading.get_ident(), "pend", "", -1, None])
            rec.flush()  # a hook inside the finalizer
        write(fd, batch)

    rundir.append_trace = append_trace  # type: ignore[method-assign]
    rec.events.append([1, threading.get_ident(), "open", "pool", -1, None])
    writer = threading.Thread(target=rec.flush, daemon=True)
    writer.start()
    writer.join(timeout=10)
    assert not writer.is_alive(), "the write that ran the finalizer never ended"
    assert inside == [True, True], "the handler thread waited for the write that waits for it"
    rec.flush(wait=5)
    assert sorted(event[0] for event in rundir.read_trace(rec.pid)) == [1, 2, 3]
