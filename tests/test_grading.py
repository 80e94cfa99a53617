"""Grading and reports: scores per task, the board, every format, tampering, xdist, hooks."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET

import pytest

from conftest import ROOT, ctrl_c_as_in_a_terminal, write_kata
from pytest_katas import manifest

# Nothing here depends on the Python version: run on one of them (tox.ini).
pytestmark = pytest.mark.one_python

HALF_DONE = """
def add(a, b):
    return a + b
def mul(a, b):
    raise NotImplementedError
"""
TESTS = """
def test_add_adds(kata):
    assert kata.add(2, 3) == 5
def test_add_adds_negatives(kata):
    assert kata.add(-2, -3) == -5
def test_mul_multiplies(kata):
    assert kata.mul(2, 3) == 6
"""
TASKS = [(3, ["test_add_adds", "test_add_adds_negatives"]), (7, ["test_mul_multiplies"])]


def _demo(pytester, impl=HALF_DONE, tests=TESTS, **kwargs):
    """A two-task kata, with a fresh manifest so that it grades as untampered."""
    folder = write_kata(
        pytester, textwrap.dedent(impl), textwrap.dedent(tests), tasks=TASKS, **kwargs
    )
    manifest.write(pytester.path)
    return folder


def _report(pytester, *args):
    path = pytester.path / "report.json"
    result = pytester.runpytest_subprocess(
        "katas", "-p", "no:cacheprovider", f"--kata-report={path}", *args
    )
    return result, json.loads(path.read_text(encoding="utf-8"))


def test_a_half_done_kata_scores_the_tasks_whose_tests_all_pass(pytester):
    _demo(pytester)
    result, report = _report(pytester)
    result.assert_outcomes(passed=2, failed=1)
    assert (report["version"], report["status"]) == (3, "fail")
    assert (report["score"], report["max_score"]) == (3, 10)
    assert [t["test"] for t in report["tests"]] == [
        "test_add_adds",
        "test_add_adds_negatives",
        "test_mul_multiplies",
    ]
    assert report["tests"][1]["name"] == "demo: Add adds negatives"
    assert [t["score"] for t in report["tests"]] == [1.5, 1.5, 0.0]
    mul = report["tests"][2]
    assert mul["failure_class"] == "todo" and mul["task_id"] == 2 and mul["kata"] == "demo"
    assert mul["message"].startswith("TODO: demo.mul is not implemented yet")
    assert mul["test_code"] == "assert kata.mul(2, 3) == 6"  # the body, as Exercism asks
    result.stdout.fnmatch_lines(
        [
            "*= kata board =*",
            "*demo*1/2 tasks*3/10 points",
            "*task 2 task 2*TODO*hint: *katas hint demo 2",
        ]
    )


def test_output_past_500_characters_is_cut_with_exercisms_notice(pytester):
    _demo(
        pytester,
        tests=TESTS.replace("    assert kata.add(2, 3) == 5", '    print("x" * 600)\n    assert 0'),
    )
    _, report = _report(pytester)
    loud = report["tests"][0]
    assert loud["output"] == "x" * 500 + "\n\nOutput was truncated. Please limit to 500 chars"
    assert report["tests"][1]["output"] is None


def test_collect_only_leaves_the_last_report_alone(pytester):
    _demo(pytester)
    _, before = _report(pytester)
    path = pytester.path / "report.json"
    result = pytester.runpytest_subprocess("katas", "--co", f"--kata-report={path}")
    assert result.ret == pytest.ExitCode.OK
    assert json.loads(path.read_text(encoding="utf-8")) == before
    result.stdout.fnmatch_lines(["kata report: not written (* is left as it was): no test runs*"])


@pytest.mark.parametrize("method", ["signal", "thread"])
def test_a_test_pytest_timeout_stops_is_graded_a_hang_and_the_run_goes_on(pytester, method):
    # Its thread method ends pytest with os._exit: the supervisor keeps its deadline instead.
    pytest.importorskip("pytest_timeout")
    slow = HALF_DONE.replace("return a + b", "import time; time.sleep(60)")
    _demo(pytester, impl=slow, timeout=30)  # pytest-timeout's 2 s come before our 30 s
    args = ("--timeout=2", f"--timeout-method={method}", "--kata-keep-going")
    result, report = _report(pytester, *args, "-k", "add_adds")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*deadline was pytest-timeout's*It was 2 s*", "*kata board*"])
    stopped = [t for t in report["tests"] if t["status"] == "fail"]
    assert len(stopped) == 2 and {t["failure_class"] for t in stopped} == {"hang"}, report


def test_an_untouched_stub_scores_zero(pytester):
    _demo(
        pytester,
        impl="def add(a, b):\n    raise NotImplementedError\n"
        "def mul(a, b):\n    raise NotImplementedError\n",
    )
    _, report = _report(pytester)
    assert (report["status"], report["score"], report["max_score"]) == ("fail", 0, 10)


def test_a_finished_kata_passes_with_full_marks(pytester):
    _demo(pytester, impl=HALF_DONE.replace("raise NotImplementedError", "return a * b"))
    _, report = _report(pytester)
    assert (report["status"], report["score"], report["max_score"]) == ("pass", 10, 10)
    assert report["message"] is None


def test_an_edited_kata_test_file_makes_the_report_an_error_that_names_it(pytester):
    _demo(pytester)
    test_file = pytester.path / "katas" / "demo" / "test_demo.py"
    test_file.write_text(test_file.read_text().replace("== 6", "is not None"))
    _, report = _report(pytester)
    assert report["status"] == "error"
    assert "katas/demo/test_demo.py (edited)" in report["message"]


def test_an_added_conftest_counts_as_tampering(pytester):
    _demo(pytester)
    (pytester.path / "katas" / "demo" / "conftest.py").write_text("")
    _, report = _report(pytester)
    assert report["status"] == "error"
    assert "katas/demo/conftest.py (added)" in report["message"]


def test_xdist_gives_the_same_report_as_a_serial_run(pytester):
    _demo(pytester)
    _, serial = _report(pytester)
    result, parallel = _report(pytester, "-n", "2")
    result.stdout.fnmatch_lines(["*demo*1/2 tasks*3/10 points"])

    def scores(report):
        return [(t["name"], t["status"], t["score"], t["failure_class"]) for t in report["tests"]]

    assert scores(parallel) == scores(serial)
    assert (parallel["status"], parallel["score"]) == (serial["status"], serial["score"])


def classroom_reporter(results: dict) -> dict:
    """What GitHub Classroom's reporter (classroom-resources/autograding-grading-reporter)
    computes from one runner's result: the points it sends (the sum of the tests' scores),
    its summary table's score (the share of tests passed, times max_score) and total
    percentage, and its console's grand total (the share of tests passed, out of 100)."""
    tests = results["tests"]
    passed = sum(t["status"] == "pass" for t in tests)
    table = passed / len(tests) * (results["max_score"] or 1)
    return {
        "notice": sum(t["score"] for t in tests),
        "max": results["max_score"],
        "table": table,
        "total_percent": table / (results["max_score"] or 1) * 100,
        "console_percent": passed / len(tests) * 100,
    }


