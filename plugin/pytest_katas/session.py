"""The run as a whole, in the controller: grades from reports, the tamper check, the board,
and the report file, which is written whatever happens to the run."""

from __future__ import annotations

from pathlib import Path
from typing import final

import pytest

from pytest_katas import catalog, manifest
from pytest_katas.grading import Gradebook
from pytest_katas.report import write_report

__all__ = ["GradingSession", "kata_roots"]


def kata_roots(config: pytest.Config) -> set[Path]:
    """The repository roots (folders holding katas/) that this run's arguments point into."""
    roots = set()
    for arg in config.args:
        path = Path(config.invocation_params.dir, arg.split("::", 1)[0]).resolve()
        kata = catalog.find_kata(path)
        if kata is not None:
            roots.add(kata.root)
        elif path.is_dir() and any(path.glob(f"*/{catalog.KATA_MANIFEST}")):
            roots.add(path.parent)
    return roots


@final
class GradingSession:
    """Registered in the controller only; under xdist it sees every worker's reports."""

    def __init__(self, config: pytest.Config, report: str | None, fmt: str) -> None:
        self.config = config
        self.report = report
        self.fmt = fmt
        self.gradebook = Gradebook()
        self.unscheduled: list[str] = []  # passed under noise: the plugin could not schedule

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        for root in sorted(kata_roots(self.config)):
            if self.report is None and not (root / manifest.MANIFEST).is_file():
                continue  # learners without a manifest are not graded: nothing to protect
            self.gradebook.tampered.extend(manifest.changed_files(root))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        outcome = getattr(report, "kata_outcome", None)
        kind = None
        if report.failed:
            kind = self.config.hook.pytest_kata_classify(report=report, outcome=outcome)
        if report.when == "call" and report.passed and outcome:
            for note in outcome.get("explored", ()):
                if "could not schedule" in note:
                    self.unscheduled.append(f"{report.nodeid}: {note}")
        grade = self.gradebook.record(report, kind)
        if grade is not None and report.when == "teardown":
            self.config.hook.pytest_kata_graded(config=self.config, grade=grade)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            first = str(report.longrepr).strip().splitlines()[-1:] or ["?"]
            self.gradebook.problems.append(f"{report.nodeid} could not be collected: {first[0]}")

    def pytest_keyboard_interrupt(self) -> None:
        self.gradebook.problems.append("the run was interrupted before it finished")

    def pytest_internalerror(self) -> None:
        self.gradebook.problems.append("pytest hit an internal error; see its output")

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        self.config.hook.pytest_kata_board(
            config=self.config, gradebook=self.gradebook, terminal=terminalreporter
        )
        for note in self.unscheduled:  # a pass that is less sure than the others
            terminalreporter.write_line(f"NOTE: {note}", yellow=True)
        if self.report is not None:
            terminalreporter.write_line(f"kata report ({self.fmt}): {self.report}")

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.report is None:
            return
        if exitstatus in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR):
            note = "the run did not finish (interrupted or internal error)"
            if note not in self.gradebook.problems:
                self.gradebook.problems.append(note)
        write_report(self.config, self.gradebook, self.report, self.fmt)
