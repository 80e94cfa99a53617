"""Bad configuration: every numeric setting refuses inf, nan, 0, negatives and wrong types
wherever it comes from (kata.toml, options, ini, environment, markers), with a message that
says what, where and what to do; a broken kata.toml breaks only its own kata; a bad option is
a usage error that still leaves an error report; nothing ends in INTERNALERROR."""

from __future__ import annotations

import fnmatch
import json
import textwrap

import pytest

from conftest import write_kata
from pytest_katas import catalog, manifest, settings

# Nothing here depends on the Python version: run on one of them (tox.ini).
pytestmark = pytest.mark.one_python

IMPL = "def add(a, b):\n    return a + b\n"
TESTS = """
def test_add_adds(kata):
    assert kata.add(2, 3) == 5
def test_add_adds_negatives(kata):
    assert kata.add(-2, -3) == -5
"""
GOOD_TOML = """title = "demo"
order = 1
timeout = 5

[[tasks]]
id = 1
title = "add"
points = 4
tests = ["test_add_adds", "test_add_adds_negatives"]
hints = ["one", "two"]
"""


def _kata(pytester, name="demo", tests=TESTS, toml=None, impl=IMPL):
    folder = write_kata(pytester, impl, textwrap.dedent(tests), name=name)
    if toml is not None:
        (folder / "kata.toml").write_text(toml, encoding="utf-8")
    return folder


def _run(pytester, *args, protect=True):
    """pytest katas --kata-report=...: (result, report), with a fresh tamper manifest."""
    if protect:
        manifest.write(pytester.path)
    path = pytester.path / "report.json"
    path.write_text('{"status": "pass", "score": 99}\n')  # what a stale report would say
    result = pytester.runpytest_subprocess(
        "katas", "-p", "no:cacheprovider", f"--kata-report={path}", *args
    )
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    return result, json.loads(path.read_text(encoding="utf-8"))


# -- kata.toml: checked at load, one message per mistake ------------------------------------


def _read(tmp_path, toml):
    folder = tmp_path / "katas" / "demo"
    folder.mkdir(parents=True)
    (folder / "kata.toml").write_text(toml, encoding="utf-8")
    return catalog.read_kata(folder)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "timeout = 5",
            "timeout = -1",
            "katas/demo/kata.toml: timeout = -1 is not a number of seconds above 0; "
            "set it to e.g. 10",
        ),
        ("timeout = 5", "timeout = 0", "*timeout = 0 is not a number of seconds above 0;*"),
        (
            "timeout = 5",
            "timeout = inf",
            "*timeout = inf is not a number of seconds above 0 (a limit of inf never ends*",
        ),
        ("timeout = 5", "timeout = -inf", "*timeout = -inf is not a number of seconds above 0;*"),
        ("timeout = 5", "timeout = nan", "*timeout = nan is not a number of seconds above 0;*"),
        ("timeout = 5", 'timeout = "10"', '*timeout = "10" is not a number*drop the quotes*'),
        ("timeout = 5", "timeout = true", "*timeout = true is not a number*yes/no values*"),
        (
            "points = 4",
            "points = 0",
            "katas/demo/kata.toml: [[tasks]] entry 1: points = 0 is not a whole number of "
            "points above 0; set it to e.g. 1",
        ),
        ("points = 4", "points = -2", "*points = -2 is not a whole number of points above 0*"),
        ("points = 4", "points = 2.5", "*points = 2.5 is not a whole number of points above 0*"),
        ("points = 4", "points = true", "*points = true is not a whole number of points*"),
        ("points = 4", 'points = "4"', '*points = "4" is not a whole number*drop the quotes*'),
        ("id = 1", "id = 0", "*[[tasks]] entry 1: id = 0 is not a whole number above 0*"),
        ("order = 1", "order = -1", "*order = -1 is not a whole number (the kata's place)*"),
        ('title = "demo"\n', "", "*the key 'title' is missing; add e.g. title = *"),
        ('hints = ["one", "two"]', "hints = []", "*hints = ?? is not a list of texts*"),
        (
            "timeout = 5",
            "timeout = ",
            "katas/demo/kata.toml, line 3: not valid TOML: Invalid value (column 11); "
            "fix that line",
        ),
    ],
)
def test_a_bad_kata_toml_value_says_what_where_and_what_to_do(tmp_path, old, new, message):
    assert old in GOOD_TOML
    kata = _read(tmp_path, GOOD_TOML.replace(old, new, 1))
    assert kata.problem is not None
    assert fnmatch.fnmatchcase(kata.problem, message.replace("[[", "[[][[]")), kata.problem


