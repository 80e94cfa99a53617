"""Grades: each kata test's result, and each task's points, scored when all its tests pass.

A kata that cannot be graded honestly (its kata.toml or a test's kata marker is broken, or
a protected file of it was tampered with) scores 0, every test of it too: GitHub
Classroom's reporter adds up the tests' scores and ignores the status. A test whose reports
did not all arrive (its xdist worker crashed, pytest stopped) is a failure, never a pass.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
from collections.abc import Collection
from pathlib import Path
from typing import Any, Final, final

import pytest

from pytest_katas.catalog import Kata, Task, kata_at
from pytest_katas.verdict import Kind

__all__ = [
    "Gradebook",
    "KataGrade",
    "TestGrade",
    "nodeid_meta",
    "reported_output",
    "task_scores",
    "test_meta",
]

OUTPUT_LIMIT: Final = 500  # characters of a test's output in a report (Exercism's limit)
TRUNCATED: Final = "Output was truncated. Please limit to 500 chars"  # Exercism's own words
_RANK: Final = {"pass": 0, "skip": 1, "fail": 2, "error": 3}
_PHASES: Final = ("setup", "call", "teardown")


@final
@dataclasses.dataclass
class TestGrade:
    nodeid: str
    name: str
    kata: str
    task_id: int | None
    status: str = "pass"  # pass, fail, error or skip
    kind: Kind | None = None
    message: str = ""
    output: str = ""
    test_code: str = ""
    filename: str = ""
    line_no: int = 0
    duration: float = 0.0
    seed: int | None = None
    max_score: float = 0.0
    score: float = 0.0
    phases: set[str] = dataclasses.field(default_factory=set)  # the reports that arrived


def task_scores(kata: Kata, done: Collection[int]) -> list[dict[str, Any]]:
    """Each task of ``kata`` with its points, scored all or nothing: the tasks in ``done``
    score their points, the others 0. (Reports carry these; see report.classroom_of.)"""
    return [
        {"id": t.id, "title": t.title, "points": t.points, "score": t.points if t.id in done else 0}
        for t in kata.tasks
    ]


def readable_name(kata: str, test: str) -> str:
    """A test's name as a person reads it (Exercism's ``name``): ``pipe: Relay closes every
    write end [spawn]`` for ``test_relay_closes_every_write_end[spawn]`` of the pipe kata."""
    base, bracket, params = test.partition("[")
    words = " ".join(base.removeprefix("test_").split("_")) or base
    return f"{kata}: {words[:1].upper()}{words[1:]}{f' [{params}' if bracket else ''}"


def reported_output(output: str) -> str | None:
    """A test's output as Exercism wants it: at most OUTPUT_LIMIT characters, then the
    notice that it was cut."""
    if len(output) <= OUTPUT_LIMIT:
        return output or None
    return f"{output[:OUTPUT_LIMIT]}\n\n{TRUNCATED}"


def _body(source: str) -> str:
    """The body of a test function's source, dedented: what Exercism calls its test code."""
    try:
        function = ast.parse(textwrap.dedent(source)).body[0]
    except (SyntaxError, IndexError):
        return source
    if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)) or not function.body:
        return source
    lines = textwrap.dedent(source).splitlines()
    return textwrap.dedent("\n".join(lines[function.body[0].lineno - 1 :])).strip("\n")


def test_meta(item: pytest.Item, kata: Kata) -> dict[str, Any]:
    """What the controller needs to grade ``item``, attached to its reports by the worker."""
    task = _task_from_markers(item) or kata.task_of(item.name)
    function = getattr(item, "function", None)
    try:
        code = _body(inspect.getsource(function)) if function is not None else ""
    except (OSError, TypeError):
        code = ""
    return {
        "kata_dir": str(kata.directory),
        "task": task.id if isinstance(task, Task) else task,
        "test_code": code,
        "filename": kata.relpath(str(item.path)),
        "line_no": (item.location[1] or 0) + 1,
    }


def nodeid_meta(kata: Kata, rootpath: Path, nodeid: str) -> dict[str, Any]:
    """What :func:`test_meta` would say, from a node id alone (for a test whose worker
    crashed before it sent a report)."""
    name = nodeid.split("::")[-1]
    task = kata.task_of(name)
    return {
        "kata_dir": str(kata.directory),
        "task": task.id if task is not None else None,
        "test_code": "",
        "filename": kata.relpath(rootpath / nodeid.split("::", 1)[0]),
        "line_no": 0,
    }


def _task_from_markers(item: pytest.Item) -> int | None:
    """The task a ``kata_task``/``task`` marker names; a bad value (which fails the test at
    setup, see session.item_problem) names none."""
    for name, key in (("kata_task", None), ("task", "taskno")):
        mark = item.get_closest_marker(name)
        if mark is not None:
            value = mark.kwargs.get(key) if key else (mark.args[0] if mark.args else None)
            if value is not None:
                return value if type(value) is int else None
    return None


