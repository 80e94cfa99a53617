"""The plugin's own hooks (``pytest_kata_*``), for plugins that grade, report or classify.

Implement them in a ``conftest.py`` or a plugin; the built-in report formats and the
terminal board are implementations of these same hooks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_katas.grading import Gradebook, TestGrade
    from pytest_katas.verdict import Kind

__all__ = [
    "pytest_kata_board",
    "pytest_kata_classify",
    "pytest_kata_graded",
    "pytest_kata_report",
]


@pytest.hookspec(firstresult=True)
def pytest_kata_classify(report: pytest.TestReport, outcome: dict[str, Any] | None) -> Kind | None:
    """Name the failure class of a failed kata test, or return None to leave it to others.

    ``outcome`` is what the supervisor reported (its ``kind`` is the built-in verdict), or
    None when the test failed outside the sandbox (in a fixture, say). The first non-None
    answer wins; the built-in classifier runs last.
    """


@pytest.hookspec
def pytest_kata_graded(config: pytest.Config, grade: TestGrade) -> None:
    """Called once for each kata test when its grade is known, in the controller under xdist."""


@pytest.hookspec(firstresult=True)
def pytest_kata_report(
    config: pytest.Config, gradebook: Gradebook, fmt: str
) -> dict[str, Any] | None:
    """Build the report ``--kata-report-format=fmt`` asks for, as JSON-ready data.

    Return None for formats you do not know. Built in: ``exercism`` (test-runner v3 with
    scores) and ``classroom`` (GitHub Classroom's autograding reporter).
    """


@pytest.hookspec
def pytest_kata_board(
    config: pytest.Config, gradebook: Gradebook, terminal: pytest.TerminalReporter
) -> None:
    """Write to the terminal summary at the end of the run (the built-in board does)."""
