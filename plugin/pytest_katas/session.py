"""The run as a whole: its settings and katas, checked before any test runs (in every
process), and in the controller the grades from reports, the tamper check, the board, and
the report file, which is written whatever happens to the run."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any, Final, final

import pytest

from pytest_katas import catalog, manifest, progress, settings
from pytest_katas.grading import Gradebook, TestGrade, nodeid_meta
from pytest_katas.report import write_error_report, write_report

__all__ = ["GradingSession", "RunChecks", "kata_folders", "kata_roots"]

NOT_FINISHED: Final = "the run did not finish"
_WORKER_KATAS: Final = "katas_catalog"  # the controller's katas, in an xdist worker's input
_PROBLEM = pytest.StashKey[str]()
_MARKER_SETTINGS: Final = (
    "kata_timeout",
    "kata_stress_budget",
    "kata_explore",
    "kata_preemptions",
)


def _kata_dir(path: Path) -> Path | None:
    """The nearest folder at or above ``path`` with a kata.toml (without reading it)."""
    for folder in (path, *path.parents) if path.is_dir() else path.parents:
        if (folder / catalog.KATA_MANIFEST).is_file():
            return folder
    return None


def kata_folders(config: pytest.Config) -> tuple[set[Path], set[Path]]:
    """What this run's arguments point into: the folders holding katas (like katas/), and
    the katas themselves (the folders with a kata.toml that the run will test)."""
    folders: set[Path] = set()
    katas: set[Path] = set()
    for arg in config.args:
        path = Path(config.invocation_params.dir, arg.split("::", 1)[0]).resolve()
        if not path.exists():
            continue
        kata = _kata_dir(path)
        if kata is not None:
            folders.add(kata.parent)
            katas.add(kata)
            continue
        for holder in (path, path / "katas"):  # katas/ itself, or the repository root
            found = {m.parent for m in holder.glob(f"*/{catalog.KATA_MANIFEST}")}
            if path.is_dir() and found:
                folders.add(holder)
                katas.update(found)
                break
    return folders, katas


def kata_roots(config: pytest.Config) -> set[Path]:
    """The repository roots (folders holding katas/) that this run's arguments point into."""
    return {folder.parent for folder in kata_folders(config)[0]}


def item_problem(item: pytest.Item) -> str | None:
    """Why ``item`` cannot be graded as written: its kata's kata.toml is broken, or one of
    its kata markers has a bad value. None for a test outside any kata."""
    kata = catalog.find_kata(Path(item.path))
    if kata is None:
        return None
    if kata.problem is not None:
        return kata.problem
    for name in _MARKER_SETTINGS:
        mark = item.get_closest_marker(name)
        if mark is not None and (problem := settings.check_marker(name, mark)) is not None:
            return f"{item.nodeid}: {problem}"
    for name, key in (("kata_task", None), ("task", "taskno")):
        mark = item.get_closest_marker(name)
        if mark is None:
            continue
        value = mark.kwargs.get(key) if key else (mark.args[0] if mark.args else None)
        if value is None:  # not a task marker grading reads (see grading.test_meta)
            continue
        written = f"@pytest.mark.{name}({f'{key}=' if key else ''}{value!r})"
        ids = ", ".join(str(t.id) for t in kata.tasks)
        if (why := catalog.bad_amount(value, whole=True)) is not None:
            subject = f"{item.nodeid}: {written}"
            example = f"{kata.tasks[0].id} (the {kata.name} kata's tasks are {ids})"
            return catalog.amount_problem(subject, "a task number", example, why)
        if all(task.id != value for task in kata.tasks):
            return (
                f"{item.nodeid}: {written}: the {kata.name} kata has no task {value}; "
                f"its tasks ({kata.manifest}) are {ids}"
            )
    return None


@final
class RunChecks:
    """Registered first, in every process (the controller and each xdist worker).

    It checks the run's settings before anything else (a bad one is a usage error, and the
    report file says so), reads every kata.toml the run points into at session start (the
    controller reads them; workers get the controller's copy), and fails at setup every test
    whose kata is broken or whose kata markers have bad values, with the message why.
    """

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.controller = not hasattr(config, "workerinput")
        self.started = False
        self.reported = False  # an error report for a usage error is written already

    def pytest_configure(self, config: pytest.Config) -> None:
        try:
            settings.check_run(config)
            if config.getoption("kata_hint") is not None:
                for arg in config.args:
                    kata = catalog.find_kata(Path(config.invocation_params.dir, arg).resolve())
                    if kata is not None and kata.problem is not None:
                        raise pytest.UsageError(kata.problem)
        except pytest.UsageError as exc:
            self._write_error(str(exc))
            raise

    def _write_error(self, message: str) -> None:
        path, fmt = settings.report_target(self.config)
        if self.controller and path is not None:
            with contextlib.suppress(OSError):  # pytest says what is wrong in any case
                write_error_report(path, fmt, message)
            self.reported = True

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.started = True
        workerinput: dict[str, Any] | None = getattr(self.config, "workerinput", None)
        if workerinput is not None and _WORKER_KATAS in workerinput:
            catalog.install(workerinput[_WORKER_KATAS])
            return
        try:
            catalog.load_all(kata_folders(self.config)[0])
        except OSError as exc:  # a folder that cannot be listed: its katas load when used
            sys.stderr.write(f"katas: could not read every kata.toml: {exc}\n")

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """xdist: a worker (also one that replaces a crashed worker) uses the katas the
        controller read at session start, never a kata.toml changed since."""
        node.workerinput[_WORKER_KATAS] = catalog.snapshot()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        problem = item_problem(item)
        if problem is not None:
            item.stash[_PROBLEM] = problem
            pytest.fail(f"BROKEN: {problem}", pytrace=False)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        report = yield
        problem = item.stash.get(_PROBLEM, None)
        if problem is not None:
            report.kata_problem = problem  # read by the controller's Gradebook
        return report

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """pytest stopped before the session started (a usage error, say): the report file,
        if one was asked for, says so, rather than keep what an earlier run wrote there."""
        if self.started or self.reported:
            return
        exc = sys.exc_info()[1]
        if isinstance(exc, pytest.UsageError):
            message = str(exc)
        elif exc is not None:
            message = f"pytest stopped before the run started: {type(exc).__name__}: {exc}"
        else:
            message = "pytest stopped before the run started; see its output"
        self._write_error(message)


