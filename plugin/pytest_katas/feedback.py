"""Fast feedback, each message once: after a test hangs, its task's other tests are not run
(after the learner's file fails to import, its kata's), a failure several tests share is
shown in full once, a kata failure's headline is its crash line, and a run with a hang
ends with the faster loop.

Where each part runs: the stops where tests run (each xdist worker knows only its own
tests, so under xdist a task's tests on another worker still run; none is ever skipped
wrongly); the rest in the controller, which sees every report.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Generator, Iterable
from pathlib import Path
from typing import Final, final

import pytest
from _pytest._code.code import ReprFileLocation, TerminalRepr
from _pytest._io import TerminalWriter

from pytest_katas import catalog, grading, settings
from pytest_katas.commands import pytest_command
from pytest_katas.messages import _, ngettext
from pytest_katas.verdict import Kind

__all__ = ["Feedback", "KataRepr", "register", "shorten_repeats"]

_STOPPERS: Final = {Kind.HANG.name.lower(), Kind.BROKEN.name.lower()}
_FAST_TIMEOUT: Final = 3


@final
@dataclasses.dataclass(frozen=True)
class _Stop:
    """Why the rest of a task (or a kata) is not run: the test that stopped it."""

    reason: str
    path: str  # the stopping test's file and line: pytest folds skips that share them
    lineno: int


@final
class KataRepr(TerminalRepr):
    """A kata failure as pytest shows it: its text once, and its headline as the crash
    line (``--tb=line``, the short summary, JUnit's message attribute)."""

    def __init__(self, text: str, path: str, lineno: int, quiet: bool = False) -> None:
        self.text = text
        self.headline = text.partition("\n")[0]
        self.reprcrash = ReprFileLocation(path, lineno, self.headline)
        self.quiet = quiet  # --tb=line: pytest prints the crash line, and only that

    def toterminal(self, tw: TerminalWriter) -> None:
        if not self.quiet:
            for line in self.text.splitlines():
                tw.line(line)


_NOT_RUN_KEY = pytest.StashKey[_Stop]()
_ALL_TASKS: Final = -1  # a stop for the whole kata (its file does not import)


def _where(item: pytest.Item) -> tuple[str, int | None] | None:
    """The kata folder and task of ``item``, or None for a test outside any kata."""
    kata = catalog.find_kata(Path(item.path))
    if kata is None:
        return None
    task = grading.test_meta(item, kata)["task"]
    return str(kata.directory), task if type(task) is int else None


def _kind(report: pytest.TestReport) -> str | None:
    outcome = getattr(report, "kata_outcome", None)
    kind = outcome.get("kind") if isinstance(outcome, dict) else None
    return str(kind) if kind else None


def _test_name(report: pytest.TestReport) -> str:
    return report.nodeid.split("::")[-1]


@final
class Feedback:
    """Registered in every process: the controller and each xdist worker."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.keep_going = settings.of(config).keep_going
        self.controller = not hasattr(config, "workerinput")
        self.stops: dict[tuple[str, int | None], _Stop] = {}
        self.hung: list[str] = []  # controller: the folders of the katas where a test hung

    # -- where tests run: stop a task at its first HANG, a kata at its first BROKEN --------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if self.keep_going or not self.stops:
            return
        where = _where(item)
        if where is None:
            return
        folder, task = where
        stop = self.stops.get((folder, _ALL_TASKS)) or (
            self.stops.get((folder, task)) if task is not None else None
        )
        if stop is not None:
            item.stash[_NOT_RUN_KEY] = stop
            pytest.skip(stop.reason)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        stop = item.stash.get(_NOT_RUN_KEY, None)
        if stop is not None and report.when == "setup" and report.skipped:
            # At the stopping test's place, so that pytest -rs folds them into one line.
            report.longrepr = (stop.path, stop.lineno, f"Skipped: {stop.reason}")
        return report

    def _record_stop(self, report: pytest.TestReport) -> None:
        kind = _kind(report)
        meta = getattr(report, "kata_meta", None)
        if self.keep_going or kind not in _STOPPERS or not report.failed or not meta:
            return
        name = _test_name(report)
        path = str(self.config.rootpath / report.location[0])
        lineno = (report.location[1] or 0) + 1
        if kind == Kind.BROKEN.name.lower():
            key = (str(meta["kata_dir"]), _ALL_TASKS)
            reason = _(
                "not run: {name} found that the kata's file does not import (BROKEN); fix "
                "that first (--kata-keep-going runs them all the same)"
            ).format(name=name)
        elif meta.get("task") is not None:
            key = (str(meta["kata_dir"]), meta["task"])
            reason = _(
                "not run: {name} of the same task hung (HANG); fix that first "
                "(--kata-keep-going runs them all the same)"
            ).format(name=name)
        else:
            return
        self.stops.setdefault(key, _Stop(reason, path, lineno))

    # -- the controller: the crash line, the count of hangs ----------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._record_stop(report)
        if not self.controller or not report.failed:
            return
        text = None
        if _kind(report) is not None and isinstance(report.longrepr, str):
            text = report.longrepr
        elif (problem := getattr(report, "kata_problem", None)) is not None:
            text = f"{Kind.BROKEN.name}: {problem}"
        if text is not None:
            report.longrepr = KataRepr(text, *_place(report))
        if _kind(report) == Kind.HANG.name.lower():
            self.hung.append(os.path.dirname(report.nodeid.split("::", 1)[0]))

    # -- the controller: each failure in full once ---------------------------------------------

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_terminal_summary(
        self, terminalreporter: pytest.TerminalReporter
    ) -> Generator[None, None, None]:
        """Before pytest prints the failures (the reports kept their full text for the
        report file and JUnit: only what is printed here is shortened)."""
        if self.controller:
            stats = terminalreporter.stats
            failures = [*stats.get("error", ()), *stats.get("failed", ())]
            if self.config.option.tbstyle == "line":
                for report in failures:
                    if isinstance(report.longrepr, KataRepr):
                        text, place = report.longrepr.text, _place(report)
                        report.longrepr = KataRepr(text, *place, quiet=True)
            else:
                shorten_repeats(failures)
        return (yield)

    def pointer(self) -> str | None:
        """The faster loop, for a run that had a hang, or None."""
        folders = list(dict.fromkeys(self.hung))
        if not folders:
            return None
        args = []
        for folder in folders:
            path = self.config.rootpath / folder
            shown = os.path.relpath(path, self.config.invocation_params.dir)
            args.append(shown if not shown.startswith("..") else str(path))
        if self.config.option.maxfail != 1:
            args.append("-x")
        if self.config.getoption("kata_timeout") is None:
            args.append(f"--kata-timeout={_FAST_TIMEOUT}")
        if len(args) == len(folders):
            return None  # the run was that fast loop already
        return _(
            "A hang can take the whole deadline; while you fix it, this stops sooner: {command}"
        ).format(command=pytest_command(*args))


@final
class _Pointer:
    """Registered in the controller: the line after the board, when a test hung."""

    def __init__(self, feedback: Feedback) -> None:
        self.feedback = feedback

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        line = self.feedback.pointer()
        if line is not None:
            terminalreporter.write_line(line, yellow=True)


def register(config: pytest.Config) -> None:
    """Register the feedback plugin (and, in the controller, the line after the board)."""
    feedback = Feedback(config)
    config.pluginmanager.register(feedback, "katas-feedback")
    if feedback.controller:
        config.pluginmanager.register(_Pointer(feedback), "katas-feedback-pointer")


def _repeat_line(first: str, headline: str) -> str:
    kind = headline.partition(": ")[0]
    return _("{kind}: same failure as {first}, shown in full above").format(kind=kind, first=first)


def _place(report: pytest.TestReport) -> tuple[str, int]:
    return report.location[0], (report.location[1] or 0) + 1


def shorten_repeats(reports: Iterable[pytest.TestReport]) -> None:
    """A kata failure several tests share (the same class and headline) keeps its full
    text in the first test only; each later one gets one line that points back to it, and
    the first says how many more there are."""
    groups: dict[str, list[pytest.TestReport]] = {}
    for report in reports:
        if isinstance(report.longrepr, KataRepr):
            groups.setdefault(report.longrepr.headline, []).append(report)
    for headline, same in groups.items():
        if len(same) < 2:
            continue
        first, later = same[0], same[1:]
        name = _test_name(first)
        for report in later:
            report.longrepr = KataRepr(_repeat_line(name, headline), *_place(report))
        text = first.longrepr.text if isinstance(first.longrepr, KataRepr) else headline
        gap = "\n\n" if "\n" in text.strip() else "\n"
        note = ngettext(
            "Same failure in {count} more test, shown below in one line each.",
            "Same failure in {count} more tests, shown below in one line each.",
            len(later),
        ).format(count=len(later))
        first.longrepr = KataRepr(f"{text}{gap}{note}", *_place(first))