@final
@dataclasses.dataclass
class KataGrade:
    kata: Kata
    tests: dict[str, TestGrade] = dataclasses.field(default_factory=dict)
    blocked: list[str] = dataclasses.field(default_factory=list)  # why it scores 0

    def ordered(self) -> list[TestGrade]:
        return sorted(self.tests.values(), key=lambda t: (t.filename, t.line_no, t.name))

    def task_tests(self, task: Task) -> list[TestGrade]:
        return [t for t in self.ordered() if t.task_id == task.id]

    def task_done(self, task: Task) -> bool:
        if self.blocked:
            return False
        ran = self.task_tests(task)
        return bool(ran) and len(ran) >= len(task.tests) and all(t.status == "pass" for t in ran)

    def failing(self, task: Task) -> TestGrade | None:
        return next((t for t in self.task_tests(task) if t.status in ("fail", "error")), None)

    @property
    def score(self) -> int:
        return sum(task.points for task in self.kata.tasks if self.task_done(task))

    @property
    def max_score(self) -> int:
        return sum(task.points for task in self.kata.tasks)

    def status(self) -> str:
        tests = self.tests.values()
        if self.blocked or any(t.kind == Kind.BROKEN for t in tests):
            return "error"
        if any(t.status in ("fail", "error") for t in tests):
            return "fail"
        return "pass" if all(self.task_done(task) for task in self.kata.tasks) else "fail"

    def message(self) -> str | None:
        if self.blocked:
            return self.blocked[0]
        broken = next((t for t in self.ordered() if t.kind == Kind.BROKEN), None)
        return broken.message.splitlines()[0] if broken is not None else None

    def rescore(self) -> None:
        for task in self.kata.tasks:
            share = round(task.points / max(len(task.tests), 1), 2)
            done = self.task_done(task)
            for test in self.task_tests(task):
                test.max_score = share
                test.score = share if done else 0.0


