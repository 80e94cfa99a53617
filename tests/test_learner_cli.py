"""The learner's ``katas`` command: list, next, watch, hint, reset, solution and verify, run
as a learner would, in a copy of this repository's katas/ and solutions/ (a git checkout of
its own, for ``katas reset``)."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import ROOT, ctrl_c_as_in_a_terminal

# Nothing here depends on the Python version: run on one of them (tox.ini).
pytestmark = pytest.mark.one_python

TIMEOUT = 180  # seconds for one command; generous, for a busy machine
QUIET = "-p no:randomly -p no:run-parallel -p no:cacheprovider -p no:xdist"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_KATA_")}
    env["PYTEST_ADDOPTS"] = QUIET
    env.pop("PYTEST_XDIST_WORKER", None)
    return env


def _git(course: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=learner@example.com", "-c", "user.name=learner", *args],
        cwd=course,
        check=True,
        capture_output=True,
        timeout=TIMEOUT,
    )


@pytest.fixture
def course(tmp_path: Path) -> Path:
    """A fresh clone, as far as the learner's command can tell."""
    course = tmp_path / "course"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("katas", "solutions"):
        shutil.copytree(ROOT / name, course / name, ignore=ignore)
    shutil.copy(ROOT / "tox.ini", course / "tox.ini")
    # The plugin may be edited while the suite runs: the copy's manifest matches it now.
    subprocess.run(
        [sys.executable, "-m", "pytest_katas.manifest", str(course)],
        check=True,
        capture_output=True,
        timeout=TIMEOUT,
    )
    _git(course, "init", "-q")
    _git(course, "add", "-A")
    _git(course, "commit", "-q", "-m", "the course")
    return course


def katas(
    course: Path, *args: str, stdin: str = "", cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_katas.cli", *args],
        cwd=cwd or course,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=_env(),
    )


def run_pytest(course: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args],
        cwd=course,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=_env(),
    )


def _rows(output: str) -> dict[str, str]:
    """``katas list``'s row of each kata, by name."""
    rows = {}
    for line in output.splitlines():
        words = line.split()
        for name in ("pipe", "manager", "pool", "threads", "echo_server"):
            if name in words[:3]:
                rows[name] = line
    return rows


def _progress(course: Path) -> dict:
    return json.loads((course / ".katas" / "progress.json").read_text())


def _solve(course: Path, kata: str) -> None:
    shutil.copy(course / "solutions" / kata / f"{kata}.py", course / "katas" / kata / f"{kata}.py")


# -- list and next --------------------------------------------------------------------------


def test_list_before_any_run_shows_every_kata_in_order_and_the_first_as_next(
    course: Path,
) -> None:
    done = katas(course, "list")
    assert done.returncode == 0, done.stderr
    rows = _rows(done.stdout)
    assert list(rows) == ["pipe", "manager", "pool", "threads", "echo_server"]
    assert all("not run yet" in row for row in rows.values())
    assert rows["pipe"].startswith("->")
    assert "0/50 points" in done.stdout
    assert "Next: pipe, task 1" in done.stdout
    assert "watch pipe" in done.stdout
    assert not (course / ".katas" / "progress.json").exists()  # nothing was run


def test_list_after_a_run_then_after_an_edit(course: Path) -> None:
    _solve(course, "pipe")
    ran = run_pytest(course, "katas/pipe", "-q")
    assert ran.returncode == 0, ran.stdout[-3000:]
    data = _progress(course)["katas"]["pipe"]
    assert (data["score"], data["max_score"], data["partial"]) == (10, 10, False)
    assert {t["status"] for t in data["tasks"].values()} == {"done"}
    assert len(data["sha256"]) == 64

    rows = _rows(katas(course, "list").stdout)
    assert rows["pipe"].startswith("done")
    assert "2/2 tasks" in rows["pipe"] and "10/10 points" in rows["pipe"]
    assert "changed since last run" not in rows["pipe"]
    assert rows["manager"].startswith("->")

    with open(course / "katas" / "pipe" / "pipe.py", "a") as handle:
        handle.write("\n# an edit after the run\n")
    listed = katas(course, "list").stdout
    assert "changed since last run" in _rows(listed)["pipe"]
    nxt = katas(course, "next")
    assert nxt.returncode == 0
    assert "manager" in nxt.stdout and "katas/manager/README.md" in nxt.stdout
    assert "watch manager" in nxt.stdout and "hint manager 1" in nxt.stdout


