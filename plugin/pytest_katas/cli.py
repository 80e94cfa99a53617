"""``katas``: the project's command, for learners and instructors.

Learners: ``katas list``, ``next``, ``watch``, ``hint``, ``reset``, ``solution`` and
``verify``; their results come from ``.katas/`` (see :mod:`pytest_katas.progress`).
Instructors: ``katas grade`` grades submissions.

Exit codes of ``katas grade``: 0 when every submission passed, 1 when one did not, 2 for a
usage mistake. The learner's verbs: 0 when done, 1 when declined or the tests fail, 2 for
bad input (an unknown kata or task, no katas/ folder).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from pytest_katas import grade, progress
from pytest_katas import report as report_formats
from pytest_katas.catalog import KATA_MANIFEST, Kata, KataError, Task, read_kata
from pytest_katas.commands import katas_command, shown
from pytest_katas.messages import N_, _

__all__ = ["main"]

FORMATS: Final = ("exercism", "classroom", "junit")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a number of jobs of 1 or more")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="katas", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="COMMAND")
    _learner_verbs(verbs)
    g = verbs.add_parser(
        "grade",
        help="grade submissions in a box, from this checkout's tests",
        description=(
            "Grade each SUBMISSION (a folder laid out like this repository) with the tests of "
            "the checkout it is run from. Only katas/<kata>/<kata>.py is taken from a "
            "submission; its tests, configuration and everything else are ignored."
        ),
    )
    g.add_argument("submissions", nargs="+", type=Path, metavar="SUBMISSION")
    g.add_argument(
        "--report",
        required=True,
        type=Path,
        metavar="FILE",
        help="where the report goes; with several submissions, a folder of reports",
    )
    g.add_argument(
        "--kata",
        action="append",
        default=[],
        dest="only",
        metavar="KATA",
        help="grade only this kata (repeat for more; default: every kata)",
    )
    g.add_argument("--format", choices=FORMATS, default="exercism", dest="fmt")
    g.add_argument("-n", "--jobs", type=_positive, default=1, help="submissions at once")
    g.add_argument("--seed", type=int, default=None, help="the schedule seed (default: new)")
    g.add_argument("--start-method", choices=("fork", "spawn", "forkserver"), default=None)
    g.add_argument(
        "--isolation",
        choices=("auto", "bubblewrap", "unshare", "none"),
        default="auto",
        help="the box to use (auto: the strongest this host allows)",
    )
    g.add_argument(
        "--checkout",
        type=Path,
        default=Path.cwd(),
        help="the instructor's checkout whose tests grade (default: the current folder)",
    )
    return parser


def _stop(signum: int, frame: object) -> None:
    grade.STOP.set()  # every box is ended, then its report says error
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if argv[:1] and argv[0] in PASS_ON and "--" in argv:  # `katas watch pipe -- -x`: to pytest
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1 :]
    args = _parser().parse_args(argv)
    if args.verb in LEARNER_VERBS:
        return _learner(args, extra)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, _stop)
    if args.verb == "grade":
        return _grade(args)
    return 2  # pragma: no cover - argparse requires a verb


def _report_paths(report: Path, names: Sequence[str], fmt: str) -> list[Path]:
    suffix = ".xml" if fmt == "junit" else ".json"
    if len(names) == 1:
        return [report]
    return [report / f"{name}{suffix}" for name in names]


def _grade(args: argparse.Namespace) -> int:
    checkout = args.checkout.resolve()
    missing = [str(s) for s in args.submissions if not s.is_dir()]
    if missing:
        print(f"katas grade: no such submission folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    options = grade.GradeOptions(
        checkout=checkout,
        fmt=args.fmt,
        jobs=args.jobs,
        seed=args.seed if args.seed is not None else grade.new_seed(),
        start_method=args.start_method,
        isolation=args.isolation,
        only=tuple(args.only),
    )
    try:
        katas = grade.katas_of(checkout, options.only)
    except KataError as exc:
        print(f"katas grade: the checkout's katas cannot be used: {exc}", file=sys.stderr)
        return 2
    names = grade.names(args.submissions)
    paths = dict(zip(names, _report_paths(args.report, names, args.fmt), strict=True))
    for name, path in paths.items():  # until a submission is graded, its report says error
        _write(path, grade.error_report(katas, "grading did not finish"), args.fmt, name)
    print(f"katas grade: {len(names)} submission(s), seed {options.seed}, from {checkout}")

    def done(graded: grade.Graded) -> None:
        _write(paths[graded.name], graded.report, args.fmt, graded.name)
        if len(names) == 1:
            sys.stdout.write(graded.output)
        print(f"graded {graded.line()}", flush=True)

    results = grade.grade_all(options, katas, args.submissions, done)
    if len(names) > 1:
        index = {
            g.name: {k: g.report.get(k) for k in ("status", "score", "max_score")} for g in results
        }
        _atomic(args.report / "index.json", json.dumps(index, indent=2) + "\n")
    isolation = results[0].report.get("isolation", {}) if results else {}
    if isolation.get("tool") == "none" or not isolation.get("learner_user"):
        print(
            "katas grade: WARNING: learner code was not fully isolated here "
            f"({isolation.get('summary', '?')}); see the README's section on grading.",
            file=sys.stderr,
        )
    return 0 if all(g.status == "pass" for g in results) else 1


def _write(path: Path, report: dict[str, Any], fmt: str, name: str) -> None:
    if fmt == "junit":
        text = junit(report, name)
    elif fmt == "classroom":
        text = json.dumps(report_formats.classroom_of(report), indent=2, ensure_ascii=False)
        text += "\n"
    else:
        text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    _atomic(path, text)


def _atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def junit(report: dict[str, Any], name: str) -> str:
    """A JUnit XML file: one suite per kata, the grade in its properties."""
    suites = ET.Element("testsuites", name=f"katas grade {name}")
    for kata, grades in report.get("katas", {}).items():
        tests = [t for t in report["tests"] if t["kata"] == kata]
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=kata,
            tests=str(len(tests)),
            failures=str(sum(t["status"] == "fail" for t in tests)),
            errors=str(sum(t["status"] == "error" for t in tests)),
        )
        props = ET.SubElement(suite, "properties")
        for key in ("score", "max_score"):
            ET.SubElement(props, "property", name=key, value=str(grades[key]))
        for test in tests:
            case = ET.SubElement(suite, "testcase", classname=f"katas.{kata}", name=test["test"])
            if test["status"] != "pass":
                tag = "failure" if test["status"] == "fail" else "error"
                element = ET.SubElement(case, tag, message=(test.get("message") or "")[:200])
                element.text = test.get("message") or ""
    props = ET.SubElement(suites, "properties")
    for key in ("status", "score", "max_score"):
        ET.SubElement(props, "property", name=key, value=str(report.get(key)))
    if report.get("message"):
        ET.SubElement(props, "property", name="message", value=str(report["message"]))
    return ET.tostring(suites, encoding="unicode") + "\n"


# == the learner's verbs =====================================================================
#
# Every sentence a learner reads is in the constants below, in English: they are the msgids
# of the catalog (see messages.py), marked with N_() and translated with _() where they are
# printed, since the language is chosen (from $PYTEST_KATA_LANG, else the locale) only when
# the first message is. Every command we print goes through commands.katas_command /
# pytest_command.

LEARNER_VERBS: Final = ("list", "next", "watch", "hint", "reset", "solution", "verify")
PASS_ON: Final = ("watch", "verify")  # verbs whose arguments after `--` go to pytest

NO_ROOT: Final = N_(
    "no katas/ folder in {start} or above it; run this inside the course repository, "
    "or give its folder with --root"
)
BAD_ROOT: Final = N_("--root {root}: there is no katas/ folder with katas in it")
NO_KATA: Final = N_("there is no kata {name}; the katas are: {names}")
NO_TASK: Final = N_("the {kata} kata has no task {task}; its tasks are {ids}")
BAD_RUNS: Final = N_("--runs needs a number of 0 or more")
BAD_STORE: Final = N_("note: {problem}")
LIST_HEAD: Final = N_("Your katas, from your last runs (katas list never runs them):")
LIST_TASKS: Final = N_("{done}/{total} tasks")  # the board's words, in the same columns
LIST_POINTS: Final = N_("{score}/{total} points")
MARK_DONE: Final = N_("done")
MARK_NEXT: Final = "->"
NOTE_BROKEN: Final = N_("broken: {problem}")
NOTE_LAST: Final = N_("last run {when}")
NOTE_FAILING: Final = N_("task {task} failing ({why})")
NOTE_PARTIAL: Final = N_("task {task} only partly run")
NOTE_NOT_RUN_TASK: Final = N_("task {task} not run")
NOTE_CHANGED: Final = N_("changed since last run")
NOTE_DONE_EARLIER: Final = N_("task {task} done")
NOTE_EARLIER: Final = N_(" on an earlier version of your file")
NOTE_SEPARATOR: Final = N_("; ")
TOTAL: Final = N_("total")
NEXT_LINE: Final = N_("Next: {kata}, task {task} ({title}). Work on it with: {command}")
ALL_DONE: Final = N_(
    "Every kata is done: {score}/{max} points. Check them all again with: {command}"
)
NEXT_HEAD: Final = N_("Next: the {kata} kata, task {task} of {tasks}: {title} ({points} points)")
NEXT_STATUS: Final = N_("  last run:   {status}")
NEXT_LESSON: Final = N_("  lesson:     {path}")
NEXT_FILE: Final = N_("  your file:  {path}")
NEXT_WORK: Final = N_("Work on it:   {command}")
NEXT_STUCK: Final = N_("Stuck?        {command}")
STATUS_NOT_RUN: Final = N_("not run yet")
STATUS_FAILING: Final = N_("failing ({why})")
STATUS_PARTIAL: Final = N_("only partly run")
STATUS_WHEN: Final = N_("{status} ({when})")
STATUS_CHANGED: Final = N_("; your file changed since")
BROKEN_KATA: Final = N_("the {kata} kata cannot be used: {problem}")
HINT_HEAD: Final = N_("{kata}, task {task}: {title}")
HINT_LINE: Final = N_("hint {number} of {count}:")
HINT_MORE: Final = N_("Next hint: {next}   (again: --again, previous: --back, all: --all)")
HINT_LAST: Final = N_("That was the last hint. Compare with the reference: {command}")
HINT_PLACE: Final = N_("Your place is kept in {path}; start over with: {command}")
HINT_THEN: Final = N_("Then: {command}")
HINT_RESET: Final = N_("The hints of {kata} task {task} start over ({path}). Next: {command}")
RESET_NO_STUB: Final = N_(
    "cannot reset {kata}: {path} is not tracked by git here and no pristine copy was kept "
    "in {store}/stubs/; get the stub from the course repository"
)
RESET_SAME: Final = N_("{path} is already the stub ({source}); nothing to reset. Next: {command}")
RESET_ASK: Final = N_("Put the stub of {kata} back in {path}? Your file is saved first. [y/N] ")
RESET_DONE: Final = N_("Put the stub back in {path} (from {source}).")
RESET_BACKUP: Final = N_("Your file is saved as {backup}.")
RESET_FORGOT: Final = N_("Its results and hint places are forgotten. Next: {command}")
RESET_HINTS: Final = N_("The hints of every task of {kata} start over. Next: {command}")
DECLINED: Final = N_("Nothing changed.")
SOLUTION_NONE: Final = N_("there is no reference solution {path}")
SOLUTION_ASK: Final = N_(
    "You have not finished {kata} yet ({done}/{tasks} tasks). Show its reference solution "
    "anyway? [y/N] "
)
SOLUTION_HEAD: Final = N_("# {path}: the reference solution of the {kata} kata")
SOLUTION_COMPARE: Final = N_("Compare it with yours: {command}")
SOLUTION_NEXT: Final = N_("Next: {command}")
VERIFY_ALL: Final = N_("Every kata passes. See them all with: {command}")
VERIFY_NEXT: Final = N_("Next: {command}")
YES: Final = ("y", "yes", "是")  # the answers to [y/N] that say yes
HINT_WIDTH: Final = 88  # columns of a hint's lines (a CJK character takes two)


def _width(text: str) -> int:
    """Columns ``text`` takes in a terminal: a wide (CJK) character takes two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    """``text`` padded with spaces to ``width`` columns."""
    return text + " " * max(width - _width(text), 0)


