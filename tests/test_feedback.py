"""Fast feedback, each message once: a hang stops its task, a file that does not import
stops its kata, a failure several tests share is shown in full once, a kata failure's
message is printed once, and a run with a hang ends with the faster loop."""

from __future__ import annotations

import json
import textwrap

import pytest

from conftest import write_kata
from pytest_katas import manifest

# Nothing here depends on the Python version: run on one of them (tox.ini).
pytestmark = pytest.mark.one_python

HANGS = """
import threading
import time

def wait_forever():
    threading.Event().wait()

def sleep_long():
    time.sleep(60)

def answer():
    return 42

def wrong():
    return 41
"""
# Task 1: three tests; task 2: one that passes.
TESTS = """
def test_first(kata):
    kata.wait_forever()

def test_second(kata):
    assert kata.answer() == 42

def test_third(kata):
    kata.wait_forever()

def test_other_task(kata):
    assert kata.answer() == 42
"""
TASKS = [(4, ["test_first", "test_second", "test_third"]), (6, ["test_other_task"])]
NOT_RUN = "not run: test_first of the same task hung (HANG); fix that first*"


def _kata(pytester, impl=HANGS, tests=TESTS, tasks=TASKS, **kwargs):
    kwargs.setdefault("timeout", 5)
    return write_kata(
        pytester, textwrap.dedent(impl), textwrap.dedent(tests), tasks=tasks, **kwargs
    )


def _run(pytester, *args, where="katas"):
    return pytester.runpytest_subprocess(where, "-p", "no:cacheprovider", "-ra", *args)


def _failure_lines(output: str) -> list[str]:
    """The failures section (what pytest prints for each failed test), without the short
    summary, the board or the header."""
    lines = output.splitlines()
    start = next((i for i, line in enumerate(lines) if "= FAILURES =" in line), len(lines))
    end = next((i for i, line in enumerate(lines) if i > start and line.startswith("===")), None)
    return lines[start + 1 : end]


# -- a hang stops its task ------------------------------------------------------------------


def test_a_hang_stops_its_task_and_the_other_tasks_still_run(pytester):
    _kata(pytester)
    result = _run(pytester)
    result.assert_outcomes(failed=1, skipped=2, passed=1)
    result.stdout.fnmatch_lines([f"SKIPPED [[]2[]] katas/demo/test_demo.py:2: {NOT_RUN}"])
    assert sum(line.startswith("HANG: ") for line in result.outlines) == 1


def test_a_failure_that_is_no_hang_does_not_stop_its_task(pytester):
    _kata(pytester, tests=TESTS.replace("kata.wait_forever()", "assert kata.wrong() == 42"))
    _run(pytester).assert_outcomes(failed=2, passed=2)


def test_a_hang_at_the_deadline_costs_one_deadline_not_one_per_test(pytester):
    _kata(pytester, tests=TESTS.replace("wait_forever", "sleep_long"), timeout=1.5)
    result = _run(pytester)
    result.assert_outcomes(failed=1, skipped=2, passed=1)
    result.stdout.fnmatch_lines(["HANG: the test did not finish after 1.5 s*"])
    # One deadline, not three: the task's other tests were skipped above, not run to their
    # own deadlines (counted, not timed, so that a busy machine cannot change the verdict).


def test_under_xdist_each_worker_stops_its_own_tests_of_the_task(pytester):
    tests = TESTS + "".join(
        f"\ndef test_more_{n}(kata):\n    kata.wait_forever()\n" for n in range(3)
    )
    names = ["test_first", "test_second", "test_third", *(f"test_more_{n}" for n in range(3))]
    _kata(pytester, tests=tests, tasks=[(4, names), (6, ["test_other_task"])])
    result = _run(pytester, "-n", "2")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed") == 1, result.stdout.str()  # the other task: never skipped
    assert 1 <= outcomes.get("failed", 0) <= 2, result.stdout.str()  # one hang per worker
    assert outcomes.get("failed", 0) + outcomes.get("skipped", 0) == 6


