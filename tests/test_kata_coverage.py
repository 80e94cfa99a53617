"""--kata-coverage: the lines of the learner's file no test was seen to run, measured in
every process the learner's code runs in."""

from __future__ import annotations

import shutil
import sys
import textwrap
import warnings

import pytest

from conftest import write_kata
from pytest_katas import kata_coverage
from pytest_katas.kata_coverage import MissedLines, line_ranges, summary

NEW_ENOUGH = pytest.mark.skipif(sys.version_info < (3, 12), reason="needs Python 3.12+")

# One function the test calls in a child process only, one it calls here, one branch no test
# takes, and a main block (which is never counted).
IMPL = textwrap.dedent(
    """\
    import multiprocessing


    def _square_into(queue, n):
        queue.put(n * n)


    def square_in_a_child(n):
        queue = multiprocessing.Queue()
        child = multiprocessing.Process(target=_square_into, args=(queue, n))
        child.start()
        result = queue.get()
        child.join()
        return result


    def clamp(n):
        if n > 100:
            return 100
        return n


    if __name__ == "__main__":
        print(clamp(5))
    """
)
TESTS = textwrap.dedent(
    """\
    def test_square_in_a_child(kata):
        assert kata.square_in_a_child(7) == 49


    def test_clamp_leaves_small_numbers(kata):
        assert kata.clamp(5) == 5
    """
)


def _lines_of(text: str, *needles: str) -> list[int]:
    lines = text.splitlines()
    return [next(i for i, line in enumerate(lines, 1) if needle in line) for needle in needles]


def _run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, *args: str):
    # Not measured by an outer coverage run (tox's): the option refuses to run inside one.
    # A data file named in the environment stays (tox names one): ours must win over it.
    for name in ("COVERAGE_PROCESS_CONFIG", "COVERAGE_PROCESS_START"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COVERAGE_FILE", str(pytester.path / "elsewhere" / ".coverage"))
    return pytester.runpytest_subprocess("katas/demo", "-p", "no:cacheprovider", *args)


# -- what it says ---------------------------------------------------------------------------


def test_line_ranges_joins_runs_of_lines():
    assert line_ranges([9, 3, 4, 5, 11, 12]) == "3-5, 9, 11-12"
    assert line_ranges([7]) == "7"
    assert line_ranges([]) == ""


def test_the_summary_shows_each_missed_line_with_its_text(tmp_path):
    path = tmp_path / "demo.py"
    path.write_text("def f(n):\n    if n:\n        return 1\n    return 0\n", encoding="utf-8")
    lines = summary([MissedLines("katas/demo/demo.py", path, 4, [3])])
    assert lines[0] == "katas/demo/demo.py: 1 of 4 lines were never seen to run: 3"
    assert lines[1] == "  3 |         return 1"
    assert "terminate()" in lines[-1]  # what cannot be seen is said, every time


def test_the_summary_names_the_rest_by_number_past_twelve_lines(tmp_path):
    path = tmp_path / "demo.py"
    path.write_text("".join(f"x{n} = {n}\n" for n in range(1, 21)), encoding="utf-8")
    lines = summary([MissedLines("demo.py", path, 20, list(range(1, 16)))])
    assert lines[1:13] == [f"  {n:>2} | x{n} = {n}" for n in range(1, 13)]
    assert lines[13] == "  ... and 3 more: 13-15"


def test_a_fully_run_file_says_so_and_nothing_more(tmp_path):
    path = tmp_path / "demo.py"
    path.write_text("x = 1\n", encoding="utf-8")
    assert summary([MissedLines("demo.py", path, 1, [])]) == ["demo.py: every line ran (1 of 1)"]


# -- when it cannot measure -----------------------------------------------------------------


def test_an_old_python_is_refused_with_the_reason():
    with pytest.raises(
        pytest.UsageError, match=r"needs Python 3\.12 or later, and this is 3\.11\.7"
    ):
        kata_coverage.check(python=(3, 11, 7))


def test_a_missing_coverage_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "coverage", None)  # import coverage raises ImportError
    with pytest.raises(pytest.UsageError, match=r"pip install coverage"):
        kata_coverage.check(python=(3, 12, 1))