# Chinese punctuation that must not begin a line (it stays at the end of the one before).
_NO_LINE_START: Final = frozenset("，。、；：？！）》」』”’,.;:?!)")
_WIDE: Final = "\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef"  # CJK, and fullwidth forms
_PIECES: Final = re.compile(rf"\s+|[{_WIDE}]|[^\s{_WIDE}]+")  # spaces, a wide char, a word


def _fill(text: str, width: int = HINT_WIDTH, indent: str = "  ") -> str:
    """``text`` wrapped to ``width`` columns, each line indented: at spaces as textwrap
    does, and between any two CJK characters (which have no spaces between them)."""
    if _width(text) == len(text):  # no wide characters: English, as it always was
        return textwrap.fill(text, width=width, initial_indent=indent, subsequent_indent=indent)
    lines: list[str] = []
    line = ""
    for piece in _PIECES.findall(text):
        if piece.isspace():
            piece = " "
            if not line:
                continue
        fits = _width(indent + line + piece) <= width or not line.strip()
        if fits or piece in _NO_LINE_START or piece == " ":
            line += piece
        else:
            lines.append(line.rstrip())
            line = piece
    if line.strip():
        lines.append(line.rstrip())
    return "\n".join(indent + line for line in lines)


class _Refused(Exception):
    """Bad input: one line for the learner, exit code 2."""