@final
class Gradebook:
    """Every kata test's grade, gathered from reports (in the controller under xdist)."""

    def __init__(self) -> None:
        self.katas: dict[str, KataGrade] = {}
        self.problems: list[str] = []  # collection errors, a stale manifest, an interruption
        self.tampered: list[str] = []
        self._blocked: dict[Path, list[str]] = {}  # kata folder -> why it scores 0
        self._blocked_all: list[str] = []  # why every kata scores 0 (the plugin was edited)
        self._meta: dict[str, dict[str, Any]] = {}  # node id -> its test's kata_meta

    def reasons(self, kata: Kata) -> list[str]:
        """Why ``kata`` scores 0 whatever its tests do; empty if it is graded as usual."""
        mine = self._blocked.get(kata.directory.resolve(), [])
        found = [f"BROKEN: {kata.problem}"] if kata.problem is not None else []
        return [*found, *self._blocked_all, *(r for r in mine if r not in found)]

    def _grade_of(self, kata: Kata) -> KataGrade:
        grades = self.katas.get(kata.name)
        if grades is None:
            grades = self.katas[kata.name] = KataGrade(kata)
        grades.blocked = self.reasons(kata)
        return grades

    def expect(self, kata: Kata) -> KataGrade:
        """Show ``kata`` in the report (at 0 until its tests pass), run or not."""
        grades = self._grade_of(kata)
        grades.rescore()
        return grades

    def block(self, kata: Kata, reason: str) -> None:
        """``kata`` scores 0, every test of it too, because of ``reason``."""
        reasons = self._blocked.setdefault(kata.directory.resolve(), [])
        if reason not in reasons:
            reasons.append(reason)
        if kata.name in self.katas:
            self.expect(kata)

    def tamper(self, root: Path, change: str) -> None:
        """A protected file under ``root`` differs from the manifest (``change`` is what
        manifest.changed_files says): its kata scores 0, or every kata for a plugin file."""
        self.tampered.append(change)
        parts = change.split(" (", 1)[0].split("/")
        reason = f"TAMPERED: {change} differs from katas/manifest.json"
        if len(parts) >= 3 and parts[0] == "katas":
            self._blocked.setdefault((root / "katas" / parts[1]).resolve(), []).append(reason)
        else:
            self._blocked_all.append(reason)
        for grades in self.katas.values():
            self.expect(grades.kata)

    def record(
        self,
        report: pytest.TestReport,
        kind: Kind | None,
        meta: dict[str, Any] | None = None,
    ) -> TestGrade | None:
        meta = getattr(report, "kata_meta", None) or meta or self._meta.get(report.nodeid)
        if meta is None:
            return None
        self._meta[report.nodeid] = meta
        kata = kata_at(Path(meta["kata_dir"]))
        grades = self._grade_of(kata)
        name = report.nodeid.split("::")[-1]
        grade = grades.tests.get(report.nodeid)
        if grade is None:
            grade = grades.tests[report.nodeid] = TestGrade(
                nodeid=report.nodeid,
                name=name,
                kata=kata.name,
                task_id=meta["task"],
                test_code=meta["test_code"],
                filename=meta["filename"],
                line_no=meta["line_no"],
            )
        grade.phases.add(report.when)
        grade.duration += report.duration
        status = _status(report)
        problem = getattr(report, "kata_problem", None)
        if problem is not None:  # a broken kata.toml or kata marker: see session.item_problem
            status, kind = "error", Kind.BROKEN
            self.block(kata, f"BROKEN: {problem}")
        crashed = report.when not in _PHASES and report.failed  # xdist: "worker crashed ..."
        if crashed:
            status, kind = "fail", Kind.CRASH
        if _RANK[status] > _RANK[grade.status]:  # the worst phase decides
            grade.status, grade.kind = status, kind
            grade.message = _message(report)
            if crashed:
                grade.message = f"CRASH: {grade.message}; the test counts as failed"
            outcome = getattr(report, "kata_outcome", None) or {}
            grade.seed = outcome.get("seed")
        output = (report.capstdout + report.capstderr).strip()
        if output:
            # One character past the limit is enough to know that it was cut.
            grade.output = (grade.output + output)[: OUTPUT_LIMIT + 1]
        grades.rescore()
        return grade

    def finish(self) -> list[TestGrade]:
        """At the end of the run: a test that looked like a pass but whose reports did not
        all arrive (setup passed, then nothing) fails. Returns the tests it failed."""
        failed = []
        for grades in self.katas.values():
            for test in grades.tests.values():
                missing = [p for p in _PHASES if p not in test.phases]
                if test.status != "pass" or not missing:
                    continue
                test.status, test.kind = "fail", Kind.CRASH
                test.message = (
                    f"CRASH: no {missing[0]} result arrived for this test: its xdist worker "
                    "died, or pytest stopped, before the test finished. It counts as failed."
                )
                failed.append(test)
            grades.rescore()
        return failed

    def ordered(self) -> list[KataGrade]:
        return sorted(self.katas.values(), key=lambda g: (g.kata.order, g.kata.name))

    @property
    def score(self) -> int:
        return sum(g.score for g in self.katas.values())

    @property
    def max_score(self) -> int:
        return sum(g.max_score for g in self.katas.values())

    def failing(self) -> bool:
        """Some test is graded fail or error (pytest may have counted it a pass: its call
        report never came)."""
        tests = [t for g in self.katas.values() for t in g.tests.values()]
        return any(t.status in ("fail", "error") for t in tests)

    def status(self) -> str:
        """Exercism's overall status: ``error`` only when nothing could be graded (the run
        was tampered with or did not finish, or every kata is broken); one broken kata among
        others makes the run ``fail``, its tests ``error`` and its kata's own status
        ``error``, with the message there."""
        graded = list(self.katas.values())
        tests = [t for g in graded for t in g.tests.values()]
        broken = [g.status() == "error" for g in graded]
        if self.tampered or self.problems or (graded and all(broken)):
            return "error"
        if not tests or any(broken) or any(t.status in ("fail", "error") for t in tests):
            return "fail"
        done = all(g.task_done(task) for g in graded for task in g.kata.tasks)
        return "pass" if done else "fail"

    def message(self) -> str | None:
        """Why the run is an ``error``; None otherwise (as Exercism asks: each broken kata's
        message is in its own entry and on its tests)."""
        if self.status() != "error":
            return None
        if self.tampered:
            return "protected files differ from katas/manifest.json: " + "; ".join(self.tampered)
        if self.problems:
            return "; ".join(self.problems)
        for grades in self.ordered():
            if grades.status() == "error" and (message := grades.message()) is not None:
                return message
        return None


def _message(report: pytest.TestReport) -> str:
    """What went wrong, the same with or without xdist (whose reports start with a line
    naming the worker: ``[gw0] linux -- Python 3.12.1 /usr/bin/python3``); for a skipped
    test, the reason (a test not run after another hung says why)."""
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    lines = report.longreprtext.strip().splitlines()
    if hasattr(report, "node") and lines and lines[0].startswith("[") and " -- Python " in lines[0]:
        lines = lines[1:]
    return "\n".join(lines).strip()


def _status(report: pytest.TestReport) -> str:
    if report.skipped:
        return "skip"
    if report.passed:
        return "pass"
    return "fail" if report.when == "call" else "error"
