"""The board at the end of every run: tasks done, score, and what to do next, per kata."""

from __future__ import annotations

import textwrap

import pytest

from pytest_katas.grading import Gradebook, KataGrade

__all__ = ["pytest_kata_board"]


def _failing_lines(grade: KataGrade, limit: int | None) -> list[str]:
    lines = []
    for task in grade.kata.tasks:
        if grade.task_done(task):
            continue
        failing = grade.failing(task)
        if failing is None:
            why = "not run"
        else:
            why = failing.kind.name if failing.kind is not None else failing.status.upper()
        hint = f"pytest katas/{grade.kata.name} --kata-hint={task.id}"
        title = textwrap.shorten(task.title, 44, placeholder="...")
        lines.append(f"    task {task.id} {title:<44} {why:<8} hint: {hint}")
    return lines if limit is None else lines[:limit]


@pytest.hookimpl(trylast=True)
def pytest_kata_board(
    config: pytest.Config, gradebook: Gradebook, terminal: pytest.TerminalReporter
) -> None:
    katas = gradebook.ordered()
    if not katas:
        return
    terminal.write_sep("=", "kata board")
    one = len(katas) == 1
    for grade in katas:
        done = sum(grade.task_done(t) for t in grade.kata.tasks)
        finished = done == len(grade.kata.tasks) and not grade.blocked
        mark = "done" if finished else "    "
        terminal.write_line(
            f"{mark} {grade.kata.name:<12} {done}/{len(grade.kata.tasks)} tasks  "
            f"{grade.score:>3}/{grade.max_score} points"
        )
        if grade.blocked:  # broken or tampered with: it scores 0 whatever its tests did
            terminal.write_line(f"     scores 0: {grade.blocked[0]}", red=True)
            continue
        for line in _failing_lines(grade, None if one else 1):
            terminal.write_line(line)
    if not one:
        terminal.write_line(
            f"     {'total':<12} {'':>9}  {gradebook.score:>3}/{gradebook.max_score} points"
        )
    for problem in gradebook.tampered:
        terminal.write_line(f"TAMPERED: {problem}", red=True)
    for problem in gradebook.problems:
        terminal.write_line(f"PROBLEM: {problem}", red=True)