def _learner_verbs(verbs: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--root",
        type=Path,
        default=None,
        help="the course repository (default: the first folder with katas/ from here up)",
    )
    verbs.add_parser(
        "list",
        parents=[common],
        help="every kata with its tasks done and points, from your last runs",
        description="Every kata in order with its tasks done and points, from the results "
        "your last pytest runs saved in .katas/progress.json; nothing is run.",
    )
    verbs.add_parser(
        "next",
        parents=[common],
        help="the next unfinished kata and task, and how to work on it",
    )
    w = verbs.add_parser(
        "watch",
        parents=[common],
        help="run a kata's tests, then again each time you save its file",
        description="Run KATA's tests (default: the first unfinished kata), then again each "
        "time you save katas/KATA/KATA.py. Arguments after -- go to pytest. Ctrl-C stops.",
    )
    w.add_argument("kata", nargs="?", metavar="KATA")
    w.add_argument(
        "--runs",
        type=int,
        default=None,
        metavar="N",
        help="stop after N reruns (0: run once); for scripts and tests",
    )
    h = verbs.add_parser(
        "hint",
        parents=[common],
        help="the hints of a task, one at a time",
        description="Show the next hint of TASK of KATA. Your place is kept in .katas/hints.json.",
    )
    h.add_argument("kata", metavar="KATA")
    h.add_argument("task", metavar="TASK")
    how = h.add_mutually_exclusive_group()
    for flag, what in (
        ("--again", "the last hint shown, again"),
        ("--back", "the hint before the last one shown"),
        ("--all", "every hint of the task"),
        ("--reset", "start this task's hints over"),
    ):
        how.add_argument(flag, dest="how", action="store_const", const=flag[2:], help=what)
    r = verbs.add_parser(
        "reset",
        parents=[common],
        help="put a kata's stub back (your file is saved first)",
        description="Put back katas/KATA/KATA.py as committed (git HEAD), after saving "
        "yours in .katas/backup/; the kata's results and hint places are forgotten.",
    )
    r.add_argument("kata", metavar="KATA")
    r.add_argument("--yes", "-y", action="store_true", help="do not ask first")
    r.add_argument(
        "--hints", action="store_true", help="only start the kata's hints over; keep your file"
    )
    s = verbs.add_parser(
        "solution",
        parents=[common],
        help="show a kata's reference solution (asks first if you have not finished it)",
    )
    s.add_argument("kata", metavar="KATA")
    s.add_argument("--yes", "-y", action="store_true", help="do not ask first")
    verbs.add_parser(
        "verify",
        parents=[common],
        help="run every kata's tests (like pytest katas) and show the board",
        description="Run every kata's tests and show the board. Arguments after -- go to pytest.",
    )