def _classroom(pytester, *args):
    _, report = _report(pytester, "--kata-report-format=classroom", *args)
    return report, classroom_reporter(report)


def test_the_classroom_format_has_what_github_classroom_reads(pytester):
    _demo(pytester)
    report, _ = _classroom(pytester)
    assert set(report) == {"version", "status", "max_score", "tests"}
    assert (report["status"], report["max_score"]) == ("fail", 10)
    first = report["tests"][0]
    assert set(first) == {
        "name",
        "status",
        "score",
        "message",
        "test_code",
        "filename",
        "line_no",
        "duration",
    }
    assert first["name"] == "demo task 1 (1/3): task 1"
    assert first["filename"] == "katas/demo/test_demo.py"


def test_a_half_done_run_grades_the_same_in_classroom_notice_table_and_console(pytester):
    _demo(pytester)  # task 1 (3 points) done, task 2 (7 points) not
    report, seen = _classroom(pytester)
    assert seen == {
        "notice": 3,
        "max": 10,
        "table": 3.0,
        "total_percent": 30.0,
        "console_percent": 30.0,
    }
    failed = [t for t in report["tests"] if t["status"] == "fail"]
    assert len(failed) == 7 and failed[0]["message"].startswith(
        "failed: test_mul_multiplies (TODO)\n\ntest_mul_multiplies: TODO: demo.mul"
    )
    assert failed[1]["message"] == "see demo task 2 (1/7)"