@final
class GradingSession:
    """Registered in the controller only; under xdist it sees every worker's reports."""

    def __init__(self, config: pytest.Config, report: str | None, fmt: str) -> None:
        self.config = config
        option = config.option
        # --collect-only, --setup-only, --setup-plan: no test runs, so nothing is graded and
        # the report a real run wrote is left alone.
        self.runs_tests = not any(
            getattr(option, o, False) for o in ("collectonly", "setuponly", "setupplan")
        )
        self.requested = report
        self.report = report if self.runs_tests else None
        self.fmt = fmt
        self.gradebook = Gradebook()
        self.unscheduled: list[str] = []  # passed under noise: the plugin could not schedule
        self.progress: progress.RunRecorder | None = None  # .katas/progress.json, see there

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        folders, scope = kata_folders(self.config)
        katas = [catalog.kata_at(folder) for folder in sorted(scope)]
        self.progress = progress.RunRecorder.begin(self.config, katas)  # the learner's own
        if self.report is not None:  # replaced at the end; says "error" if the end never comes
            unfinished = Gradebook()
            for kata in katas:
                unfinished.expect(kata)
                unfinished.block(kata, NOT_FINISHED)
            unfinished.problems.append(NOT_FINISHED)
            try:
                write_report(self.config, unfinished, self.report, self.fmt)
            except OSError as exc:  # better now, before the run, than at its end
                raise pytest.UsageError(
                    f"--kata-report={self.report}: the report cannot be written there "
                    f"({exc.strerror or exc}); give a path in a folder you can write to"
                ) from None
        for root in sorted({folder.parent for folder in folders}):
            if self.report is None and not (root / manifest.MANIFEST).is_file():
                continue  # learners without a manifest are not graded: nothing to protect
            for change in manifest.changed_files(root):
                self.gradebook.tamper(root, change)
        for kata in katas:  # a broken or tampered kata is in the report, at 0, run or not
            if self.gradebook.reasons(kata):
                self.gradebook.expect(kata)

    def _graded(self, grade: TestGrade | None) -> None:
        if grade is not None:
            self.config.hook.pytest_kata_graded(config=self.config, grade=grade)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if str(report.outcome) == "rerun":  # a rerun plugin (or pytest_handlecrashitem) retries
            return
        meta = None
        if getattr(report, "kata_meta", None) is None and report.when not in (
            "setup",
            "call",
            "teardown",
        ):
            # xdist's report for a test whose worker crashed: it has no kata_meta, and the
            # test may never have sent one (the worker died in its setup).
            kata = catalog.find_kata(self.config.rootpath / report.nodeid.split("::", 1)[0])
            if kata is not None:
                meta = nodeid_meta(kata, self.config.rootpath, report.nodeid)
        outcome = getattr(report, "kata_outcome", None)
        kind = None
        if report.failed:
            kind = self.config.hook.pytest_kata_classify(report=report, outcome=outcome)
        if report.when == "call" and report.passed and outcome:
            for note in outcome.get("explored", ()):
                if "could not schedule" in note:
                    self.unscheduled.append(f"{report.nodeid}: {note}")
        grade = self.gradebook.record(report, kind, meta)
        if grade is not None and report.when in ("teardown", "???"):
            self._graded(grade)

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
        elif self.requested is not None:
            terminalreporter.write_line(
                f"kata report: not written ({self.requested} is left as it was): "
                "no test runs in this mode"
            )

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        ran = self.runs_tests
        for grade in self.gradebook.finish() if ran else ():  # results that never all came
            self._graded(grade)
        if ran and self.progress is not None:  # for `katas list`: only finished tests count
            self.progress.finish(self.gradebook)
        if self.report is not None and exitstatus in (
            pytest.ExitCode.INTERRUPTED,
            pytest.ExitCode.INTERNAL_ERROR,
        ):
            note = "the run did not finish (interrupted or internal error)"
            if note not in self.gradebook.problems:
                self.gradebook.problems.append(note)
        # pytest's exit code agrees with the grade: with a report, anything but "pass" fails
        # (tampering, say, or a test whose call report never came); without one, a test
        # graded as failed does.
        status = self.gradebook.status()
        bad = status != "pass" if self.report is not None else self.gradebook.failing()
        if ran and bad and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if self.report is not None:
            write_report(self.config, self.gradebook, self.report, self.fmt)
