"""The plugin's basics: the target switch, clear messages for bad input, settings precedence."""

from __future__ import annotations

import re
import textwrap

import pytest

from conftest import write_kata

PASSING = """
def answer():
    return 42
"""
TEST = """
def test_answer_is_42(kata):
    assert kata.answer() == 42
"""


def _kata(pytester, impl=PASSING, tests=TEST, **kwargs):
    return write_kata(pytester, textwrap.dedent(impl), textwrap.dedent(tests), **kwargs)


def test_the_target_switch_runs_the_same_tests_on_a_solution(pytester):
    _kata(pytester, impl="def answer():\n    raise NotImplementedError\n")
    solution = pytester.path / "solutions" / "demo"
    solution.mkdir(parents=True)
    (solution / "demo.py").write_text(PASSING)
    pytester.runpytest_subprocess("katas/demo").assert_outcomes(failed=1)
    pytester.runpytest_subprocess("katas/demo", "--kata-target=solutions").assert_outcomes(passed=1)


def test_a_missing_solution_file_says_what_file_is_expected(pytester):
    _kata(pytester)
    (pytester.path / "solutions").mkdir()
    result = pytester.runpytest_subprocess("katas/demo", "--kata-target=solutions")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*--kata-target=solutions: there is no solutions/demo/demo.py to test the demo kata*"]
    )


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["--kata-start-method=threads"],
            "--kata-start-method: 'threads' is not valid: must be one of *",
        ),
        (["--kata-timeout=-3"], "--kata-timeout: '-3' is not valid: must be more than 0"),
        (
            ["--kata-max-memory=lots"],
            "--kata-max-memory: 'lots' is not valid: must be a size such as 512MiB*",
        ),
        (["--kata-target=nowhere"], "--kata-target=nowhere: expected 'katas' *"),
    ],
)
def test_a_bad_option_value_is_refused_with_where_it_came_from(pytester, args, message):
    _kata(pytester)
    result = pytester.runpytest_subprocess("katas/demo", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert "Traceback" not in result.stderr.str()


def test_a_bad_environment_value_names_the_variable(pytester, monkeypatch):
    _kata(pytester)
    monkeypatch.setenv("PYTEST_KATA_TIMEOUT", "soon")
    result = pytester.runpytest_subprocess("katas/demo")
    result.stderr.fnmatch_lines(["ERROR: $PYTEST_KATA_TIMEOUT: 'soon' is not valid*"])


def test_a_missing_kata_lists_the_katas_there_are(pytester):
    _kata(pytester)
    result = pytester.runpytest_subprocess("katas/nosuch")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: there is no kata 'nosuch' in katas/. The katas are: demo.*"]
    )


def test_an_import_error_in_learner_code_names_the_file_and_line(pytester):
    _kata(pytester, impl="import os\nimport no_such_module_here\n")
    result = pytester.runpytest_subprocess("katas/demo")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "BROKEN: katas/demo/demo.py, line 2: importing it raised ModuleNotFoundError: "
            "No module named 'no_such_module_here'"
        ]
    )
    assert "_pytest" not in result.stdout.str()


def test_a_missing_function_says_what_the_kata_expects(pytester):
    _kata(pytester, impl="def other():\n    return 1\n")
    result = pytester.runpytest_subprocess("katas/demo")
    result.stdout.fnmatch_lines(["*katas/demo/demo.py has no 'answer': the demo kata expects*"])


def test_the_marker_beats_the_option_which_beats_the_kata_toml(pytester):
    # A 5 s nap: the marker's 30 s allow it; the option's 1 s do not, even stretched three
    # times on a busy machine.
    _kata(
        pytester,
        impl="import time\ndef answer(wait):\n    time.sleep(wait)\n    return 42\n",
        tests="""
        import pytest
        @pytest.mark.kata_timeout(30)
        def test_marker_allows_five_seconds(kata):
            assert kata.answer(5) == 42
        def test_option_allows_five_seconds(kata):
            assert kata.answer(5) == 42
        """,
        timeout=2,
    )
    result = pytester.runpytest_subprocess("katas/demo", "--kata-timeout=1")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_option_allows_five_seconds*HANG*"])


def test_the_header_names_the_target_start_method_and_seed(pytester):
    _kata(pytester)
    result = pytester.runpytest_subprocess(
        "katas/demo", "--kata-seed=1234", "--kata-start-method=spawn"
    )
    result.stdout.fnmatch_lines(
        ["katas: target katas, start method spawn, seed 1234 (--kata-seed=1234)"]
    )


def test_under_xdist_every_replay_carries_the_seed_the_header_names(pytester):
    wrong = "def test_wrong_{n}(kata):\n    assert kata.answer() == {n}\n"
    tests = "".join(wrong.format(n=n) for n in range(4))
    _kata(pytester, tests=tests)
    result = pytester.runpytest_subprocess("katas/demo", "-n", "2")
    result.assert_outcomes(failed=4)
    output = result.stdout.str()
    header = re.search(r"^katas: .*, seed (\d+) \(--kata-seed=\1\)$", output, re.MULTILINE)
    assert header is not None, output
    replays = re.findall(r"^Replay: .*--kata-seed=(\d+)", output, re.MULTILINE)
    assert len(replays) == 4, output
    assert set(replays) == {header.group(1)}, "each xdist worker drew a seed of its own"


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_a_correct_queue_in_the_parent_is_not_a_leak(pytester, method):
    _kata(
        pytester,
        impl="""
        import multiprocessing
        def _double(inbox, outbox):
            for n in iter(inbox.get, None):
                outbox.put(n * 2)
        def answer():
            inbox, outbox = multiprocessing.Queue(), multiprocessing.Queue()
            worker = multiprocessing.Process(target=_double, args=(inbox, outbox))
            worker.start()
            for n in (1, 20):
                inbox.put(n)
            inbox.put(None)
            total = outbox.get() + outbox.get()
            worker.join()
            return total
        """,
        tests="""
        def test_answer_is_42(kata):
            assert kata.answer() == 42
        """,
    )
    pytester.runpytest_subprocess("katas/demo", f"--kata-start-method={method}").assert_outcomes(
        passed=1
    )