def test_a_partial_run_updates_only_the_tasks_it_ran(course: Path) -> None:
    ran = run_pytest(course, "katas/pipe", "-q", "-k", "fan_out_with_a_single_consumer")
    assert ran.returncode == 1
    _solve(course, "pipe")
    ran = run_pytest(course, "katas/pipe", "-q", "-k", "relay")
    assert ran.returncode == 0, ran.stdout[-3000:]
    data = _progress(course)["katas"]["pipe"]
    assert data["partial"] is True
    assert data["tasks"]["1"]["status"] == "done"
    assert data["tasks"]["2"]["status"] == "failing"  # from the first run, kept
    assert data["tasks"]["2"]["failing"] == "TODO"
    assert data["tasks"]["2"]["sha256"] != data["sha256"]
    row = _rows(katas(course, "list").stdout)["pipe"]
    assert "1/2 tasks" in row and "4/10 points" in row
    assert "task 2 failing (TODO) on an earlier version of your file" in row


def test_runs_of_the_reference_solution_are_not_recorded(course: Path) -> None:
    ran = run_pytest(course, "katas/pipe", "-q", "-k", "relay", "--kata-target=solutions")
    assert ran.returncode == 0, ran.stdout[-3000:]
    assert not (course / ".katas" / "progress.json").exists()


# -- hints ----------------------------------------------------------------------------------


def _hint_numbers(output: str) -> list[str]:
    return [line.split(":")[0] for line in output.splitlines() if line.startswith("hint ")]


def test_hints_one_at_a_time_back_again_all_and_reset(course: Path) -> None:
    first = katas(course, "hint", "pipe", "2")
    assert first.returncode == 0, first.stderr
    assert _hint_numbers(first.stdout) == ["hint 1 of 3"]
    assert ".katas/hints.json" in first.stdout and "--reset" in first.stdout
    assert _hint_numbers(katas(course, "hint", "pipe", "2").stdout) == ["hint 2 of 3"]
    assert _hint_numbers(katas(course, "hint", "pipe", "2", "--again").stdout) == ["hint 2 of 3"]
    assert _hint_numbers(katas(course, "hint", "pipe", "2", "--back").stdout) == ["hint 1 of 3"]
    assert _hint_numbers(katas(course, "hint", "pipe", "2", "--again").stdout) == ["hint 1 of 3"]
    assert _hint_numbers(katas(course, "hint", "pipe", "2").stdout) == ["hint 2 of 3"]
    every = katas(course, "hint", "pipe", "2", "--all")
    assert _hint_numbers(every.stdout) == ["hint 1 of 3", "hint 2 of 3", "hint 3 of 3"]
    assert "last hint" in every.stdout and "solution pipe" in every.stdout
    hints = json.loads((course / ".katas" / "hints.json").read_text())
    assert hints == {"pipe": {"2": 3}}
    assert katas(course, "hint", "pipe", "2", "--reset").returncode == 0
    assert json.loads((course / ".katas" / "hints.json").read_text()) == {}
    # pytest's --kata-hint keeps its place in the same store
    shown = run_pytest(course, "katas/pipe", "--kata-hint=2")
    assert "hint 1 of 3" in shown.stdout and ".katas/hints.json" in shown.stdout
    assert _hint_numbers(katas(course, "hint", "pipe", "2").stdout) == ["hint 2 of 3"]
    assert "hint 3 of 3" in run_pytest(course, "katas/pipe", "--kata-hint=2").stdout
    # katas reset --hints starts every task of the kata over
    assert katas(course, "reset", "pipe", "--hints").returncode == 0
    assert _hint_numbers(katas(course, "hint", "pipe", "2").stdout) == ["hint 1 of 3"]


