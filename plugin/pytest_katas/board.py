"""The board at the end of every run: tasks done, score, and what to do next, per kata."""

from __future__ import annotations

import textwrap

import pytest

from pytest_katas import catalog, settings
from pytest_katas.commands import katas_command
from pytest_katas.grading import Gradebook, KataGrade
from pytest_katas.messages import _
from pytest_katas.verdict import Kind

__all__ = ["pytest_kata_board"]

_TITLE_WIDTH = 44


def _failing_lines(
    grade: KataGrade, limit: int | None, learners: bool, shown: set[Kind]
) -> list[str]:
    lines = []
    for task in grade.kata.tasks:
        if grade.task_done(task):
            continue
        failing = grade.failing(task)
        if failing is None:
            why = _("not run")
        elif failing.kind is not None:
            why = failing.kind.name
            shown.add(failing.kind)
        else:
            why = failing.status.upper()
        title = _shorten(_(task.title), _TITLE_WIDTH)
        task_id = _("task {id}").format(id=task.id)
        line = f"    {task_id} {_pad(title, _TITLE_WIDTH)} {_pad(why, 8)}"
        if learners:  # the reference needs no hints: they are for the learner's own code
            hint = katas_command("hint", grade.kata.name, str(task.id))
            line += " " + _("hint: {command}").format(command=hint)
        lines.append(line.rstrip())
    return lines if limit is None else lines[:limit]


def _width(text: str) -> int:
    """Columns ``text`` takes in a terminal: a CJK character takes two."""
    return sum(2 if "\u2e80" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef" else 1 for ch in text)


def _shorten(text: str, width: int) -> str:
    """``text`` cut to ``width`` columns, ending in "..." when cut."""
    if _width(text) == len(text):  # no wide characters: cut at a word, as English reads
        return textwrap.shorten(text, width, placeholder="...")
    if _width(text) <= width:
        return text
    while _width(text) + 3 > width:
        text = text[:-1]
    return text + "..."


def _pad(text: str, width: int) -> str:
    return text + " " * max(width - _width(text), 0)


def _points(score: int | float, max_score: int | float) -> str:
    return _("{score}/{total} points").format(score=f"{score:>3}", total=max_score)


def _learners(config: pytest.Config, gradebook: Gradebook) -> bool:
    """Whether this run tested the learner's own files (``--kata-target=katas``, or a path
    that leads to them), not the reference solutions or another folder."""
    target = settings.of(config).target
    if target == "katas":
        return True
    for grade in gradebook.ordered():
        if grade.kata.problem is not None:
            continue  # a broken kata has no target to compare
        try:
            if catalog.resolve_target(grade.kata, target) != grade.kata.stub.resolve():
                return False
        except catalog.KataError:
            return False
    return True


def _heading(config: pytest.Config, learners: bool) -> str:
    if learners:
        return _("kata board")
    target = settings.of(config).target
    if target == "solutions":
        return _("kata board: reference solutions (not your progress)")
    return _("kata board: {target} (not your progress)").format(target=target)


@pytest.hookimpl(trylast=True)
def pytest_kata_board(
    config: pytest.Config, gradebook: Gradebook, terminal: pytest.TerminalReporter
) -> None:
    katas = gradebook.ordered()
    if not katas:
        return
    learners = _learners(config, gradebook)
    heading = _heading(config, learners)
    wide = _width(heading) - len(heading)  # pytest counts characters, not columns
    fullwidth = config.get_terminal_writer().fullwidth - wide if wide else None
    terminal.write_sep("=", heading, fullwidth=fullwidth)
    one = len(katas) == 1
    shown: set[Kind] = set()
    for grade in katas:
        done = sum(grade.task_done(t) for t in grade.kata.tasks)
        finished = done == len(grade.kata.tasks) and not grade.blocked
        # "done" is the learner's progress; the reference only passes or fails its tests
        mark = (_("done") if learners else _("pass")) if finished else ""
        tasks = _("{done}/{total} tasks").format(done=done, total=len(grade.kata.tasks))
        points = _points(grade.score, grade.max_score)
        terminal.write_line(f"{_pad(mark, 4)} {grade.kata.name:<12} {tasks}  {points}")
        if grade.blocked:  # broken or tampered with: it scores 0 whatever its tests did
            reason = _("scores 0: {reason}").format(reason=grade.blocked[0])
            terminal.write_line(f"     {reason}", red=True)
            continue
        for line in _failing_lines(grade, None if one else 1, learners, shown):
            terminal.write_line(line)
    if not one:
        points = _points(gradebook.score, gradebook.max_score)
        total = _pad(_("total"), 12)
        terminal.write_line(f"     {total} {'':>9}  {points}")
    for kind in sorted(shown, key=lambda k: list(Kind).index(k)):  # what each class means
        terminal.write_line(f"     {kind.name}: {kind.explanation()}")
    for problem in gradebook.tampered:
        terminal.write_line(f"TAMPERED: {problem}", red=True)
    for problem in gradebook.problems:
        terminal.write_line(_("PROBLEM: {problem}").format(problem=problem), red=True)
