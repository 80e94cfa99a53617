"""``--kata-coverage``: which lines of the learner's file no test of the run ran.

A line no test runs is a line a learner can get wrong unnoticed, so after the run we name
them, with their text. coverage.py measures the learner's files (only those) in every
process the run starts: the pytest process and xdist workers, each test's forked sandbox,
and the learner's own children under fork, spawn and forkserver. That is coverage's own
``[run] patch = subprocess, fork, _exit``, set in a configuration file of the run's own: a
new Python process starts measuring from coverage's ``.pth`` file, a forked one writes a
data file of its own, and ``os._exit`` (how a sandbox and a forked child end) saves first.
The controller combines the data files once the run is over.

Only on Python 3.12 and later: there the schedule noise and the trace use
``sys.monitoring``, and coverage has ``sys.settrace`` to itself. On 3.10 and 3.11 the noise
takes ``sys.settrace`` in the learner's threads, so lines would be reported as never run
when they did run; we refuse rather than say something wrong.

What is not seen: a process ended by a signal (``terminate()``, a Pool's with-block that
terminates its workers, a kill at a test's deadline) saves no data, so the lines only it
ran are not counted, and the summary says "never seen to run", not "never ran". (coverage's
``sigterm`` option would save on SIGTERM, but with the chain of measurements a fork makes
it lost or half-wrote the data of a terminated Pool worker in 3 runs of 8 here.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Final, final

import pytest

from pytest_katas import catalog, settings
from pytest_katas.commands import shown
from pytest_katas.messages import _
from pytest_katas.session import kata_folders

if TYPE_CHECKING:
    from coverage import Coverage

__all__ = ["MissedLines", "check", "learner_files", "line_ranges", "register", "summary"]

_NEEDS: Final = (3, 12)  # the first Python where the noise leaves sys.settrace to coverage
_SHOWN: Final = 12  # lines of text shown per file; the rest are named by number
_MARKER: Final = "# measured by pytest-katas --kata-coverage"


def check(python: tuple[int, ...] = tuple(sys.version_info[:3])) -> None:
    """UsageError when the run cannot measure: an old Python, no coverage package, or a
    measurement already running in this process (``coverage run``, pytest-cov).

    ``python`` is this interpreter's version; tests pass another rather than patch
    ``sys.version_info``, which coverage's own imports read."""
    if python[:2] < _NEEDS:
        raise pytest.UsageError(
            _(
                "--kata-coverage needs Python 3.12 or later, and this is {version}: on older "
                "Pythons the schedule noise takes the trace hook coverage needs, so lines "
                "would be shown as never run when they did run. Run it with Python 3.12 or "
                "later, or leave the option out."
            ).format(version=".".join(map(str, python)))
        )
    try:
        import coverage
    except ImportError:
        raise pytest.UsageError(
            _(
                "--kata-coverage needs the coverage package, which is not installed here: "
                "run `pip install coverage` in this environment, or leave the option out."
            )
        ) from None
    if coverage.Coverage.current() is not None or os.environ.get("COVERAGE_PROCESS_CONFIG"):
        raise pytest.UsageError(
            _(
                "--kata-coverage cannot run inside another coverage measurement (coverage "
                "run, pytest --cov): use one or the other."
            )
        )


def learner_files(config: pytest.Config) -> list[Path]:
    """The learner's file of each kata the run's arguments point into (or --kata-target's
    file): what is measured. A kata that is broken, or has no such file, is left out (its
    tests say why)."""
    target = settings.of(config).target
    files: list[Path] = []
    for folder in sorted(kata_folders(config)[1]):
        try:
            path = catalog.resolve_target(catalog.load_kata(folder), target)
        except catalog.KataError:
            continue
        if path.is_file() and path not in files:
            files.append(path)
    return files


def line_ranges(lines: list[int]) -> str:
    """``[3, 4, 5, 9]`` as ``3-5, 9``."""
    parts = []
    for _step, run in itertools.groupby(enumerate(sorted(lines)), lambda pair: pair[1] - pair[0]):
        numbers = [line for _index, line in run]
        parts.append(f"{numbers[0]}-{numbers[-1]}" if len(numbers) > 1 else str(numbers[0]))
    return ", ".join(parts)


@final
@dataclasses.dataclass(frozen=True)
class MissedLines:
    """One learner file's result: its statements and the ones no test ran (in order)."""

    shown: str  # the path as the learner types it
    path: Path
    statements: int
    missing: list[int]