# -- reset and solution ---------------------------------------------------------------------


def test_reset_asks_then_puts_the_stub_back_and_keeps_a_backup(course: Path) -> None:
    stub = course / "katas" / "pipe" / "pipe.py"
    committed = stub.read_bytes()
    _solve(course, "pipe")
    mine = stub.read_bytes()
    assert katas(course, "hint", "pipe", "1").returncode == 0

    declined = katas(course, "reset", "pipe", stdin="n\n")
    assert declined.returncode == 1 and "[y/N]" in declined.stdout
    assert stub.read_bytes() == mine

    done = katas(course, "reset", "pipe", "--yes")
    assert done.returncode == 0, done.stderr
    assert stub.read_bytes() == committed
    backups = list((course / ".katas" / "backup").glob("pipe-*.py"))
    assert len(backups) == 1 and backups[0].read_bytes() == mine
    assert str(backups[0].relative_to(course)) in done.stdout
    assert "watch pipe" in done.stdout
    assert "pipe" not in json.loads((course / ".katas" / "hints.json").read_text())

    again = katas(course, "reset", "pipe", "--yes")
    assert again.returncode == 0 and "already the stub" in again.stdout


def test_reset_without_git_uses_the_copy_kept_or_refuses(course: Path) -> None:
    stub = course / "katas" / "pipe" / "pipe.py"
    committed = stub.read_bytes()
    assert katas(course, "list").returncode == 0  # keeps the committed stubs in .katas/stubs
    shutil.rmtree(course / ".git")
    _solve(course, "pipe")
    done = katas(course, "reset", "pipe", "--yes")
    assert done.returncode == 0, done.stderr
    assert stub.read_bytes() == committed and ".katas/stubs/pipe.py" in done.stdout

    _solve(course, "pipe")
    shutil.rmtree(course / ".katas" / "stubs")
    refused = katas(course, "reset", "pipe", "--yes")
    assert refused.returncode == 1
    assert "cannot reset pipe" in refused.stderr and "Traceback" not in refused.stderr
    assert stub.read_bytes() != committed


def test_solution_asks_first_unless_the_kata_is_done(course: Path) -> None:
    reference = (course / "solutions" / "pipe" / "pipe.py").read_text()
    declined = katas(course, "solution", "pipe", stdin="\n")
    assert declined.returncode == 1 and "[y/N]" in declined.stdout
    assert reference.strip() not in declined.stdout
    shown = katas(course, "solution", "pipe", stdin="y\n")
    assert shown.returncode == 0 and reference.strip() in shown.stdout
    assert "diff -u" in shown.stdout
    _solve(course, "pipe")
    assert run_pytest(course, "katas/pipe", "-q").returncode == 0
    done = katas(course, "solution", "pipe")  # no question for a finished kata
    assert done.returncode == 0 and "[y/N]" not in done.stdout
    assert reference.strip() in done.stdout


# -- verify ---------------------------------------------------------------------------------