# -- a file that does not import stops its kata -----------------------------------------------


def test_a_file_that_does_not_import_is_shown_once_for_the_whole_kata(pytester):
    _kata(pytester, impl="def answer(:\n    return 42\n")
    _kata(
        pytester,
        impl=HANGS,
        tests="def test_fine(kata):\n    assert kata.answer() == 42\n",
        tasks=None,
        name="other",
    )
    result = _run(pytester)
    result.assert_outcomes(failed=1, skipped=3, passed=1)  # the other kata still runs
    assert sum(line.startswith("BROKEN: ") for line in result.outlines) == 1
    result.stdout.fnmatch_lines(
        ["SKIPPED [[]3[]] *: not run: test_first found that the kata's file does not import*"]
    )


# -- a failure several tests share is shown in full once --------------------------------------

STUB = """
def answer():
    raise NotImplementedError

def other():
    raise NotImplementedError
"""
STUB_TESTS = """
def test_one(kata):
    assert kata.answer() == 42

def test_two(kata):
    assert kata.answer() == 42

def test_three(kata):
    assert kata.answer() == 42

def test_four(kata):
    assert kata.other() == 42
"""


def test_a_shared_todo_is_shown_in_full_once_then_in_one_line(pytester):
    _kata(pytester, impl=STUB, tests=STUB_TESTS, tasks=None)
    result = _run(pytester)
    result.assert_outcomes(failed=4)
    failures = _failure_lines(result.stdout.str())
    full = [line for line in failures if line.startswith("TODO: demo.answer is not implemented")]
    assert len(full) == 1, "\n".join(failures)
    assert failures.count("TODO: same failure as test_one, shown in full above") == 2
    assert "Same failure in 2 more tests, shown below in one line each." in failures
    # a different failure is not taken for the same one: it is shown in full
    assert any(line.startswith("TODO: demo.other is not implemented") for line in failures)
    result.stdout.fnmatch_lines(["FAILED katas/demo/test_demo.py::test_two - TODO: same fail*"])


def test_the_report_keeps_each_tests_full_message(pytester):
    _kata(pytester, impl=STUB, tests=STUB_TESTS, tasks=None)
    path = pytester.path / "report.json"
    _run(pytester, f"--kata-report={path}", f"--junitxml={pytester.path / 'junit.xml'}")
    tests = json.loads(path.read_text(encoding="utf-8"))["tests"]
    assert [t["message"].startswith("TODO: demo.answer is not implemented") for t in tests] == [
        True,
        True,
        True,
        False,
    ]
    junit = (pytester.path / "junit.xml").read_text(encoding="utf-8")
    assert junit.count("same failure as") == 0


# -- a kata failure's message is printed once --------------------------------------------------

RACE_TESTS = """
from pytest_katas import fail_as

def test_race(kata):
    raise fail_as("race", "2 updates were lost\\nthe detail, on its own line")

def test_wrong(kata):
    raise fail_as("wrong", "the answer was 41")
"""


@pytest.mark.parametrize("tb", ["auto", "short", "long", "native"])
def test_a_kata_failure_prints_its_message_once(pytester, tb):
    _kata(pytester, tests=RACE_TESTS, tasks=None)
    result = _run(pytester, f"--tb={tb}")
    result.assert_outcomes(failed=2)
    failures = _failure_lines(result.stdout.str())
    assert failures.count("RACE: 2 updates were lost") == 1, "\n".join(failures)
    assert failures.count("WRONG: the answer was 41") == 1, "\n".join(failures)
    assert "the detail, on its own line" in failures
    assert not [line for line in failures if line.startswith("E ")], "\n".join(failures)
    assert "KataFailure" not in result.stdout.str()


def test_tb_line_shows_the_headline_of_a_kata_failure(pytester):
    _kata(pytester, tests=RACE_TESTS, tasks=None)
    result = _run(pytester, "--tb=line")
    result.stdout.fnmatch_lines(
        [
            "katas/demo/test_demo.py:4: RACE: 2 updates were lost",
            "katas/demo/test_demo.py:7: WRONG: the answer was 41",
        ]
    )
    assert "the detail, on its own line" not in result.stdout.str()


