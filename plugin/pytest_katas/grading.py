"""Grades: each kata test's result, and each task's points, scored when all its tests pass."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any, Final, final

import pytest

from pytest_katas.catalog import Kata, Task, load_kata
from pytest_katas.verdict import Kind

__all__ = ["Gradebook", "KataGrade", "TestGrade", "test_meta"]

OUTPUT_LIMIT: Final = 500
_RANK: Final = {"pass": 0, "skip": 1, "fail": 2, "error": 3}


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


def test_meta(item: pytest.Item, kata: Kata) -> dict[str, Any]:
    """What the controller needs to grade ``item``, attached to its reports by the worker."""
    task = _task_from_markers(item) or kata.task_of(item.name)
    function = getattr(item, "function", None)
    try:
        code = inspect.getsource(function) if function is not None else ""
    except (OSError, TypeError):
        code = ""
    return {
        "kata_dir": str(kata.directory),
        "task": task.id if isinstance(task, Task) else task,
        "test_code": code,
        "filename": kata.relpath(str(item.path)),
        "line_no": (item.location[1] or 0) + 1,
    }


def _task_from_markers(item: pytest.Item) -> int | None:
    for name, key in (("kata_task", None), ("task", "taskno")):
        mark = item.get_closest_marker(name)
        if mark is not None:
            value = mark.kwargs.get(key) if key else (mark.args[0] if mark.args else None)
            if value is not None:
                return int(value)
    return None


@final
@dataclasses.dataclass
class KataGrade:
    kata: Kata
    tests: dict[str, TestGrade] = dataclasses.field(default_factory=dict)

    def ordered(self) -> list[TestGrade]:
        return sorted(self.tests.values(), key=lambda t: (t.filename, t.line_no, t.name))

    def task_tests(self, task: Task) -> list[TestGrade]:
        return [t for t in self.ordered() if t.task_id == task.id]

    def task_done(self, task: Task) -> bool:
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

    def record(self, report: pytest.TestReport, kind: Kind | None) -> TestGrade | None:
        meta = getattr(report, "kata_meta", None)
        if meta is None:
            return None
        kata = load_kata(Path(meta["kata_dir"]))
        grades = self.katas.setdefault(kata.name, KataGrade(kata))
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
        grade.duration += report.duration
        status = _status(report)
        if _RANK[status] > _RANK[grade.status]:  # the worst phase decides
            grade.status, grade.kind = status, kind
            grade.message = report.longreprtext.strip()
            outcome = getattr(report, "kata_outcome", None) or {}
            grade.seed = outcome.get("seed")
        output = (report.capstdout + report.capstderr).strip()
        if output:
            grade.output = (grade.output + output)[-OUTPUT_LIMIT:]
        grades.rescore()
        return grade

    def ordered(self) -> list[KataGrade]:
        return sorted(self.katas.values(), key=lambda g: (g.kata.order, g.kata.name))

    @property
    def score(self) -> int:
        return sum(g.score for g in self.katas.values())

    @property
    def max_score(self) -> int:
        return sum(g.max_score for g in self.katas.values())

    def status(self) -> str:
        tests = [t for g in self.katas.values() for t in g.tests.values()]
        if self.tampered or self.problems or any(t.kind == Kind.BROKEN for t in tests):
            return "error"
        if not tests or any(t.status in ("fail", "error") for t in tests):
            return "fail"
        done = all(g.task_done(task) for g in self.katas.values() for task in g.kata.tasks)
        return "pass" if done else "fail"

    def message(self) -> str | None:
        if self.tampered:
            return "protected files differ from katas/manifest.json: " + "; ".join(self.tampered)
        broken = next(
            (t for g in self.katas.values() for t in g.tests.values() if t.kind == Kind.BROKEN),
            None,
        )
        if broken is not None:
            return broken.message.splitlines()[0]
        if self.problems:
            return "; ".join(self.problems)
        return None


def _status(report: pytest.TestReport) -> str:
    if report.skipped:
        return "skip"
    if report.passed:
        return "pass"
    return "fail" if report.when == "call" else "error"
