"""A test body that runs apart from learner code (remote.py): what crosses back from the
learner process is plain data and nothing else, the kata tests judge the same code the
same way, and a learner file that forges a verdict from the test's memory finds nothing."""

from __future__ import annotations

import collections
import copy
import io
import multiprocessing
import os
import pickle
import threading
import time
from pathlib import Path

import pytest

from conftest import ATTACKS, MUTANTS, ROOT, run_kata
from pytest_katas import Gate, remote

# -- what crosses back -----------------------------------------------------------------------


def _round_trip(value: object, passed: list[object] | None = None) -> object:
    """``value`` as the learner process sends it and the test process reads it."""
    passed = passed or []
    data = remote._dump(("ok", value), {id(obj): n for n, obj in enumerate(passed)})
    return remote._Strict(data, passed).load()[1]


def test_plain_data_comes_back_equal_and_of_the_same_types():
    value = {
        "numbers": [1, 2.5, -3, 10**30, complex(1, 2), True, None],
        "texts": ("a", b"b", bytearray(b"c")),
        "sets": ({1, 2}, frozenset({3})),
        "counter": collections.Counter("abca"),
        "ordered": collections.OrderedDict(a=1),
        "default": collections.defaultdict(int, a=1),
        "queue": collections.deque([1, 2], maxlen=5),
    }
    back = _round_trip(value)
    assert back == value
    assert {k: type(v) for k, v in back.items()} == {k: type(v) for k, v in value.items()}
    assert back["default"].default_factory is int and back["queue"].maxlen == 5


def test_the_tests_own_objects_come_back_as_themselves():
    token, function = object(), len
    back = _round_trip({token: [function]}, passed=[token, function])
    ((key, [again]),) = back.items()
    assert key is token and again is function


def test_any_other_object_comes_back_as_a_stand_in_equal_only_to_itself():
    class Sneaky(int):
        def __eq__(self, other: object) -> bool:
            return True

        __hash__ = int.__hash__

    back = _round_trip([Sneaky(3), object(), lambda: 1])
    assert all(isinstance(item, remote.Foreign) for item in back)
    assert back[0] != 3 and back[0] == back[0]
    assert back[0]._kind.endswith("Sneaky") and repr(back[0]) == "3"


def test_a_defaultdict_of_the_learners_own_factory_comes_back_with_its_items():
    back = _round_trip(collections.defaultdict(lambda: 0, a=2))
    assert back == {"a": 2} and back.default_factory is None


def test_the_same_learner_object_comes_back_as_the_same_stand_in():
    kept = remote._Kept()
    server, other = object(), object()
    assert kept.add(server) == kept.add(server) == 0 and kept.add(other) == 1
    learner = object.__new__(remote.LearnerProcess)
    learner._guard, learner._foreign = threading.Lock(), {}
    data = remote._dump(("ok", [server, server, other]), {}, kept)
    a, b, c = remote._Strict(data, [], learner).load()[1]
    assert a is b and a is not c and a._handle == 0 and c._handle == 1


def test_a_stand_in_of_this_learner_crosses_back_as_the_learners_own_object():
    kept = remote._Kept()
    server = object()
    number = kept.add(server)
    learner = object.__new__(remote.LearnerProcess)
    stand_in = remote.Foreign("EchoServer", "<server>", learner, number)  # type: ignore[arg-type]
    out = io.BytesIO()
    remote._Handles(out, learner).dump(("call", [stand_in]))  # type: ignore[arg-type]
    assert remote._Request(out.getvalue(), kept).load() == ("call", [server])
    kept.clear()
    with pytest.raises(KeyError):  # the test has ended: nothing is kept any more
        remote._Request(out.getvalue(), kept).load()


def test_an_exception_leaving_a_with_block_reaches_exit_by_its_name():
    request = remote.Request("call", "__exit__", (remote._EXIT, "ValueError", "bad"))
    kind, exc, tb = remote._exit_args(request)
    assert kind is ValueError and str(exc) == "bad" and tb is None
    request = remote.Request("call", "__exit__", (remote._EXIT, "Oops", "the test's own"))
    kind, exc, _ = remote._exit_args(request)
    assert kind.__name__ == "Oops" and issubclass(kind, Exception) and isinstance(exc, kind)
    assert remote._exit_args(remote.Request("call", "__exit__", (None, None, None))) == (
        None,
        None,
        None,
    )


class _Payload:
    def __reduce__(self) -> tuple[object, ...]:
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize(
    "data",
    [
        pickle.dumps(_Payload()),
        pickle.dumps(("ok", threading.Lock)),
        pickle.dumps(("ok", Path("x"))),
    ],
    ids=["os.system", "a class", "a pathlib object"],
)
def test_a_reply_naming_any_other_class_is_refused(data):
    with pytest.raises(pickle.UnpicklingError):
        remote._Strict(data, []).load()


def test_a_reference_the_test_never_made_is_refused():
    data = remote._dump(("ok", object()), {})
    forged = data.replace(b"foreign", b"passedX")
    with pytest.raises(pickle.UnpicklingError):
        remote._Strict(forged, []).load()