# -- the off switch ---------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["option", "env", "ini"])
def test_the_off_switch_runs_every_test_of_the_task(pytester, monkeypatch, how):
    _kata(pytester)
    args = []
    if how == "option":
        args.append("--kata-keep-going")
    elif how == "env":
        monkeypatch.setenv("PYTEST_KATA_KEEP_GOING", "on")
    else:
        pytester.makeini("[pytest]\nkata_keep_going = on\n")
    result = _run(pytester, *args)
    result.assert_outcomes(failed=2, passed=2)
    assert "not run:" not in result.stdout.str()


def test_the_off_switch_set_off_keeps_the_stop_and_a_bad_value_is_refused(pytester, monkeypatch):
    _kata(pytester)
    monkeypatch.setenv("PYTEST_KATA_KEEP_GOING", "off")
    _run(pytester).assert_outcomes(failed=1, skipped=2, passed=1)
    monkeypatch.setenv("PYTEST_KATA_KEEP_GOING", "maybe")
    result = _run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: $PYTEST_KATA_KEEP_GOING: 'maybe' is not valid*"])


# -- the report of tests not run ----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["exercism", "classroom"])
def test_a_test_not_run_fails_in_the_report_and_says_why(pytester, fmt):
    _kata(pytester)
    manifest.write(pytester.path)  # not tampered with: graded as usual
    path = pytester.path / "report.json"
    result = _run(pytester, f"--kata-report={path}", f"--kata-report-format={fmt}")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    report = json.loads(path.read_text(encoding="utf-8"))
    if fmt == "classroom":  # a point per entry: the hung task's say why, the other passed
        hung = [t for t in report["tests"] if t["name"].startswith("demo task 1 ")]
        assert {t["status"] for t in hung} == {"fail"} and sum(t["score"] for t in hung) == 0
        assert hung[0]["message"].startswith("failed: test_first (HANG), test_second (fail)")
        assert "not run: test_first of the same task hung" not in hung[0]["message"]
        other = [t for t in report["tests"] if t["name"].startswith("demo task 2 ")]
        assert {t["status"] for t in other} == {"pass"} and sum(t["score"] for t in other) == 6
        return
    tests = {t["test"]: t for t in report["tests"]}
    for name in ("test_second", "test_third"):
        assert tests[name]["status"] == "fail"
        assert tests[name]["score"] == 0
        assert tests[name]["message"].startswith(
            "not run: test_first of the same task hung (HANG); fix that first"
        )
    assert tests["test_first"]["status"] == "fail"
    assert tests["test_first"]["message"].startswith("HANG: ")
    assert tests["test_other_task"]["status"] == "pass" and tests["test_other_task"]["score"] == 6
    if fmt == "exercism":
        assert (report["status"], report["score"]) == ("fail", 6)
        assert tests["test_second"]["failure_class"] is None


# -- the faster loop --------------------------------------------------------------------------


def test_a_run_with_a_hang_ends_with_the_faster_loop(pytester):
    _kata(pytester)
    result = _run(pytester)
    result.stdout.fnmatch_lines(
        [
            "A hang can take the whole deadline; while you fix it, this stops sooner: "
            "*pytest* katas/demo -x --kata-timeout=3"
        ]
    )


def test_no_faster_loop_without_a_hang_or_when_the_run_is_that_loop(pytester):
    _kata(pytester, tests=TESTS.replace("kata.wait_forever()", "assert kata.wrong() == 42"))
    assert "this stops sooner" not in _run(pytester).stdout.str()
    _kata(pytester, name="hangs")
    fast = _run(pytester, "-x", "--kata-timeout=3", where="katas/hangs")
    assert "HANG: " in fast.stdout.str() and "this stops sooner" not in fast.stdout.str()