def test_a_good_kata_toml_loads_whole(tmp_path):
    kata = _read(tmp_path, GOOD_TOML)
    assert kata.problem is None
    assert (kata.timeout, kata.tasks[0].points, kata.tasks[0].id) == (5.0, 4, 1)
    catalog.load_kata(kata.directory)  # the raising form agrees


def test_a_broken_kata_keeps_what_it_could_read(tmp_path):
    kata = _read(tmp_path, GOOD_TOML.replace("timeout = 5", "timeout = -1"))
    assert [t.points for t in kata.tasks] == [4]  # its points still show, at 0
    with pytest.raises(catalog.KataError, match="timeout = -1"):
        catalog.load_kata(kata.directory)


# -- a broken kata.toml breaks only its own kata ---------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("timeout = 5", "timeout = -1", "BROKEN: katas/broken/kata.toml: timeout = -1 is not a*"),
        ("timeout = 5", "timeout = inf", "BROKEN: katas/broken/kata.toml: timeout = inf is not*"),
        (
            "points = 4",
            'points = "4"',
            "BROKEN: katas/broken/kata.toml: ??tasks?? entry 1: points = *",
        ),
        ("order = 1", "order = 1\norder = 2", "BROKEN: katas/broken/kata.toml, line 3: not valid*"),
    ],
)
@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_a_broken_kata_toml_errors_its_own_tests_and_the_others_are_graded(
    pytester, old, new, message, workers
):
    _kata(pytester, name="broken", toml=GOOD_TOML.replace(old, new, 1))
    _kata(pytester, name="demo", toml=GOOD_TOML)
    result, report = _run(pytester, *workers)
    result.assert_outcomes(passed=2, errors=2)
    result.stdout.fnmatch_lines([message])
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert (report["status"], report["message"]) == ("fail", None)  # the demo kata was graded
    assert report["katas"]["broken"]["message"].startswith("BROKEN: katas/broken/kata.toml")
    assert report["katas"]["demo"]["score"] == 4 and report["katas"]["demo"]["status"] == "pass"
    assert report["katas"]["broken"]["score"] == 0
    assert report["katas"]["broken"]["status"] == "error"
    broken = [t for t in report["tests"] if t["kata"] == "broken"]
    assert [(t["status"], t["score"], t["failure_class"]) for t in broken] == [
        ("error", 0.0, "broken")
    ] * 2
    assert broken[0]["message"].startswith("BROKEN: katas/broken/kata.toml")
    assert report["score"] == 4


def test_good_kata_tomls_grade_as_usual(pytester):
    _kata(pytester, name="broken", toml=GOOD_TOML)
    _kata(pytester, name="demo", toml=GOOD_TOML)
    result, report = _run(pytester)
    result.assert_outcomes(passed=4)
    assert result.ret == pytest.ExitCode.OK
    assert (report["status"], report["score"], report["message"]) == ("pass", 8, None)


REWRITER = """
import os
_other = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "other", "kata.toml")
with open(_other, encoding="utf-8") as _file:
    _text = _file.read()
with open(_other, "w", encoding="utf-8") as _file:
    _file.write(_text.replace("timeout = 5", "timeout = -1"))
def add(a, b):
    return a + b
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_every_kata_toml_is_read_before_any_test_runs(pytester, workers):
    """Learner code of one kata rewrites another kata's kata.toml: too late, it was read."""
    _kata(pytester, name="apple", toml=GOOD_TOML, impl=REWRITER)
    _kata(pytester, name="other", toml=GOOD_TOML.replace("order = 1", "order = 2"))
    result, report = _run(pytester, *workers)
    assert "timeout = -1" in (pytester.path / "katas" / "other" / "kata.toml").read_text()
    result.assert_outcomes(passed=4)
    assert report["katas"]["other"]["score"] == 4