@pytest.mark.parametrize("args", [(), ("--count", "2"), ("--reruns", "1")])
def test_a_finished_kata_grades_exactly_full_marks_however_often_its_tests_ran(pytester, args):
    if args:  # installed where this file runs in tox (py312)
        needs = {"--count": "pytest_repeat", "--reruns": "pytest_rerunfailures"}
        pytest.importorskip(needs[args[0]])
    _demo(pytester, impl=HALF_DONE.replace("raise NotImplementedError", "return a * b"))
    report, seen = _classroom(pytester, *args)
    assert report["status"] == "pass"
    assert seen["notice"] == seen["table"] == seen["max"] == 10
    assert seen["total_percent"] == seen["console_percent"] == 100.0


def test_a_test_that_passes_on_its_rerun_is_graded_as_pytest_finally_says(pytester):
    flaky = """
import os
def add(a, b):
    first = not os.path.exists("tried")
    open("tried", "w").close()
    return a + b + (1 if first else 0)
def mul(a, b):
    return a * b
"""
    pytest.importorskip("pytest_rerunfailures")
    _demo(pytester, impl=flaky)
    for args in ((), ("-n", "2")):
        (pytester.path / "tried").unlink(missing_ok=True)
        result, report = _report(pytester, "--reruns", "1", *args)
        outcomes = result.parseoutcomes()  # (a warning or two may come along)
        assert (outcomes.get("passed"), outcomes.get("rerun"), outcomes.get("failed")) == (
            3,
            1,
            None,
        )
        assert (report["status"], report["score"]) == ("pass", 10), args
        assert {t["status"] for t in report["tests"]} == {"pass"}
    (pytester.path / "tried").unlink()
    junit = pytester.path / "junit.xml"
    pytester.runpytest_subprocess("katas", "--reruns", "1", f"--junitxml={junit}")
    for case in ET.parse(junit).getroot().iter("testcase"):
        names = [p.get("name") for p in case.iter("property")]
        assert sorted(names) == sorted(set(names)), f"a property twice: {names}"


def test_an_untouched_stub_grades_zero_in_classroom(pytester):
    _demo(
        pytester,
        impl="def add(a, b):\n    raise NotImplementedError\n"
        "def mul(a, b):\n    raise NotImplementedError\n",
    )
    _, seen = _classroom(pytester)
    assert seen["notice"] == seen["table"] == 0 and seen["max"] == 10


def test_an_unknown_report_format_is_refused_before_any_test_runs(pytester):
    _demo(pytester)
    result = pytester.runpytest_subprocess("katas", "--kata-report-format=xml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--kata-report-format=xml: there is no such format*"])


@pytest.mark.parametrize("family", ["xunit1", "xunit2"])
def test_junitxml_carries_the_kata_task_and_failure_class(pytester, family):
    _demo(pytester)
    junit = pytester.path / "junit.xml"
    result = pytester.runpytest_subprocess(
        "katas", f"--junitxml={junit}", "-o", f"junit_family={family}"
    )
    # as pytest's record_property does: outside xunit2's schema, so it warns (once) there
    warned = "outside the xunit2 schema" in result.stdout.str()
    assert warned == (family == "xunit2")
    assert result.stdout.str().count("outside the xunit2 schema") <= 1
    props = {
        case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
        for case in ET.parse(junit).getroot().iter("testcase")
    }
    assert props["test_mul_multiplies"] == {
        "kata": "demo",
        "kata_task": "2",
        "kata_failure_class": "todo",
    }
    assert props["test_add_adds"] == {"kata": "demo", "kata_task": "1"}


def test_a_report_format_can_come_from_a_plugin_hook(pytester):
    _demo(pytester)
    pytester.makeconftest(
        """
        def pytest_kata_report(config, gradebook, fmt):
            if fmt == "tally":
                return {"points": gradebook.score}
        """
    )
    _, report = _report(pytester, "--kata-report-format=tally")
    assert report == {"points": 3}


