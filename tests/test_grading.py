"""Grading and reports: scores per task, the board, every format, tampering, xdist, hooks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET

import pytest

from conftest import ROOT, write_kata
from pytest_katas import manifest

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
    assert [t["name"] for t in report["tests"]] == [
        "test_add_adds",
        "test_add_adds_negatives",
        "test_mul_multiplies",
    ]
    assert [t["score"] for t in report["tests"]] == [1.5, 1.5, 0.0]
    mul = report["tests"][2]
    assert mul["failure_class"] == "todo" and mul["task_id"] == 2 and mul["kata"] == "demo"
    assert mul["message"].startswith("TODO: demo.mul is not implemented yet")
    assert "def test_mul_multiplies(kata):" in mul["test_code"]
    result.stdout.fnmatch_lines(
        [
            "*= kata board =*",
            "*demo*1/2 tasks*3/10 points",
            "*task 2 task 2*TODO*hint: pytest katas/demo --kata-hint=2",
        ]
    )


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


def test_the_classroom_format_has_what_github_classroom_reads(pytester):
    _demo(pytester)
    _, report = _report(pytester, "--kata-report-format=classroom")
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
    assert first["filename"] == "katas/demo/test_demo.py" and first["line_no"] == 2


def test_an_unknown_report_format_is_refused_before_any_test_runs(pytester):
    _demo(pytester)
    result = pytester.runpytest_subprocess("katas", "--kata-report-format=xml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--kata-report-format=xml: there is no such format*"])


def test_junitxml_carries_the_kata_task_and_failure_class(pytester):
    _demo(pytester)
    junit = pytester.path / "junit.xml"
    pytester.runpytest_subprocess("katas", f"--junitxml={junit}")
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
    result.assert_outcomes(passed=3, failed=3)
    result.stdout.fnmatch_lines(
        ["BROKEN: katas/broken/broken.py, line 2: SyntaxError: invalid syntax*"]
    )
    assert report["status"] == "error"
    assert report["message"].startswith("BROKEN: katas/broken/broken.py, line 2")
    assert report["katas"]["demo"]["score"] == 10


def test_an_interrupted_run_still_writes_its_report(pytester):
    _demo(
        pytester,
        impl="import time\ndef add(a, b):\n    time.sleep(60)\ndef mul(a, b):\n    return a * b\n",
        timeout=120,
    )
    path = pytester.path / "report.json"
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
        # xdist workers ignore SIGINT, and children inherit that; a learner's shell does not.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        time.sleep(3)
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