def test_it_will_not_run_inside_another_measurement(monkeypatch):
    monkeypatch.setenv("COVERAGE_PROCESS_CONFIG", "[run]\n")
    with pytest.raises(pytest.UsageError, match=r"inside another coverage measurement"):
        kata_coverage.check(python=(3, 12, 1))


@NEW_ENOUGH
def test_a_run_with_no_kata_says_what_to_give_it(pytester, monkeypatch):
    pytester.makepyfile(test_plain="def test_one():\n    pass\n")
    for name in ("COVERAGE_PROCESS_CONFIG", "COVERAGE_PROCESS_START"):
        monkeypatch.delenv(name, raising=False)
    result = pytester.runpytest_subprocess("test_plain.py", "--kata-coverage")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--kata-coverage: this run points into no kata*pytest katas/pipe*"]
    )


# -- measuring, end to end ------------------------------------------------------------------


@NEW_ENOUGH
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_it_names_the_branch_no_test_takes_and_counts_lines_run_in_children(
    pytester, monkeypatch, method
):
    """The mutant: ``clamp``'s ``return 100``, which no test reaches. The correct variant:
    ``_square_into``, which runs only in a child process under every start method, and the
    main block, which no test should run; neither is named."""
    write_kata(pytester, IMPL, TESTS, timeout=15)
    result = _run(pytester, monkeypatch, "--kata-coverage", f"--kata-start-method={method}")
    result.assert_outcomes(passed=2)
    (missed,) = _lines_of(IMPL, "return 100")
    statements = 14  # every statement of IMPL, the main block left out
    result.stdout.fnmatch_lines(
        [
            "*= kata coverage: lines of your code no test was seen to run =*",
            f"katas/demo/demo.py: 1 of {statements} lines were never seen to run: {missed}",
            f"  {missed} |         return 100",
            "A line no test runs is a line you could get wrong unnoticed*",
        ]
    )


@NEW_ENOUGH
def test_a_file_every_test_runs_through_is_reported_whole_under_xdist(pytester, monkeypatch):
    tests = (
        TESTS + "\n\ndef test_clamp_caps_big_numbers(kata):\n    assert kata.clamp(500) == 100\n"
    )
    write_kata(pytester, IMPL, tests, timeout=15)
    result = _run(pytester, monkeypatch, "--kata-coverage", "-n", "2")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["katas/demo/demo.py: every line ran (14 of 14)"])
    assert "never seen to run" not in result.stdout.str()


@NEW_ENOUGH
def test_without_the_option_nothing_is_measured(pytester, monkeypatch):
    write_kata(pytester, IMPL, TESTS, timeout=15)
    result = _run(pytester, monkeypatch)
    result.assert_outcomes(passed=2)
    assert "kata coverage" not in result.stdout.str()


def test_a_half_written_measurement_is_skipped_and_the_rest_reported(tmp_path, monkeypatch):
    """A process killed while it saved leaves a data file that is not one: the others are
    combined, and the learner sees no warning about files they never made."""
    from coverage import CoverageData

    learner = tmp_path / "demo.py"
    learner.write_text("x = 1\nif x:\n    y = 2\nelse:\n    y = 3\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # the file is shown as the learner types it from here
    measure = kata_coverage.KataCoverage([learner])
    try:
        measure.cov = measure.configured()  # not started: tox may be measuring this process
        ran = CoverageData(basename=str(measure.folder / ".coverage"), suffix="child")
        ran.add_lines({str(learner): [1, 2, 3]})
        ran.write()
        (measure.folder / ".coverage.killed.1").write_bytes(b"SQLite format 3\0 half")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            measure._finish()
    finally:
        shutil.rmtree(measure.folder, ignore_errors=True)
    assert measure.problem is None
    [result] = measure.results
    assert (result.shown, result.statements, result.missing) == ("demo.py", 4, [5])