def test_a_classifier_hook_can_rename_a_failure_class(pytester):
    _demo(pytester)
    pytester.makeconftest(
        """
        from pytest_katas import Kind
        def pytest_kata_classify(report, outcome):
            return Kind.SLOW
        def pytest_kata_graded(config, grade):
            print(f"graded {grade.name}: {grade.status}")
        """
    )
    result, report = _report(pytester, "-s")
    assert report["tests"][2]["failure_class"] == "slow"
    result.stdout.fnmatch_lines(["*graded test_mul_multiplies: fail*"])


def test_hints_come_one_at_a_time_from_gentle_to_explicit(pytester):
    _demo(pytester)
    first = pytester.runpytest_subprocess("katas/demo", "--kata-hint=2")
    second = pytester.runpytest_subprocess("katas/demo", "--kata-hint=2")
    assert first.ret == second.ret == 0
    first.stdout.fnmatch_lines(["demo, task 2: task 2", "hint 1 of 2: first hint"])
    second.stdout.fnmatch_lines(["hint 2 of 2: second hint", "*that was the last hint*"])


def test_a_learner_file_that_does_not_import_is_an_error_and_other_katas_still_run(pytester):
    _demo(pytester, impl="def add(a, b):\n    return a +\n", name="broken")
    _demo(pytester, impl=HALF_DONE.replace("raise NotImplementedError", "return a * b"))
    result, report = _report(pytester)
    # the broken kata's first test says BROKEN; its others are not run because of it
    result.assert_outcomes(passed=3, failed=1, skipped=2)
    result.stdout.fnmatch_lines(
        ["BROKEN: katas/broken/broken.py, line 2: SyntaxError: invalid syntax*"]
    )
    # Exercism's "error" means nothing ran: one broken kata makes the run fail, and the
    # kata's own entry says why
    assert (report["status"], report["message"]) == ("fail", None)
    assert report["katas"]["broken"]["status"] == "error"
    assert report["katas"]["broken"]["message"].startswith("BROKEN: katas/broken/broken.py, line 2")
    assert report["katas"]["demo"]["score"] == 10


def test_an_interrupted_run_still_writes_its_report(pytester):
    _demo(
        pytester,
        impl="import time\ndef add(a, b):\n    time.sleep(60)\ndef mul(a, b):\n    return a * b\n",
        timeout=120,
    )
    path = pytester.path / "report.json"
    with ctrl_c_as_in_a_terminal():
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pytest",
                "katas",
                f"--kata-report={path}",
                "-p",
                "no:cacheprovider",
            ],
            cwd=pytester.path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    try:
        # Ctrl-C once the run has begun (its start report is there), however long a busy
        # machine took to get that far; then a moment for the test to be under way.
        deadline = time.monotonic() + 60
        while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    report = json.loads(path.read_text(encoding="utf-8"))
    assert report["status"] == "error"
    assert "interrupted" in report["message"]


@pytest.mark.slow
def test_the_solutions_get_full_marks_over_all_katas(tmp_path):
    path = tmp_path / "r.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "katas",
            "--kata-target=solutions",
            "-p",
            "no:cacheprovider",
            f"--kata-report={path}",
            "-n",
            "2",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    report = json.loads(path.read_text(encoding="utf-8"))
    assert report["status"] == "pass", proc.stdout[-3000:]
    assert report["score"] == report["max_score"] > 0


# -- report hygiene: a report never says more than the run showed -----------------------------


def _graded(pytester, *args):
    """_report, with the tamper manifest written just before (for tests of other things)."""
    manifest.write(pytester.path)
    return _report(pytester, *args)


DONE = HALF_DONE.replace("raise NotImplementedError", "return a * b")
HANGING_ADD = "import time\ndef add(a, b):\n    time.sleep(60)\ndef mul(a, b):\n    return a * b\n"