def summary(results: list[MissedLines]) -> list[str]:
    """The lines of the terminal section: per file, the count and each line not seen to
    run (up to ``_SHOWN`` with their text), then what cannot be seen."""
    out: list[str] = []
    for result in results:
        ran = result.statements - len(result.missing)
        if not result.missing:
            out.append(
                _("{file}: every line ran ({ran} of {total})").format(
                    file=result.shown, ran=ran, total=result.statements
                )
            )
            continue
        out.append(
            _("{file}: {missed} of {total} lines were never seen to run: {lines}").format(
                file=result.shown,
                missed=len(result.missing),
                total=result.statements,
                lines=line_ranges(result.missing),
            )
        )
        try:
            text = result.path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            text = []
        width = len(str(result.missing[-1]))
        for number in result.missing[:_SHOWN]:
            source = text[number - 1].rstrip() if number <= len(text) else ""
            out.append(f"  {number:>{width}} | {source}")
        if len(result.missing) > _SHOWN:
            rest = result.missing[_SHOWN:]
            out.append(
                "  "
                + _("... and {count} more: {lines}").format(
                    count=len(rest), lines=line_ranges(rest)
                )
            )
    if any(result.missing for result in results):
        out.append(
            _(
                "A line no test runs is a line you could get wrong unnoticed: is it needed? "
                "If it is, which test should reach it? (What a process ran is not seen if "
                "it was ended by terminate(), killed, or stopped at a test's deadline.)"
            )
        )
    return out


@final
class KataCoverage:
    """Registered in the controller when --kata-coverage is on: measures from configure to
    the end of the session, then prints the section."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files
        self.folder = Path(tempfile.mkdtemp(prefix="kata-coverage-"))
        self.cov: Coverage | None = None
        self.results: list[MissedLines] = []
        self.problem: str | None = None  # why the measurements could not be read
        self.environ = os.environ.get("COVERAGE_PROCESS_CONFIG")  # set by start(), for children

    def configured(self) -> Coverage:
        """A measurement of the learner's files (only those), from a config file of ours
        that coverage hands to every process it starts in."""
        from coverage import Coverage

        rcfile = self.folder / "coveragerc"
        include = "".join(f"\n    {path}" for path in self.files)
        rcfile.write_text(
            f"{_MARKER}\n[run]\ndata_file = {self.folder / '.coverage'}\nparallel = true\n"
            f"include ={include}\n"
            "patch = subprocess, fork, _exit\n"
            "disable_warnings = no-data-collected, module-not-measured, module-not-imported\n"
            "[report]\nexclude_also =\n    if __name__ == .__main__.:\n",
            encoding="utf-8",
        )
        # Given here, data_file beats $COVERAGE_FILE (tox sets one, so may a learner), and
        # the config every other process starts from carries it.
        return Coverage(config_file=str(rcfile), data_file=str(self.folder / ".coverage"))

    def start(self) -> None:
        self.cov = self.configured()
        self.cov.start()

    def _finish(self) -> None:
        cov, self.cov = self.cov, None
        if cov is None:
            return
        try:
            with warnings.catch_warnings():
                # A process killed while it saved leaves a file combine skips, with a
                # warning the learner cannot act on: what it ran is not seen, as said.
                warnings.simplefilter("ignore")
                cov.stop()
                cov.save()
                cov.combine(data_paths=[str(self.folder)], keep=False)
        except Exception as exc:  # noqa: BLE001 - the run's verdicts stand; say what failed
            self.problem = f"{type(exc).__name__}: {exc}"
            return
        for path in self.files:
            with contextlib.suppress(Exception):  # a file coverage cannot read: not shown
                _name, statements, _excluded, missing, _text = cov.analysis2(str(path))
                self.results.append(MissedLines(shown(path), path, len(statements), missing))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """After xdist's workers have ended (and saved their data)."""
        self._finish()

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.results and self.problem is None:
            return
        terminalreporter.section(_("kata coverage: lines of your code no test was seen to run"))
        if self.problem is not None:
            terminalreporter.write_line(
                _(
                    "The measurements could not be read ({problem}); the tests' verdicts stand."
                ).format(problem=self.problem)
            )
        for line in summary(self.results):
            terminalreporter.write_line(line)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        with contextlib.suppress(Exception):
            self._finish()
        if self.environ is None:
            os.environ.pop("COVERAGE_PROCESS_CONFIG", None)
        else:
            os.environ["COVERAGE_PROCESS_CONFIG"] = self.environ
        shutil.rmtree(self.folder, ignore_errors=True)


def register(config: pytest.Config) -> None:
    """In the controller, when --kata-coverage is on: check, then start measuring."""
    if not settings.of(config).coverage or hasattr(config, "workerinput"):
        return
    check()
    files = learner_files(config)
    if not files:
        raise pytest.UsageError(
            _(
                "--kata-coverage: this run points into no kata with a file to measure; "
                "give it a kata, e.g. pytest katas/pipe --kata-coverage"
            )
        )
    measure = KataCoverage(files)
    config.pluginmanager.register(measure, "katas-coverage")
    measure.start()