def _find_root(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        katas = folder / "katas"
        if katas.is_dir() and any((c / KATA_MANIFEST).is_file() for c in katas.iterdir()):
            return folder
    return None


def _ask(question: str, yes: bool) -> bool:
    if yes:
        return True
    print(question, end="", flush=True)
    try:
        answer = input()
    except EOFError:
        print()
        return False
    return answer.strip().lower() in YES


def _when(stamp: str) -> str:
    try:
        moment = datetime.datetime.fromisoformat(stamp).astimezone()
    except ValueError:
        return stamp or "?"
    return moment.strftime("%Y-%m-%d %H:%M")


class _Learner:
    """One learner command's view of the course: its root, katas, and last results."""

    def __init__(self, args: argparse.Namespace) -> None:
        here = Path.cwd()
        if args.root is not None:
            root = args.root.resolve()
            if _find_root(root) != root:
                raise _Refused(_(BAD_ROOT).format(root=args.root))
        else:
            found = _find_root(here)
            if found is None:
                raise _Refused(_(NO_ROOT).format(start=here))
            root = found
        self.root = root
        self.explicit = _find_root(here) != root  # printed commands need --root
        folder = root / "katas"
        found_katas = [
            read_kata(c) for c in sorted(folder.iterdir()) if (c / KATA_MANIFEST).is_file()
        ]
        self.katas = sorted(found_katas, key=lambda k: (k.order, k.name))
        try:
            self.results = progress.load(root)
        except ValueError as exc:
            print(_(BAD_STORE).format(problem=exc), file=sys.stderr)
            self.results = {}

    def command(self, *args: str) -> str:
        if self.explicit:
            args = (*args, "--root", str(self.root))
        return katas_command(*args)

    def kata(self, name: str | None) -> Kata:
        for kata in self.katas:
            if kata.name == name:
                return kata
        names = ", ".join(k.name for k in self.katas)
        raise _Refused(_(NO_KATA).format(name=repr(name), names=names))

    def usable(self, name: str) -> Kata:
        kata = self.kata(name)
        if kata.problem is not None:
            raise _Refused(_(BROKEN_KATA).format(kata=kata.name, problem=kata.problem))
        return kata

    def result(self, kata: Kata) -> progress.KataResult | None:
        return self.results.get(kata.name)

    def done(self, kata: Kata) -> list[Task]:
        result = self.result(kata)
        if result is None or kata.problem is not None:
            return []
        return [task for task in kata.tasks if result.done(task.id)]

    def finished(self, kata: Kata) -> bool:
        return kata.problem is None and len(self.done(kata)) == len(kata.tasks)

    def score(self, kata: Kata) -> int:
        return sum(task.points for task in self.done(kata))

    def changed(self, kata: Kata) -> bool:
        result = self.result(kata)
        return result is not None and result.sha256 != progress.file_sha256(kata.stub)

    def next_kata(self) -> Kata | None:
        return next((k for k in self.katas if not self.finished(k)), None)

    def next_task(self, kata: Kata) -> Task:
        done = {task.id for task in self.done(kata)}
        return next((t for t in kata.tasks if t.id not in done), kata.tasks[0])

    def task_status(self, kata: Kata, task: Task) -> str:
        result = self.result(kata)
        entry = result.tasks.get(task.id) if result is not None else None
        if entry is None:
            text = _(STATUS_NOT_RUN)
        elif entry.status == progress.FAILING:
            text = _(STATUS_FAILING).format(why=entry.failing or "?")
        elif entry.status == progress.PARTIAL:
            text = _(STATUS_PARTIAL)
        else:
            text = _(MARK_DONE)
        if entry is not None:
            text = _(STATUS_WHEN).format(status=text, when=_when(entry.when))
        if self.changed(kata):
            text += _(STATUS_CHANGED)
        return text


def _learner(args: argparse.Namespace, extra: list[str]) -> int:
    try:
        learner = _Learner(args)
        verb: Callable[[_Learner, argparse.Namespace, list[str]], int] = _VERBS[args.verb]
        return verb(learner, args, extra)
    except _Refused as exc:
        print(f"katas {args.verb}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print()
        return 130
    except BrokenPipeError:  # `katas list | head`: the reader has gone, and so do we
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a file of the course or of .katas/ cannot be read or written
        print(f"katas {args.verb}: {exc}", file=sys.stderr)
        return 1


def _list(learner: _Learner, args: argparse.Namespace, extra: list[str]) -> int:
    progress.save_pristine(learner.root, (k for k in learner.katas if k.problem is None))
    upcoming = learner.next_kata()
    print(_(LIST_HEAD))
    print()
    total = total_max = 0
    for number, kata in enumerate(learner.katas, 1):
        result = learner.result(kata)
        notes: list[str] = []
        if kata.problem is not None:
            notes.append(_(NOTE_BROKEN).format(problem=kata.problem))
        elif result is None:
            notes.append(_(STATUS_NOT_RUN))
        else:
            notes.append(_(NOTE_LAST).format(when=_when(result.when)))
            changed = learner.changed(kata)
            for task in kata.tasks:
                entry = result.tasks.get(task.id)
                earlier = entry is not None and entry.sha256 != result.sha256 and not changed
                if entry is None:
                    note = _(NOTE_NOT_RUN_TASK).format(task=task.id)
                elif entry.status == progress.FAILING:
                    note = _(NOTE_FAILING).format(task=task.id, why=entry.failing or "?")
                elif entry.status == progress.PARTIAL:
                    note = _(NOTE_PARTIAL).format(task=task.id)
                elif earlier:
                    note = _(NOTE_DONE_EARLIER).format(task=task.id)
                else:
                    continue
                notes.append(note + (_(NOTE_EARLIER) if earlier else ""))
            if changed:
                notes.append(_(NOTE_CHANGED))
        mark = _(MARK_DONE) if learner.finished(kata) else MARK_NEXT if kata is upcoming else ""
        score, most = learner.score(kata), sum(t.points for t in kata.tasks)
        total, total_max = total + score, total_max + most
        tasks = _(LIST_TASKS).format(done=len(learner.done(kata)), total=len(kata.tasks))
        points = _(LIST_POINTS).format(score=f"{score:>3}", total=most)
        note = _(NOTE_SEPARATOR).join(notes)
        print(f"{_pad(mark, 4)} {number:>2}  {kata.name:<12} {tasks}  {points}  {note}".rstrip())
    blank = " " * _width(_(LIST_TASKS).format(done=0, total=0))  # under the tasks column
    points = _(LIST_POINTS).format(score=f"{total:>3}", total=total_max)
    print(f"{'':<4} {'':>2}  {_pad(_(TOTAL), 12)} {blank}  {points}")
    print()
    if upcoming is None:
        print(_(ALL_DONE).format(score=total, max=total_max, command=learner.command("verify")))
    else:
        task = learner.next_task(upcoming)
        command = learner.command("watch", upcoming.name)
        print(
            _(NEXT_LINE).format(
                kata=upcoming.name, task=task.id, title=_(task.title), command=command
            )
        )
    return 0


def _next(learner: _Learner, args: argparse.Namespace, extra: list[str]) -> int:
    from pytest_katas.loader import lesson

    progress.save_pristine(learner.root, (k for k in learner.katas if k.problem is None))
    kata = learner.next_kata()
    if kata is None:
        score = sum(learner.score(k) for k in learner.katas)
        most = sum(t.points for k in learner.katas for t in k.tasks)
        print(_(ALL_DONE).format(score=score, max=most, command=learner.command("verify")))
        return 0
    if kata.problem is not None:
        raise _Refused(_(BROKEN_KATA).format(kata=kata.name, problem=kata.problem))
    task = learner.next_task(kata)
    print(
        _(NEXT_HEAD).format(
            kata=kata.name,
            task=task.id,
            tasks=len(kata.tasks),
            title=_(task.title),
            points=task.points,
        )
    )
    print(_(NEXT_STATUS).format(status=learner.task_status(kata, task)))
    print(_(NEXT_LESSON).format(path=shown(lesson(kata))))  # README.zh-CN.md in Chinese
    print(_(NEXT_FILE).format(path=shown(kata.stub)))
    print()
    print(_(NEXT_WORK).format(command=learner.command("watch", kata.name)))
    print(_(NEXT_STUCK).format(command=learner.command("hint", kata.name, str(task.id))))
    return 0


def _watch(learner: _Learner, args: argparse.Namespace, extra: list[str]) -> int:
    from pytest_katas import watch

    if args.kata is None:
        upcoming = learner.next_kata() or (learner.katas[0] if learner.katas else None)
        if upcoming is None:  # pragma: no cover - _find_root found a kata
            raise _Refused(_(NO_KATA).format(name=repr(None), names=""))
        kata = learner.usable(upcoming.name)
    else:
        kata = learner.usable(args.kata)
    if args.runs is not None and args.runs < 0:
        raise _Refused(_(BAD_RUNS))
    progress.save_pristine(learner.root, [kata])
    return watch.watch(
        learner.root, kata, extra, args.runs, shown(kata.stub), command=learner.command
    )


def _task(learner: _Learner, kata: Kata, text: str) -> Task:
    for task in kata.tasks:
        if str(task.id) == text.strip():
            return task
    ids = ", ".join(str(t.id) for t in kata.tasks)
    raise _Refused(_(NO_TASK).format(kata=kata.name, task=repr(text), ids=ids))


def _hint(learner: _Learner, args: argparse.Namespace, extra: list[str]) -> int:
    kata = learner.usable(args.kata)
    task = _task(learner, kata, args.task)
    store = progress.HintStore(learner.root)
    again = learner.command("hint", kata.name, str(task.id))
    if args.how == "reset":
        store.reset(kata.name, task.id)
        where = store.shown_path
        print(_(HINT_RESET).format(kata=kata.name, task=task.id, path=where, command=again))
        return 0
    given = store.step(kata.name, task.id, len(task.hints), args.how or "next")
    print(_(HINT_HEAD).format(kata=kata.name, task=task.id, title=_(task.title)))
    for index in given:
        print()
        print(_(HINT_LINE).format(number=index + 1, count=len(task.hints)))
        print(_fill(_(task.hints[index])))
    print()
    if given[-1] + 1 < len(task.hints):
        print(_(HINT_MORE).format(next=again))
    else:
        print(_(HINT_LAST).format(command=learner.command("solution", kata.name)))
    reset = learner.command("hint", kata.name, str(task.id), "--reset")
    print(_(HINT_PLACE).format(path=store.shown_path, command=reset))
    print(_(HINT_THEN).format(command=learner.command("watch", kata.name)))
    return 0


def _reset(learner: _Learner, args: argparse.Namespace, extra: list[str]) -> int:
    kata = learner.kata(args.kata)
    watch_it = learner.command("watch", kata.name)
    if args.hints:
        progress.HintStore(learner.root).reset(kata.name)
        hint = learner.command("hint", kata.name, "1")
        print(_(RESET_HINTS).format(kata=kata.name, command=hint))
        return 0
    path = shown(kata.stub)
    pristine = progress.pristine_stub(learner.root, kata)
    if pristine is None:
        why = _(RESET_NO_STUB).format(kata=kata.name, path=path, store=progress.STORE)
        print(f"katas reset: {why}", file=sys.stderr)
        return 1
    content, source = pristine
    mine = kata.stub.read_bytes() if kata.stub.is_file() else None
    if mine == content:
        print(_(RESET_SAME).format(path=path, source=source, command=watch_it))
        return 0
    if not _ask(_(RESET_ASK).format(kata=kata.name, path=path), args.yes):
        print(_(DECLINED))
        return 1
    saved = progress.backup(learner.root, kata) if mine is not None else None
    kata.stub.write_bytes(content)
    progress.forget(learner.root, kata.name)
    print(_(RESET_DONE).format(path=path, source=source))
    if saved is not None:
        print(_(RESET_BACKUP).format(backup=shown(saved)))
    print(_(RESET_FORGOT).format(command=watch_it))
    return 0


def _solution(learner: _Learner, args: argparse.Namespace, extra: list[str]) -> int:
    kata = learner.usable(args.kata)
    reference = learner.root / "solutions" / kata.name / f"{kata.name}.py"
    if not reference.is_file():
        raise _Refused(_(SOLUTION_NONE).format(path=shown(reference)))
    if not learner.finished(kata):
        question = _(SOLUTION_ASK).format(
            kata=kata.name, done=len(learner.done(kata)), tasks=len(kata.tasks)
        )
        if not _ask(question, args.yes):
            print(_(DECLINED))
            return 1
    print(_(SOLUTION_HEAD).format(path=shown(reference), kata=kata.name))
    print()
    print(reference.read_text(encoding="utf-8").rstrip("\n"))
    print()
    diff = f"diff -u {shlex.quote(shown(kata.stub))} {shlex.quote(shown(reference))}"
    print(_(SOLUTION_COMPARE).format(command=diff))
    print(_(SOLUTION_NEXT).format(command=learner.command("next")))
    return 0


def _verify(learner: _Learner, args: argparse.Namespace, extra: list[str]) -> int:
    command = [sys.executable, "-m", "pytest", "katas", *extra]
    code = subprocess.run(command, cwd=learner.root, check=False).returncode
    try:
        learner.results = progress.load(learner.root)
    except ValueError as exc:
        print(_(BAD_STORE).format(problem=exc), file=sys.stderr)
    print()
    if code == 0 and learner.next_kata() is None:
        print(_(VERIFY_ALL).format(command=learner.command("list")))
    else:
        print(_(VERIFY_NEXT).format(command=learner.command("next")))
    return code


_VERBS: Final = {
    "list": _list,
    "next": _next,
    "watch": _watch,
    "hint": _hint,
    "reset": _reset,
    "solution": _solution,
    "verify": _verify,
}


if __name__ == "__main__":
    sys.exit(main())