def _killed_mid_run(pytester, *args):
    """Start pytest on a hanging kata with a stale 'pass' report in place; once the run has
    begun, SIGKILL it (and its sandboxes): what does the report file say?"""
    path = pytester.path / "report.json"
    path.write_text('{"status": "pass", "score": 10}\n', encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "katas", f"--kata-report={path}", *args],
        cwd=pytester.path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while "did not finish" not in path.read_text(encoding="utf-8"):
            assert proc.poll() is None and time.monotonic() < deadline, "no start report"
            time.sleep(0.05)
        time.sleep(0.5)  # well into the hanging test
        assert proc.poll() is None
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("fmt", ["exercism", "classroom"])
def test_a_run_killed_mid_way_leaves_an_error_report_never_a_stale_pass(pytester, fmt):
    _demo(pytester, impl=HANGING_ADD, timeout=120)
    manifest.write(pytester.path)
    report = _killed_mid_run(pytester, "-p", "no:cacheprovider", f"--kata-report-format={fmt}")
    assert report["status"] == "error"
    assert report["message"] == "the run did not finish"
    assert report["max_score"] == 10 and all(t["score"] == 0 for t in report["tests"])
    if fmt == "exercism":
        assert report["score"] == 0
        assert report["katas"]["demo"] == {
            "score": 0,
            "max_score": 10,
            "tasks_done": 0,
            "tasks": 2,
            "status": "error",
            "message": "the run did not finish",
            "task_scores": [
                {"id": 1, "title": "task 1", "points": 3, "score": 0},
                {"id": 2, "title": "task 2", "points": 7, "score": 0},
            ],
        }


def test_the_start_report_is_replaced_at_the_end(pytester):
    _demo(pytester, impl=DONE)
    (pytester.path / "report.json").write_text("not even JSON")
    result, report = _graded(pytester)
    assert result.ret == pytest.ExitCode.OK
    assert (report["status"], report["score"], report["message"]) == ("pass", 10, None)
    assert not list(pytester.path.glob("report.json.*.tmp"))


def test_a_tampered_kata_scores_zero_and_the_other_katas_keep_theirs(pytester):
    _demo(pytester, impl=DONE, name="other")
    _demo(pytester, impl=DONE)
    test_file = pytester.path / "katas" / "demo" / "test_demo.py"
    test_file.write_text(test_file.read_text() + "\n# just a comment\n")
    result, report = _report(pytester)
    result.assert_outcomes(passed=6)
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # every test passed, yet the grade is error
    assert report["status"] == "error"
    assert report["katas"]["demo"]["score"] == 0 and report["katas"]["demo"]["status"] == "error"
    assert report["katas"]["other"]["score"] == 10
    demo = [t for t in report["tests"] if t["kata"] == "demo"]
    assert [t["score"] for t in demo] == [0.0, 0.0, 0.0]
    assert report["score"] == 10
    result.stdout.fnmatch_lines(
        ["*demo*0/10 points", "*scores 0: TAMPERED: katas/demo/test_demo.py*"]
    )
    _, classroom = _report(pytester, "--kata-report-format=classroom")
    scores = {}
    for test in classroom["tests"]:
        kata = test["name"].split(" ")[0]
        scores[kata] = scores.get(kata, 0) + test["score"]
    assert scores == {"demo": 0, "other": 10}  # what GitHub Classroom adds up
    assert classroom["status"] == "error" and "test_demo.py (edited)" in classroom["message"]


def test_an_edited_plugin_file_scores_every_kata_zero(pytester):
    _demo(pytester, impl=DONE)
    recorded = json.loads((pytester.path / manifest.MANIFEST).read_text())
    recorded["plugin"]["pytest_katas/grading.py"] = "0" * 64
    (pytester.path / manifest.MANIFEST).write_text(json.dumps(recorded))
    result, report = _report(pytester)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert (report["status"], report["score"]) == ("error", 0)
    assert all(t["score"] == 0 for t in report["tests"])


def test_an_untampered_finished_kata_exits_zero_with_full_marks(pytester):
    _demo(pytester, impl=DONE, name="other")
    _demo(pytester, impl=DONE)
    result, report = _graded(pytester)
    assert result.ret == pytest.ExitCode.OK
    assert (report["status"], report["score"], report["max_score"]) == ("pass", 20, 20)


