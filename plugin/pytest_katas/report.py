"""The machine-readable reports: Exercism's test-runner v3 (with scores) and GitHub Classroom.

A run that asks for a report always leaves one: an error report ("the run did not
finish", score 0) from its start, replaced atomically at its end, and an error report with
the message when pytest refuses its options.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from pytest_katas.grading import Gradebook, TestGrade

__all__ = ["FORMATS", "classroom", "exercism", "write_error_report", "write_report"]

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
                    "name": test.name,
                    "status": _test_status(test),
                    "message": test.message or None,
                    "output": test.output[:500] or None,
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
    return data


def classroom(gradebook: Gradebook) -> dict[str, Any]:
    """What GitHub Classroom's autograding reporter reads from a runner's ``result``, and
    the message when the status is "error"."""
    data: dict[str, Any] = {
        "version": 1,
        "status": gradebook.status(),
        "max_score": gradebook.max_score,
        "tests": [
            {
                "name": f"{test.kata}: {test.name}",
                "status": _test_status(test),
                "score": test.score,
                "message": test.message or None,
                "test_code": test.test_code,
                "filename": test.filename,
                "line_no": test.line_no,
                "duration": round(test.duration * 1000),
            }
            for kata in gradebook.ordered()
            for test in kata.ordered()
        ],
    }
    if data["status"] == "error":
        data["message"] = gradebook.message()
    return data


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