def test_a_hint_for_a_broken_kata_is_a_usage_error(pytester):
    _kata(pytester, toml=GOOD_TOML.replace("timeout = 5", "timeout = inf"))
    result = pytester.runpytest_subprocess("katas/demo", "--kata-hint=1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: katas/demo/kata.toml: timeout = inf is not a number*"])
    ok = _kata(pytester, name="fine", toml=GOOD_TOML)
    assert pytester.runpytest_subprocess(str(ok), "--kata-hint=1").ret == 0


def test_a_missing_kata_is_named_even_beside_a_broken_one(pytester):
    _kata(pytester, toml="title = \n")
    result = pytester.runpytest_subprocess("katas/nosuch")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: there is no kata 'nosuch' in katas/. The katas are: demo*"]
    )


# -- options, ini, environment: a usage error, and an error report ---------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kata-timeout=inf"], "--kata-timeout: 'inf' is not valid: must be finite: *"),
        (["--kata-timeout=-inf"], "--kata-timeout: '-inf' is not valid: must be more than 0"),
        (["--kata-timeout=nan"], "--kata-timeout: 'nan' is not valid: must be a number of *"),
        (["--kata-timeout=0"], "--kata-timeout: '0' is not valid: must be more than 0"),
        (["--kata-stress-budget=-1"], "--kata-stress-budget: '-1' is not valid: must be more*"),
        (["--kata-stress-budget=inf"], "--kata-stress-budget: 'inf' is not valid: must be fin*"),
        (["--kata-preemptions=1.5"], "--kata-preemptions: '1.5' is not valid: must be a whole*"),
        (["--kata-max-processes=0"], "--kata-max-processes: '0' is not valid: must be more*"),
        (["--kata-max-memory=inf"], "--kata-max-memory: 'inf' is not valid: must be a size*"),
        (["--kata-max-output=0.1b"], "--kata-max-output: '0.1b' is not valid: must be at least*"),
        (["--kata-seed=-3"], "--kata-seed: '-3' is not valid: must be a whole number from 0*"),
        (["-o", "kata_timeout=inf"], "-o kata_timeout: 'inf' is not valid: must be finite*"),
        (["--kata-report-format=xml"], "--kata-report-format=xml: there is no such format*"),
    ],
)
def test_a_bad_option_is_a_usage_error_that_still_writes_an_error_report(pytester, args, message):
    _kata(pytester, toml=GOOD_TOML)
    result, report = _run(pytester, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert "Traceback" not in result.stderr.str()
    assert report["status"] == "error" and report["score"] == 0 and report["tests"] == []
    assert report["message"] == result.stderr.str().split("ERROR: ", 1)[1].splitlines()[0]


def test_good_options_run(pytester):
    _kata(pytester, toml=GOOD_TOML)
    result, report = _run(pytester, "--kata-timeout=5", "--kata-stress-budget=0.5")
    assert result.ret == pytest.ExitCode.OK and report["status"] == "pass"


def test_a_bad_ini_value_names_the_file_and_the_classroom_report_says_why(pytester):
    _kata(pytester, toml=GOOD_TOML)
    pytester.makeini("[pytest]\nkata_timeout = inf\n")
    result, report = _run(pytester, "--kata-report-format=classroom")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: tox.ini: kata_timeout: 'inf' is not valid: must be fin*"])
    assert (report["status"], report["max_score"], report["tests"]) == ("error", 0, [])
    assert report["message"].startswith("tox.ini: kata_timeout: 'inf'")
    pytester.makeini("[pytest]\nkata_timeout = 5\n")
    result, report = _run(pytester, "--kata-report-format=classroom")
    assert result.ret == pytest.ExitCode.OK and report["status"] == "pass"


def test_a_bad_environment_value_is_refused_and_reported(pytester, monkeypatch):
    _kata(pytester, toml=GOOD_TOML)
    monkeypatch.setenv("PYTEST_KATA_TIMEOUT", "inf")
    result, report = _run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: $PYTEST_KATA_TIMEOUT: 'inf' is not valid: must be fin*"])
    assert report["status"] == "error"


# -- markers: the test that carries one fails, and names it ----------------------------------


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        (
            "kata_timeout(float('inf'))",
            "BROKEN: katas/demo/test_demo.py::test_add_adds: @pytest.mark.kata_timeout(inf) is "
            "not a number of seconds above 0 (a limit of inf never ends*; set it to e.g. "
            "@pytest.mark.kata_timeout(10)",
        ),
        ("kata_timeout(-1)", "*::test_add_adds: @pytest.mark.kata_timeout(-1) is not a number*"),
        ("kata_timeout(0)", "*::test_add_adds: @pytest.mark.kata_timeout(0) is not a number*"),
        ("kata_timeout('10')", "*@pytest.mark.kata_timeout('10') is not a number*drop the quo*"),
        ("kata_timeout(True)", "*@pytest.mark.kata_timeout(True) is not a number*yes/no*"),
        ("kata_timeout()", "*@pytest.mark.kata_timeout has no value; give it one*"),
        ("kata_stress_budget(float('nan'))", "*@pytest.mark.kata_stress_budget(nan) is not a*"),
        ("kata_explore('bfs')", "*@pytest.mark.kata_explore('bfs') is not valid: must be one*"),
        ("kata_preemptions(1.5)", "*@pytest.mark.kata_preemptions(1.5) is not a whole number*"),
        ("kata_task(9)", "*@pytest.mark.kata_task(9): the demo kata has no task 9; its tasks*"),
        ("kata_task('1')", "*@pytest.mark.kata_task('1') is not a task number above 0*"),
        ("task(taskno=0)", "*@pytest.mark.task(taskno=0) is not a task number above 0*"),
    ],
)
def test_a_bad_marker_value_fails_its_test_and_names_it(pytester, marker, message):
    tests = f"import pytest\n@pytest.mark.{marker}\n" + textwrap.dedent(TESTS).lstrip()
    _kata(pytester, tests=tests, toml=GOOD_TOML)
    _kata(pytester, name="other", toml=GOOD_TOML)
    result, report = _run(pytester)
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines([message])
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert report["status"] == "fail" and report["katas"]["demo"]["status"] == "error"
    failed = next(t for t in report["tests"] if t["kata"] == "demo" and t["status"] == "error")
    assert failed["test"] == "test_add_adds" and failed["failure_class"] == "broken"
    assert report["katas"]["demo"]["score"] == 0
    assert all(t["score"] == 0 for t in report["tests"] if t["kata"] == "demo")
    assert report["katas"]["other"]["score"] == 4