def test_a_call_that_cannot_come_back_is_described_as_the_learners_exception():
    exc = remote._exception(
        "raised", ("ValueError", "bad", [("/x/pipe.py", 3, "relay", "x = 1")]), "relay"
    )
    assert isinstance(exc, remote.LearnerError) and exc.type_name == "ValueError"
    assert exc.frames[0].lineno == 3
    assert isinstance(remote._exception("failure", ("race", "lost", 7, True), "f"), Exception)
    garbled = remote._exception("raised", (1, 2, 3), "relay")
    assert isinstance(garbled, remote.LearnerGone)


# -- the gate --------------------------------------------------------------------------------


def _meet(gate: Gate, out: multiprocessing.SimpleQueue) -> None:
    try:
        out.put(gate.wait())
    except threading.BrokenBarrierError:
        out.put("broken")


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_gate_lets_its_parties_through_together_each_with_its_number(method):
    context = multiprocessing.get_context(method)
    gate = Gate(3, timeout=30)
    out = context.SimpleQueue()
    procs = [context.Process(target=_meet, args=(copy.copy(gate), out)) for _ in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert sorted(out.get() for _ in procs) == [0, 1, 2]
    assert gate.arrived() == 3


def test_a_gate_nobody_else_comes_to_breaks_for_everyone():
    gate = Gate(2, timeout=0.2)
    started = time.monotonic()
    with pytest.raises(threading.BrokenBarrierError):
        gate.wait()
    assert time.monotonic() - started >= 0.2
    with pytest.raises(threading.BrokenBarrierError):  # too late: it is broken
        copy.copy(gate).wait()


# -- kata tests with their bodies apart --------------------------------------------------------


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_the_pipe_solution_passes_with_its_test_bodies_apart(method, tmp_path):
    run = run_kata("pipe", "solutions", tmp_path, method=method, apart=True)
    assert run.returncode == 0 and run.cases and not run.failed(), run.explain()


def test_a_stub_is_still_not_implemented_with_its_test_bodies_apart(tmp_path):
    run = run_kata("manager", "katas", tmp_path, apart=True)
    assert run.cases and {c.kind for c in run.cases.values()} == {"todo"}, run.explain()
    assert "count_down is not implemented yet" in run.output, run.explain()


def test_a_race_is_shown_in_the_learner_process_schedule_with_its_test_bodies_apart(tmp_path):
    mutant = MUTANTS / "manager" / "no_lock.py"
    run = run_kata("manager", str(mutant), tmp_path, "-k", "count_down_loses_no_update", apart=True)
    (case,) = run.failed()
    assert case.kind == "race", run.explain()
    assert "of the dfs search" in case.text and "read  ['count'] -> 4" in case.text, case.text


def test_a_learner_file_that_forges_the_result_from_the_tests_memory_scores_nothing(tmp_path):
    attack = ATTACKS / "steal_proof" / "katas" / "pipe" / "pipe.py"
    run = run_kata("pipe", str(attack), tmp_path, apart=True)
    assert run.cases and not [c for c in run.cases.values() if c.status == "passed"]
    assert {c.kind for c in run.failed()} == {"crash"}, run.explain()


_MARK_ORACLE = """
import pathlib as _pathlib
import sys as _sys

_remote = _sys.modules.get("pytest_katas.remote")
if _remote is not None and _remote.active() is not None:  # imported in the test's process
    _pathlib.Path(__file__).with_name("imported-in-the-test-process").touch()
"""


def test_learner_code_is_never_imported_in_a_test_process_whose_body_runs_apart(tmp_path):
    # The controlled scheduler and the noise look for learner code by importing its module:
    # in a test process that keeps root, that would run learner code as root.
    learner = tmp_path / "pipe.py"
    solution = (ROOT / "solutions" / "pipe" / "pipe.py").read_text()
    learner.write_text(solution + _MARK_ORACLE)
    chosen = "contention or fan_out_delivers"
    run = run_kata("pipe", str(learner), tmp_path, "-k", chosen, apart=True)
    assert run.cases and not run.failed(), run.explain()
    assert not (tmp_path / "imported-in-the-test-process").exists()


# -- the echo server, started and stopped from the test's side -----------------------------


def test_the_echo_server_solution_passes_with_its_test_bodies_apart(tmp_path):
    # Its clients connect from the test's process; the server runs in the learner process.
    run = run_kata("echo_server", "solutions", tmp_path, apart=True)
    assert run.returncode == 0 and run.cases and not run.failed(), run.explain()
    # The stress test's threads are the test's own here: it says it did not schedule them.
    assert "run in a process of their own, apart from the test's" in run.output, run.explain()


def test_a_stuck_stop_is_shown_from_the_servers_own_process_with_its_test_bodies_apart(tmp_path):
    mutant = MUTANTS / "echo_server" / "joins_the_serving_accept_thread.py"
    chosen = "stop_returns_within_two_seconds"
    run = run_kata("echo_server", str(mutant), tmp_path, "-k", chosen, apart=True)
    (case,) = run.failed()
    assert case.kind == "hang", run.explain()
    assert "stop() waits in join() for 'echo-accept'" in case.text, case.text
    assert "is joining 'echo-accept' while that thread is still in recv()" in case.text


def test_what_the_constructor_opened_is_seen_in_the_servers_own_process(tmp_path):
    mutant = MUTANTS / "echo_server" / "listens_in_init.py"
    run = run_kata("echo_server", str(mutant), tmp_path, "-k", "nothing_listens", apart=True)
    (case,) = run.failed()
    assert case.kind == "contract", run.explain()
    assert "opened 1 socket(s) before start() was called" in case.text, case.text
