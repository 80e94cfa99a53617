"""The machine-readable reports: Exercism's test-runner v3 (with scores) and GitHub Classroom.

A run that asks for a report always leaves one: an error report ("the run did not
finish", score 0) from its start, replaced atomically at its end, and an error report with
the message when pytest refuses its options.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Final

import pytest

from pytest_katas.grading import (
    Gradebook,
    TestGrade,
    readable_name,
    reported_output,
    task_scores,
)

__all__ = [
    "FORMATS",
    "classroom",
    "classroom_of",
    "exercism",
    "write_error_report",
    "write_report",
]

MESSAGE_LIMIT: Final = 1024  # characters of a Classroom entry's message: its headline and more

FORMATS = ("exercism", "classroom")


def _class_of(test: TestGrade) -> str | None:
    return test.kind.name.lower() if test.kind is not None else None


def _test_status(test: TestGrade) -> str:
    return "fail" if test.status == "skip" else test.status


def exercism(gradebook: Gradebook) -> dict[str, Any]:
    """Exercism's test-runner v3, plus score, max_score, kata, failure_class and seed."""
    tests = []
    for kata in gradebook.ordered():
        for test in kata.ordered():
            tests.append(
                {
                    "name": readable_name(test.kata, test.name),
                    "test": test.name,  # the test function (and its parameters) in the file
                    "status": _test_status(test),
                    "message": test.message or None,
                    "output": reported_output(test.output),
                    "test_code": test.test_code,
                    "task_id": test.task_id,
                    "kata": test.kata,
                    "failure_class": _class_of(test),
                    "seed": test.seed,
                    "score": test.score,
                    "max_score": test.max_score,
                }
            )
    data: dict[str, Any] = {
        "version": 3,
        "status": gradebook.status(),
        "message": gradebook.message(),
        "score": gradebook.score,
        "max_score": gradebook.max_score,
        "katas": {
            kata.kata.name: {
                "score": kata.score,
                "max_score": kata.max_score,
                "tasks_done": sum(kata.task_done(t) for t in kata.kata.tasks),
                "tasks": len(kata.kata.tasks),
                "status": kata.status(),
                "message": kata.message(),
            }
            for kata in gradebook.ordered()
        },
        "tests": tests,
    }
    for kata in gradebook.ordered():
        done = {task.id for task in kata.kata.tasks if kata.task_done(task)}
        data["katas"][kata.kata.name]["task_scores"] = task_scores(kata.kata, done)
    return data


def _cap(text: str) -> str:
    if len(text) <= MESSAGE_LIMIT:
        return text
    return text[:MESSAGE_LIMIT].rstrip() + "\n... (cut here: the run's output has all of it)"


def _task_message(kata: dict[str, Any], tests: list[dict[str, Any]]) -> str:
    """Why a task scored 0: its kata's problem, or which of its tests failed and the first
    one's message (capped)."""
    if kata.get("status") == "error" and kata.get("message"):
        return _cap(str(kata["message"]))
    failing = [t for t in tests if t["status"] != "pass"]
    if not failing:
        return "not every test of this task ran"
    names = ", ".join(
        f"{t['test']} ({t['failure_class'].upper() if t.get('failure_class') else t['status']})"
        for t in failing
    )
    first = str(failing[0].get("message") or "").strip()
    return _cap(f"failed: {names}\n\n{failing[0]['test']}: {first}")


def classroom_of(report: dict[str, Any]) -> dict[str, Any]:
    """GitHub Classroom's runner result, from an Exercism-style report (ours, or the one
    ``katas grade`` checked).

    Its reporter adds up the entries' scores for the grade it sends, but its summary table
    scores a runner as the share of entries that passed. So that both say the same, exactly,
    every entry is worth one point: a task of 3 points is 3 entries, all passed when the
    task is done (all its tests passed, however often they ran) and all failed otherwise."""
    entries = []
    for name, kata in report.get("katas", {}).items():
        errored = kata.get("status", report["status"]) == "error"
        for task in kata.get("task_scores", []):
            done = task["score"] == task["points"]
            tests = [
                t for t in report["tests"] if t["kata"] == name and t.get("task_id") == task["id"]
            ]
            message = None if done else _task_message(kata, tests)
            points = task["points"]
            for point in range(1, points + 1):
                label = f"{name} task {task['id']} ({point}/{points})"
                entries.append(
                    {
                        "name": f"{label}: {task['title']}",
                        "status": "pass" if done else "error" if errored else "fail",
                        "score": 1 if done else 0,
                        "message": message
                        if point == 1 or message is None
                        else (f"see {name} task {task['id']} (1/{points})"),
                        "test_code": "\n".join(t["test"] for t in tests),
                        "filename": f"katas/{name}/test_{name}.py",
                        "line_no": 0,
                        "duration": 0,
                    }
                )
    data: dict[str, Any] = {
        "version": 1,
        "status": report["status"],
        "max_score": report["max_score"],
        "tests": entries,
    }
    if data["status"] == "error":
        data["message"] = _cap(str(report.get("message") or "the run could not be graded"))
    return data


def classroom(gradebook: Gradebook) -> dict[str, Any]:
    """What GitHub Classroom's autograding reporter reads from a runner's ``result``, and
    the message when the status is "error"."""
    return classroom_of(exercism(gradebook))


@pytest.hookimpl(trylast=True)
def pytest_kata_report(
    config: pytest.Config, gradebook: Gradebook, fmt: str
) -> dict[str, Any] | None:
    builders = {"exercism": exercism, "classroom": classroom}
    builder = builders.get(fmt)
    return builder(gradebook) if builder is not None else None


def _write_json(path: str, data: Any) -> None:
    """Write ``data`` to ``path`` atomically, so a reader never sees half of it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(target.name + f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(temporary, target)


def write_report(config: pytest.Config, gradebook: Gradebook, path: str, fmt: str) -> None:
    """Write the report atomically, so a reader never sees half of it."""
    data = config.hook.pytest_kata_report(config=config, gradebook=gradebook, fmt=fmt)
    if data is None:
        data = {"version": 3, "status": "error", "message": f"no report format {fmt!r}"}
    _write_json(path, data)


def write_error_report(path: str, fmt: str, message: str) -> None:
    """An error report (score 0) saying ``message``, for a run that stopped before it began
    (a bad option, say), when the report hooks may not be there yet."""
    gradebook = Gradebook()
    gradebook.problems.append(message)
    data = classroom(gradebook) if fmt == "classroom" else exercism(gradebook)
    _write_json(path, data)