@pytest.mark.parametrize(
    "marker", ["kata_timeout(4)", "kata_timeout(2.5)", "kata_stress_budget(1)", "kata_task(1)"]
)
def test_a_good_marker_value_is_used(pytester, marker):
    tests = f"import pytest\n@pytest.mark.{marker}\n" + textwrap.dedent(TESTS).lstrip()
    _kata(pytester, tests=tests, toml=GOOD_TOML)
    result, report = _run(pytester)
    result.assert_outcomes(passed=2)
    assert (report["status"], report["score"]) == ("pass", 4)


# -- the checks themselves, without a run ----------------------------------------------------


@pytest.mark.parametrize("text", ["inf", "-inf", "nan", "0", "-1", "soon", "1e999"])
def test_every_amount_setting_refuses_text_that_is_no_finite_number_above_0(text):
    amounts = [s for s in settings.SETTINGS.values() if s.name not in ("kata_seed",)]
    for setting in amounts:
        if getattr(setting.parse, "whole", None) is None and setting.parse is not (
            settings.parse_size
        ):
            continue  # not an amount
        with pytest.raises(ValueError):
            setting.parse(text)


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 0, -1, True, "10", None, [1]])
def test_a_typed_amount_must_be_a_finite_number_above_0(value):
    assert catalog.bad_amount(value) is not None


@pytest.mark.parametrize("value", [1, 0.5, 10**6])
def test_a_finite_number_above_0_is_an_amount(value):
    assert catalog.bad_amount(value) is None
    assert settings.check_marker("kata_timeout", pytest.mark.kata_timeout(value).mark) is None