def test_verify_runs_every_kata_and_shows_the_board(course: Path) -> None:
    done = katas(course, "verify", "--", "-k", "no_items_returns_an_empty_list")
    assert done.returncode == 1, done.stdout[-3000:]
    assert "kata board" in done.stdout and "Next:" in done.stdout


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("hint", "nosuch", "1"), "there is no kata 'nosuch'; the katas are: pipe, manager"),
        (("reset", "nosuch", "--yes"), "there is no kata 'nosuch'"),
        (("solution", "nosuch"), "there is no kata 'nosuch'"),
        (("watch", "nosuch"), "there is no kata 'nosuch'"),
        (("hint", "pipe", "9"), "the pipe kata has no task '9'; its tasks are 1, 2"),
        (("hint", "pipe", "two"), "the pipe kata has no task 'two'"),
        (("list", "--root", "/"), "--root /: there is no katas/ folder"),
        (("watch", "pipe", "--runs", "-1"), "--runs"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    course: Path, args: tuple[str, ...], message: str
) -> None:
    done = katas(course, *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_the_course_is_found_from_below_or_with_root(course: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    lost = katas(course, "list", cwd=elsewhere)
    assert lost.returncode == 2 and "no katas/ folder" in lost.stderr
    assert len(lost.stderr.strip().splitlines()) == 1
    found = katas(course, "list", "--root", str(course), cwd=elsewhere)
    assert found.returncode == 0 and "--root" in found.stdout  # the next step works there too
    below = katas(course, "next", cwd=course / "katas" / "pipe")
    assert below.returncode == 0 and "pipe" in below.stdout


def test_paths_inside_a_folder_named_with_two_dots_are_shown_as_typed(
    course: Path, tmp_path: Path
) -> None:
    """``..course`` is below the current folder, not above it: the paths stay relative."""
    dotted = course.rename(tmp_path / "..course")
    nxt = katas(dotted, "next", "--root", "..course", cwd=tmp_path)
    assert nxt.returncode == 0, nxt.stderr
    shown = {
        line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip()
        for line in nxt.stdout.splitlines()
        if line.startswith("  ")
    }
    assert shown["lesson"] == os.path.join("..course", "katas", "pipe", "README.md")
    assert shown["your file"] == os.path.join("..course", "katas", "pipe", "pipe.py")


# -- watch ----------------------------------------------------------------------------------


class _Lines:
    """A process's output, line by line, read in a thread so a wait can time out."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        assert process.stdout is not None
        stream = process.stdout

        def pump() -> None:
            for line in stream:
                self.lines.put(line)
            self.lines.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def until(self, marker: str, count: int = 1, timeout: float = TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while sum(marker in line for line in self.seen) < count:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(left, 0.01))
            except queue.Empty:
                line = None
            if line is None:
                text = "".join(self.seen)
                raise AssertionError(f"no {marker!r} (x{count}) in time:\n{text[-3000:]}")
            self.seen.append(line)
        return "".join(self.seen)


def test_watch_runs_then_reruns_on_save_and_ctrl_c_ends_it(course: Path) -> None:
    with ctrl_c_as_in_a_terminal():
        process = subprocess.Popen(
            [sys.executable, "-m", "pytest_katas.cli", "watch", "pipe"],
            cwd=course,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=_env(),
            start_new_session=True,  # its own process group, ended below whatever happens
        )
    try:
        lines = _Lines(process)
        first = lines.until("Ctrl-C to stop")
        assert "katas watch: pipe, run 1" in first
        assert "kata board" in first
        assert "First failure: test_relay_returns_every_item_in_order (task 1)" in first
        assert "TODO: pipe.relay is not implemented yet" in first
        assert "hint pipe 1" in first
        _solve(course, "pipe")  # the learner saves a working file
        second = lines.until("Ctrl-C to stop", count=2)
        assert "katas watch: pipe, run 2" in second
        rerun = second.split("run 2", 1)[1]
        assert "pipe is done" in rerun and " next" in rerun
        assert "First failure" not in rerun
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C
        assert process.wait(timeout=TIMEOUT) == 0
        assert "Stopped watching pipe" in lines.until("Stopped watching")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=TIMEOUT)


def test_watch_stops_by_itself_after_the_runs_asked(course: Path) -> None:
    done = katas(course, "watch", "--runs", "0", "--", "-k", "no_items_returns_an_empty_list")
    assert done.returncode == 0
    assert "katas watch: pipe, run 1" in done.stdout  # the first unfinished kata
    assert "Stopped watching pipe" in done.stdout