CRASHER = """
import os

def pytest_runtest_{phase}(item):
    if item.name == "test_add_adds" and os.environ.get("CRASH_A_WORKER") and hasattr(
        item.config, "workerinput"
    ):
        os._exit(3)
"""


@pytest.mark.parametrize("phase", ["setup", "call"])
def test_a_crashed_xdist_worker_fails_its_test_never_passes_it(pytester, monkeypatch, phase):
    _demo(pytester, impl=DONE)
    pytester.makeconftest(CRASHER.format(phase=phase))  # outside katas/: not protected
    monkeypatch.setenv("CRASH_A_WORKER", "1")
    result, report = _graded(pytester, "-n", "2")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert report["status"] == "fail" and report["score"] == 7
    crashed = next(t for t in report["tests"] if t["test"] == "test_add_adds")
    assert (crashed["status"], crashed["score"], crashed["failure_class"]) == ("fail", 0, "crash")
    assert crashed["message"].startswith("CRASH: worker 'gw")
    assert crashed["task_id"] == 1
    monkeypatch.delenv("CRASH_A_WORKER")
    result, report = _graded(pytester, "-n", "2")
    assert result.ret == pytest.ExitCode.OK
    assert (report["status"], report["score"]) == ("pass", 10)


NO_CALL = """
import os
from _pytest.runner import call_and_report

def pytest_runtest_protocol(item, nextitem):
    if item.name != "test_add_adds" or not os.environ.get("SKIP_THE_CALL"):
        return None
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    call_and_report(item, "setup")  # passes; then the call report never comes
    call_and_report(item, "teardown", nextitem=nextitem)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True
"""


@pytest.mark.parametrize("with_report", [True, False])
def test_a_test_whose_call_report_never_came_is_failed(pytester, monkeypatch, with_report):
    _demo(pytester, impl=DONE)
    pytester.makeconftest(NO_CALL)
    monkeypatch.setenv("SKIP_THE_CALL", "1")
    manifest.write(pytester.path)
    path = pytester.path / "report.json"
    args = ["katas", "-p", "no:cacheprovider"] + ([f"--kata-report={path}"] if with_report else [])
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(passed=2)  # pytest itself saw nothing wrong
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*demo*1/2 tasks*7/10 points", "*task 1*CRASH*"])
    if with_report:
        report = json.loads(path.read_text(encoding="utf-8"))
        assert report["status"] == "fail" and report["score"] == 7
        missing = next(t for t in report["tests"] if t["test"] == "test_add_adds")
        assert (missing["status"], missing["score"], missing["failure_class"]) == (
            "fail",
            0,
            "crash",
        )
        assert missing["message"].startswith("CRASH: no call result arrived for this test")
    monkeypatch.delenv("SKIP_THE_CALL")
    manifest.write(pytester.path)
    assert pytester.runpytest_subprocess(*args).ret == pytest.ExitCode.OK


def test_the_exit_code_agrees_with_the_report(pytester):
    """A run of some tests passes for pytest; with a report, a grade short of 'pass' fails."""
    _demo(pytester, impl=DONE)
    subset, report = _graded(pytester, "-k", "add_adds")
    subset.assert_outcomes(passed=2)
    assert report["status"] == "fail" and subset.ret == pytest.ExitCode.TESTS_FAILED
    manifest.write(pytester.path)
    plain = pytester.runpytest_subprocess("katas", "-p", "no:cacheprovider", "-k", "add_adds")
    assert plain.ret == pytest.ExitCode.OK  # no report: nothing to disagree with
    whole, report = _graded(pytester)
    assert report["status"] == "pass" and whole.ret == pytest.ExitCode.OK