def test_a_report_path_that_cannot_be_written_is_a_usage_error_before_any_test(pytester):
    _kata(pytester, toml=GOOD_TOML)
    (pytester.path / "afile").write_text("")
    result = pytester.runpytest_subprocess("katas", "--kata-report=afile/report.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --kata-report=afile/report.json: the report cannot be*"])
    assert "passed" not in result.stdout.str()


# -- the settings object: resolved once, typed, with a per-test overlay -----------------------


class _Item:
    """What the overlay reads of a test: its markers."""

    def __init__(self, **marks):
        self.marks = {name: getattr(pytest.mark, name)(value).mark for name, value in marks.items()}

    def get_closest_marker(self, name):
        return self.marks.get(name)


def test_every_setting_has_one_typed_field_and_loads_to_its_type(pytester):
    import dataclasses
    import typing

    fields = {f.name for f in dataclasses.fields(settings.Settings)} - {"given"}
    assert fields == {name.removeprefix("kata_") for name in settings.SETTINGS}
    run = settings.load(pytester.parseconfig())
    hints = typing.get_type_hints(settings.Settings)
    for name in fields:
        value, expected = getattr(run, name), hints[name]
        allowed = typing.get_args(expected) or (expected,)
        assert isinstance(value, allowed), (name, value, expected)
    assert run.given == frozenset()


def test_settings_are_resolved_once_per_run(pytester, monkeypatch):
    config = pytester.parseconfig("--kata-timeout=3")
    run = settings.load(config)
    monkeypatch.setenv("PYTEST_KATA_STRESS_BUDGET", "7")
    assert settings.of(config) is run
    assert (run.timeout, run.stress_budget, run.given) == (3.0, 2.0, frozenset({"kata_timeout"}))


@pytest.mark.parametrize(
    ("args", "env", "ini", "marker", "kata", "expected"),
    [
        ((), None, None, None, None, 10.0),  # the default
        ((), None, "5", None, None, 5.0),  # the ini file
        ((), None, "5", None, 2, 2.0),  # the kata's kata.toml beats the ini file
        ((), "4", "5", None, 2, 4.0),  # the environment beats the kata
        (("--kata-timeout=3",), "4", "5", None, 2, 3.0),  # the option beats the environment
        (("--kata-timeout=3",), "4", "5", 30, 2, 30.0),  # the test's marker beats all
    ],
)
def test_a_tests_deadline_follows_the_documented_precedence(
    pytester, monkeypatch, args, env, ini, marker, kata, expected
):
    if ini is not None:
        pytester.makeini(f"[pytest]\nkata_timeout = {ini}\n")
    if env is not None:
        monkeypatch.setenv("PYTEST_KATA_TIMEOUT", env)
    run = settings.load(pytester.parseconfig(*args))
    item = _Item(kata_timeout=marker) if marker is not None else _Item()
    assert run.timeout_for(item, kata) == expected


def test_a_katas_explore_marker_is_a_default_that_the_command_line_overrides(pytester):
    item = _Item(kata_explore="pct")
    assert settings.load(pytester.parseconfig()).explore_for(item) == "pct"
    assert settings.load(pytester.parseconfig()).explore_for(_Item()) == "dfs"
    chosen = settings.load(pytester.parseconfig("--kata-explore=random"))
    assert chosen.explore_for(item) == "random"


def test_a_katas_preemptions_marker_is_a_default_that_the_command_line_overrides(
    pytester, monkeypatch
):
    item = _Item(kata_preemptions=1)
    assert settings.load(pytester.parseconfig()).preemptions_for(item) == 1
    assert settings.load(pytester.parseconfig()).preemptions_for(_Item()) == 2
    assert settings.load(pytester.parseconfig("--kata-preemptions=3")).preemptions_for(item) == 3
    monkeypatch.setenv("PYTEST_KATA_PREEMPTIONS", "4")
    assert settings.load(pytester.parseconfig()).preemptions_for(item) == 4


def test_a_stress_budget_marker_beats_the_option(pytester):
    run = settings.load(pytester.parseconfig("--kata-stress-budget=1"))
    assert run.stress_budget_for(_Item(kata_stress_budget=0.5)) == 0.5
    assert run.stress_budget_for(_Item()) == 1.0
