"""``katas watch``: run a kata's tests, then again each time the learner saves its file.

Each run is this environment's pytest (``sys.executable -m pytest katas/<kata>``) in the
repository root. Its own output is kept short (``-q --tb=no -rN``: the progress dots and
the kata board); the first failure is then shown in full, read from a JUnit XML file the
run writes to a temporary folder. The file is watched with ``watchfiles`` (inotify on
Linux): no polling loop of ours. After the watcher is up it also compares the file's
sha256 with the one of the last run, so a save made while a run was going (or just before
the watcher started) is never missed.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, TextIO

from pytest_katas import progress
from pytest_katas.catalog import Kata
from pytest_katas.commands import katas_command
from pytest_katas.messages import N_, _

__all__ = ["first_failure", "watch"]

CLEAR: Final = "\033[2J\033[H"
WAKE_MS: Final = 1000  # how often the watcher also checks the file's hash

# What the learner reads, in English (the msgids): translated with _() where it is shown.
HEADER: Final = N_("katas watch: {kata}, run {run} at {time}")
FIRST_FAILURE: Final = N_("First failure: {test}{task}")
FAILURE_TASK: Final = N_(" (task {task})")
GREEN: Final = N_("{kata} is done: every task passes. Next: {next}")
NOT_GREEN: Final = N_("Stuck on task {task}? {hint}")
PYTEST_TROUBLE: Final = N_("pytest could not run the tests (exit code {code}): see above.")
WATCHING: Final = N_("Watching {path}: save it to run the tests again. Ctrl-C to stop.")
GOODBYE: Final = N_("Stopped watching {kata}. Next: {next}")

Command = Callable[..., str]


def _pytest(root: Path, kata: Kata, junit: Path, extra: Sequence[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        f"katas/{kata.name}",
        "-q",
        "--tb=no",
        "-rN",
        f"--junitxml={junit}",
        "-o",
        "junit_logging=no",
        "-o",
        "junit_family=xunit1",  # the test's kata properties are outside xunit2's schema
        *extra,
    ]


def first_failure(junit: Path) -> tuple[str, str] | None:
    """The first failed test of a JUnit XML file, in the order they ran: name and text."""
    try:
        tree = ET.parse(junit)  # noqa: S314 - our own pytest run wrote it just now
    except (OSError, ET.ParseError):
        return None
    for case in tree.getroot().iter("testcase"):
        for tag in ("failure", "error"):
            node = case.find(tag)
            if node is not None:
                text = (node.text or "").strip() or node.get("message", "")
                return case.get("name", "?"), text
    return None


def _green(root: Path, kata: Kata) -> bool:
    try:
        result = progress.load(root).get(kata.name)
    except ValueError:
        return False
    return result is not None and all(result.done(task.id) for task in kata.tasks)


def _first_open_task(root: Path, kata: Kata) -> int:
    try:
        result = progress.load(root).get(kata.name)
    except ValueError:
        result = None
    for task in kata.tasks:
        if result is None or not result.done(task.id):
            return task.id
    return kata.tasks[0].id


def run_once(
    root: Path,
    kata: Kata,
    number: int,
    extra: Sequence[str],
    scratch: Path,
    out: TextIO,
    command: Command = katas_command,
) -> None:
    """One run: clear the screen, run pytest, show the first failure and the next step."""
    if out.isatty():
        out.write(CLEAR)
    else:
        out.write("\n" + "=" * 78 + "\n")
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    out.write(_(HEADER).format(kata=kata.name, run=number, time=stamp) + "\n\n")
    out.flush()
    junit = scratch / f"run-{number}.xml"
    code = subprocess.run(_pytest(root, kata, junit, extra), cwd=root, check=False).returncode
    out.flush()
    failure = first_failure(junit)
    if code == 0 and _green(root, kata):
        out.write("\n" + _(GREEN).format(kata=kata.name, next=command("next")) + "\n")
    elif failure is not None:
        name, text = failure
        task = kata.task_of(name)
        where = _(FAILURE_TASK).format(task=task.id) if task is not None else ""
        out.write("\n" + _(FIRST_FAILURE).format(test=name, task=where) + "\n")
        out.write(text + "\n\n")
        task_id = task.id if task is not None else _first_open_task(root, kata)
        hint = command("hint", kata.name, str(task_id))
        out.write(_(NOT_GREEN).format(task=task_id, hint=hint) + "\n")
    elif code not in (0, 1):
        out.write("\n" + _(PYTEST_TROUBLE).format(code=code) + "\n")
    out.flush()


def watch(
    root: Path,
    kata: Kata,
    extra: Sequence[str],
    runs: int | None,
    shown: str,
    out: TextIO = sys.stdout,
    command: Command = katas_command,
) -> int:
    """Run ``kata`` now and after every save of its file; stop after ``runs`` reruns (None:
    until Ctrl-C). ``shown`` is the file's path as the learner knows it."""
    import watchfiles

    stub = os.path.realpath(kata.stub)

    def only_the_file(change: watchfiles.Change, path: str) -> bool:
        return os.path.realpath(path) == stub

    scratch = Path(tempfile.mkdtemp(prefix="katas-watch-"))
    number = 0
    try:
        last = progress.file_sha256(kata.stub)
        number += 1
        run_once(root, kata, number, extra, scratch, out, command)
        out.write(_(WATCHING).format(path=shown) + "\n")
        out.flush()
        for changes in (
            ()
            if runs == 0
            else watchfiles.watch(
                kata.directory,
                watch_filter=only_the_file,
                recursive=False,
                rust_timeout=WAKE_MS,
                yield_on_timeout=True,
            )
        ):
            now = progress.file_sha256(kata.stub)
            if not changes and now == last:
                continue
            last = now
            number += 1
            run_once(root, kata, number, extra, scratch, out, command)
            out.write(_(WATCHING).format(path=shown) + "\n")
            out.flush()
            if runs is not None and number - 1 >= runs:
                break
    except KeyboardInterrupt:
        pass  # the goodbye below; pytest, if it was running, got the Ctrl-C too
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(scratch)
    out.write("\n" + _(GOODBYE).format(kata=kata.name, next=command("list")) + "\n")
    out.flush()
    return 0