def test_a_classroom_report_of_many_long_failures_fits_the_reporters_environment():
    # grade.yml hands the report to the reporter base64-encoded in one environment
    # variable, and Linux refuses a variable over 128 KiB ("Argument list too long").
    from pytest_katas import report as formats

    tests = [
        {
            "kata": kata,
            "name": f"{kata}: {n}",
            "test": f"test_{n}",
            "task_id": 1 + n % 3,
            "status": "fail",
            "failure_class": "hang",
            "message": f"HANG: test {n} {'x' * 20_000}",
        }
        for kata in ("pipe", "manager")
        for n in range(12)
    ]
    task_scores = [{"id": i, "title": f"task {i}", "points": 4, "score": 0} for i in (1, 2, 3)]
    checked = {
        "status": "fail",
        "max_score": 24,
        "katas": {k: {"status": "fail", "task_scores": task_scores} for k in ("pipe", "manager")},
        "tests": tests,
    }
    encoded = base64.b64encode(json.dumps(formats.classroom_of(checked)).encode())
    assert len(encoded) < 64 * 1024, len(encoded)
    step = subprocess.run(
        ["sh", "-c", 'test -n "$KATAS_RESULTS"'],
        env={**os.environ, "KATAS_RESULTS": encoded.decode()},
        check=False,
    )
    assert step.returncode == 0


# -- Exercism's interface, to the letter ---------------------------------------------------


def test_the_spec_checker_catches_each_broken_rule():
    """The checker (tests/exercism_spec.py) against a good report and one mutant per rule."""
    from exercism_spec import TRUNCATED, problems

    good = {
        "version": 3,
        "status": "fail",
        "message": None,
        "tests": [
            {"name": "demo: Add adds", "status": "pass", "test_code": "", "task_id": 1},
            {
                "name": "demo: Mul multiplies",
                "status": "fail",
                "message": "WRONG: 5 != 6",
                "output": "x" * 500 + "\n\n" + TRUNCATED,
                "test_code": "assert kata.mul(2, 3) == 6",
                "task_id": 2,
            },
        ],
    }
    assert problems(good) == []
    mutants = {
        "version": lambda r: r.update(version=2),
        "status": lambda r: r.update(status="failed"),
        "top-level message": lambda r: r.update(message="something"),
        "error": lambda r: r.update(status="error"),
        "status is pass": lambda r: r.update(status="pass"),
        "no test failed": lambda r: r["tests"][1].update(status="pass", message=None),
        "function name": lambda r: r["tests"][0].update(name="test_add_adds"),
        "same name": lambda r: r["tests"][1].update(name="demo: Add adds"),
        "needs a message": lambda r: r["tests"][1].update(message=None),
        "a pass has": lambda r: r["tests"][0].update(message="fine"),
        "without the notice": lambda r: r["tests"][1].update(output="x" * 501),
        "test_code": lambda r: r["tests"][0].pop("test_code"),
        "task_id": lambda r: r["tests"][0].update(task_id=0),
    }
    for rule, mutate in mutants.items():
        bad = json.loads(json.dumps(good))
        mutate(bad)
        assert any(rule in p for p in problems(bad)), (rule, problems(bad))


def _exercism_reports(pytester):
    """The reports of every kind of run: done, half done, loud, broken beside done, an
    error (tampering), and a usage error."""
    loud = TESTS.replace("    assert kata.add(2, 3) == 5", '    print("x" * 600)\n    assert 0')
    folder = _demo(pytester, impl=HALF_DONE.replace("raise NotImplementedError", "return a * b"))
    yield "done", _report(pytester)[1]
    (folder / "demo.py").write_text(textwrap.dedent(HALF_DONE))
    yield "half done", _report(pytester)[1]
    (folder / "test_demo.py").write_text(textwrap.dedent(loud))
    manifest.write(pytester.path)
    yield "loud", _report(pytester)[1]
    (folder / "test_demo.py").write_text(textwrap.dedent(TESTS))
    _demo(pytester, impl="def add(a, b):\n    return a +\n", name="broken")
    yield "broken beside a half-done kata", _report(pytester)[1]
    (pytester.path / "katas" / "demo" / "conftest.py").write_text("")
    yield "tampered", _report(pytester)[1]
    yield "usage error", _report(pytester, "--kata-timeout=-1")[1]


def test_every_report_keeps_to_exercisms_v3_interface(pytester):
    from exercism_spec import problems

    seen = {}
    for case, report in _exercism_reports(pytester):
        seen[case] = report["status"]
        assert problems(report) == [], case
    assert seen == {
        "done": "pass",
        "half done": "fail",
        "loud": "fail",
        "broken beside a half-done kata": "fail",
        "tampered": "error",
        "usage error": "error",
    }
