"""Small pieces of the plugin, checked directly in this process: the tamper manifest, the
commands printed for a learner, the trace questions kata tests ask, the interleaving and
steps tables, what a crash inside recv() means, and what the stacks of a stuck test say."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from pytest_katas import (
    any_start_method,
    commands,
    crashes,
    findings,
    fresh_start_method,
    leaks,
    manifest,
    observe,
    stacks,
    start_method,
    tables,
    waits,
)
from pytest_katas.channel import ENV_RUNDIR, ProcessInfo, Raised
from pytest_katas.history import EndCopy, Event, History, ProcessView, Site
from pytest_katas.verdict import Kind, Outcome

# Nothing here depends on the Python version: run on one of them (tox.ini).
pytestmark = pytest.mark.one_python

MANIFEST_NAME = "katas/manifest.json"


# -- the tamper manifest ---------------------------------------------------------------------


def _fake_repository(root: Path) -> Path:
    """A repository root with two katas, each with the files the manifest protects."""
    for kata in ("alpha", "beta"):
        folder = root / "katas" / kata
        folder.mkdir(parents=True)
        (folder / f"test_{kata}.py").write_text(f"def test_{kata}():\n    pass\n")
        (folder / "kata.toml").write_text(f'title = "{kata}"\n')
        (folder / f"{kata}.py").write_text("# the learner's file\n")
    (root / "katas" / "alpha" / "conftest.py").write_text("# alpha's fixtures\n")
    return root


def _recorded(root: Path) -> dict:
    return json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"))


def _record(root: Path, data: dict) -> None:
    (root / MANIFEST_NAME).write_text(json.dumps(data), encoding="utf-8")


def test_a_missing_manifest_is_reported_as_missing(tmp_path):
    root = _fake_repository(tmp_path)
    assert manifest.changed_files(root) == [
        f"{MANIFEST_NAME} (missing: grading cannot tell edited tests apart)"
    ]


def test_a_manifest_that_is_not_json_is_reported_as_such(tmp_path):
    root = _fake_repository(tmp_path)
    (root / MANIFEST_NAME).write_text('{"files": {', encoding="utf-8")
    assert manifest.changed_files(root) == [f"{MANIFEST_NAME} (not valid JSON)"]


def test_a_freshly_written_manifest_protects_tests_conftests_and_kata_tomls_only(tmp_path):
    root = _fake_repository(tmp_path)
    manifest.write(root)
    assert sorted(_recorded(root)["files"]) == [
        "katas/alpha/conftest.py",
        "katas/alpha/kata.toml",
        "katas/alpha/test_alpha.py",
        "katas/beta/kata.toml",
        "katas/beta/test_beta.py",
    ]
    # The learner's own file is theirs to edit: never a change.
    (root / "katas" / "alpha" / "alpha.py").write_text("def solve():\n    return 42\n")
    assert manifest.changed_files(root) == []


def test_crlf_line_endings_alone_are_not_an_edit(tmp_path):
    root = _fake_repository(tmp_path)
    manifest.write(root)
    test_file = root / "katas" / "beta" / "test_beta.py"
    test_file.write_bytes(test_file.read_bytes().replace(b"\n", b"\r\n"))
    assert manifest.changed_files(root) == []


def test_another_plugin_version_is_reported_with_both_versions(tmp_path):
    root = _fake_repository(tmp_path)
    manifest.write(root)
    data = _recorded(root)
    data["plugin_version"] = "0.0.1-old"
    _record(root, data)
    import pytest_katas

    assert manifest.changed_files(root) == [
        f"the plugin version ({pytest_katas.__version__}, manifest says 0.0.1-old)"
    ]


def test_deleted_added_and_edited_kata_files_are_each_named_in_order(tmp_path):
    root = _fake_repository(tmp_path)
    manifest.write(root)
    (root / "katas" / "alpha" / "conftest.py").unlink()
    (root / "katas" / "beta" / "conftest.py").write_text("# new fixtures\n")
    (root / "katas" / "beta" / "test_beta.py").write_text("def test_beta():\n    assert 1\n")
    assert manifest.changed_files(root) == [
        "katas/alpha/conftest.py (deleted)",
        "katas/beta/conftest.py (added)",
        "katas/beta/test_beta.py (edited)",
    ]


def test_plugin_sources_that_differ_from_the_manifest_are_named(tmp_path):
    root = _fake_repository(tmp_path)
    manifest.write(root)
    data = _recorded(root)
    plugin = data["plugin"]
    assert "pytest_katas/manifest.py" in plugin and "pytest_katas/tables.py" in plugin
    plugin["pytest_katas/manifest.py"] = "0" * 64  # as if manifest.py had been edited since
    del plugin["pytest_katas/tables.py"]  # as if tables.py were new
    plugin["pytest_katas/gone.py"] = "1" * 64  # as if gone.py had been removed
    _record(root, data)
    assert manifest.changed_files(root) == [
        "pytest_katas/gone.py (deleted)",
        "pytest_katas/manifest.py (edited)",
        "pytest_katas/tables.py (added)",
    ]


def test_manifest_check_names_every_stale_file_and_exits_1(tmp_path, capsys):
    root = _fake_repository(tmp_path)
    manifest.write(root)
    (root / "katas" / "alpha" / "kata.toml").write_text('title = "changed"\n')
    (root / "katas" / "beta" / "kata.toml").unlink()
    assert manifest.main(["--check", str(root)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "stale: katas/alpha/kata.toml (edited)",
        "stale: katas/beta/kata.toml (deleted)",
        "Refresh it with: python -m pytest_katas.manifest",
    ]


def test_manifest_check_of_a_fresh_manifest_prints_nothing_and_exits_0(tmp_path, capsys):
    root = _fake_repository(tmp_path)
    manifest.write(root)
    assert manifest.main(["--check", str(root)]) == 0
    assert capsys.readouterr().out == ""


def test_manifest_main_without_check_rewrites_a_stale_manifest(tmp_path, capsys):
    root = _fake_repository(tmp_path)
    (root / MANIFEST_NAME).write_text("not json", encoding="utf-8")
    assert manifest.main([str(root)]) == 0
    assert capsys.readouterr().out == f"wrote {root.resolve() / MANIFEST_NAME}\n"
    assert manifest.changed_files(root) == []


# -- the commands printed for a learner ------------------------------------------------------


@pytest.fixture
def venv(tmp_path, monkeypatch):
    """A fake environment ``tmp/venv/bin`` whose python is ``sys.executable``, with a
    ``katas`` script, and an empty PATH: each test says what the shell finds."""
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text("")
    for name in ("katas", "pytest"):
        (bin_dir / name).write_text("#!/bin/sh\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    return bin_dir


def _other_bin(tmp_path: Path) -> Path:
    other = tmp_path / "other" / "bin"
    other.mkdir(parents=True)
    return other


def test_script_is_the_bare_name_when_the_shell_finds_this_environments_script(
    venv, tmp_path, monkeypatch
):
    monkeypatch.setenv("PATH", str(venv))
    monkeypatch.chdir(tmp_path)
    assert commands.script("katas") == "katas"
    assert commands.pytest_command("-k", "a b") == "pytest -k 'a b'"
    assert commands.katas_command("hint", "pipe") == "katas hint pipe"


def test_script_is_the_bare_name_when_path_finds_a_link_to_this_environments_script(
    venv, tmp_path, monkeypatch
):
    other = _other_bin(tmp_path)
    (other / "katas").symlink_to(venv / "katas")
    monkeypatch.setenv("PATH", str(other))
    assert commands.script("katas") == "katas"


def test_script_is_its_relative_path_when_path_finds_another_environments_script(
    venv, tmp_path, monkeypatch
):
    other = _other_bin(tmp_path)
    (other / "katas").write_text("#!/bin/sh\n")
    (other / "katas").chmod(0o755)
    monkeypatch.setenv("PATH", os.pathsep.join([str(other), str(venv)]))
    monkeypatch.chdir(tmp_path)
    assert commands.script("katas") == os.path.join("venv", "bin", "katas")
    assert commands.argv("katas") == [os.path.join("venv", "bin", "katas")]


def test_script_in_the_current_folder_is_spelled_dot_slash(venv, monkeypatch):
    monkeypatch.chdir(venv)
    assert commands.script("katas") == f".{os.sep}katas"


def test_script_outside_the_current_folder_is_its_absolute_path(venv, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert commands.script("katas") == str(venv / "katas")


def test_without_a_script_the_command_runs_this_python_with_dash_m(tmp_path, monkeypatch):
    bin_dir = tmp_path / "my env" / "bin"
    bin_dir.mkdir(parents=True)
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    monkeypatch.chdir(tmp_path)
    python = os.path.join("my env", "bin", "python")
    assert commands.script("katas") == f"'{python}' -m pytest_katas.cli"
    assert commands.script("pytest") == f"'{python}' -m pytest"
    assert commands.script("other") == f"'{python}' -m other"
    assert commands.argv("katas") == [python, "-m", "pytest_katas.cli"]
    assert commands.pytest_command("katas/pipe") == f"'{python}' -m pytest katas/pipe"


def test_shown_is_relative_inside_the_current_folder_and_absolute_outside(tmp_path, monkeypatch):
    inside = tmp_path / "here"
    (inside / "sub").mkdir(parents=True)
    monkeypatch.chdir(inside)
    assert commands.shown(inside / "sub" / "file") == os.path.join("sub", "file")
    outside = tmp_path / "there" / "file"
    assert commands.shown(outside) == str(outside)
    # A folder whose name starts with two dots is still inside.
    assert commands.shown(inside / "..venv" / "katas") == os.path.join("..venv", "katas")


# -- what a kata test asks the trace ---------------------------------------------------------

FILE = "/katas/pipe/pipe.py"
TEST, CHILD, SPAWNED = 100, 200, 300


def _event(order, pid, op, obj="", extra=None, line=None, ts=None):
    site = Site(FILE, line) if line is not None else None
    return Event(order, pid, pid, pid, order if ts is None else ts, op, obj, site, extra)


def _history() -> History:
    """The test makes a pipe (line 10) and starts a child (line 12) that inherits both ends;
    the test closes its write end at line 14; a spawned child receives the read end; the
    forked child receives one message, hits EOF, and ends at time 8."""
    events = [
        _event(0, TEST, "pipe", "p1", ("r1", "w1", False), line=10),
        _event(1, TEST, "pstart", "token-1", line=12),
        _event(2, CHILD, "pbegin", "token-1"),
        _event(3, CHILD, "inherit", "r1", line=20),
        _event(4, CHILD, "inherit", "w1", line=20),
        _event(5, TEST, "close", "w1", line=14),
        _event(6, CHILD, "recv", "r1", (10, 6, None), line=22),
        _event(7, CHILD, "recv", "r1", (0, 7, "EOF"), line=22),
        _event(8, CHILD, "pend", "token-1"),
        _event(9, SPAWNED, "received", "r1", line=30),
    ]
    processes = {
        TEST: ProcessView(TEST, "MainProcess", "test"),
        CHILD: ProcessView(CHILD, "consumer", "worker"),
        SPAWNED: ProcessView(SPAWNED, "SyncManager-1", "manager"),
    }
    return History(events, processes)


def test_observed_tells_a_copy_made_and_closed_by_the_test():
    seen = observe.Observed(_history(), str)
    made = next(c for c in seen.history.copies["w1"] if c.pid == TEST)
    assert seen.story(made) == "test process (made it at line 10, closed it at line 14)"


def test_observed_tells_an_inherited_copy_by_the_line_that_started_its_process():
    seen = observe.Observed(_history(), str)
    inherited = next(c for c in seen.history.copies["w1"] if c.pid == CHILD)
    assert seen.story(inherited) == (
        "consumer (inherited it when it was started at line 12, never closed it)"
    )


def test_observed_tells_a_copy_without_a_known_line_plainly():
    seen = observe.Observed(_history(), str)
    # Inherited by a process whose start nobody saw: the line it got the copy at instead.
    inherited = EndCopy("w1", SPAWNED, "inherited", Site(FILE, 31))
    assert seen.story(inherited) == "SyncManager-1 (inherited it at line 31, never closed it)"
    received = EndCopy("r1", 999, "received", None)
    assert seen.story(received) == "pid 999 (received it, never closed it)"


def test_observed_names_processes_and_lines():
    seen = observe.Observed(_history(), str)
    assert [seen.name(TEST), seen.name(CHILD), seen.name(4242)] == [
        "test process",
        "consumer",
        "pid 4242",
    ]
    assert seen.line(Site(FILE, 7)) == "line 7"
    assert seen.line(None) == "a line outside your file"


def test_observed_answers_which_processes_pipes_and_messages():
    seen = observe.Observed(_history(), str)
    assert seen.test_process().pid == TEST
    assert [p.pid for p in seen.children()] == [CHILD]  # the manager's server is not learner's
    assert [p.id for p in seen.pipes()] == ["p1"]
    assert [e.order for e in seen.events("recv")] == [6, 7]
    assert [e.order for e in seen.events("recv", TEST)] == []
    assert [e.order for e in seen.received(CHILD)] == [6]  # the EOF got no message


def test_open_write_copies_shrink_as_copies_close_and_processes_end():
    seen = observe.Observed(_history(), str)
    assert sorted(c.pid for c in seen.open_write_copies("r1", 4)) == [TEST, CHILD]
    assert [c.pid for c in seen.open_write_copies("r1", 5)] == [CHILD]  # the test closed
    assert seen.open_write_copies("r1", 8) == []  # the child ended
    assert seen.open_write_copies("not-an-end", 4) == []


def test_open_write_copies_of_the_other_end_of_a_pipe_are_the_read_end_copies():
    seen = observe.Observed(_history(), str)
    # What w1 sends goes to r1: its copies still open at 9 (the forked child ended at 8).
    assert sorted(c.pid for c in seen.open_write_copies("w1", 9)) == [TEST, SPAWNED]


def test_observed_and_children_refuse_to_work_outside_a_kata_test(monkeypatch):
    monkeypatch.delenv(ENV_RUNDIR, raising=False)
    with pytest.raises(RuntimeError, match=r"^observed\(\) works only inside a kata test"):
        observe.observed(SimpleNamespace())
    with pytest.raises(RuntimeError, match=r"^children\(\) works only inside a kata test"):
        observe.children()


# -- interleaving tables ---------------------------------------------------------------------


def _one(op, obj="x", extra=None):
    return Event(0, 1, 1, 1, 0, op, obj, None, extra)


@pytest.mark.parametrize(
    ("op", "obj", "extra", "expected"),
    [
        ("recv", "e", (0, 3, "EOF"), "recv() -> EOFError"),
        ("recv", "e", (1234567, 3, None), "recv() -> 1,234,567 bytes"),
        ("recv", "e", (0, 3, "OSError: bad"), "recv() -> OSError: bad"),
        ("put", "q", None, "queue put()"),
        ("get", "q", None, "queue get()"),
        ("sendall", "s", 512, "sendall() 512 bytes"),
        ("sclose", "s", None, "close() the socket"),
        ("garbled", "e", "UnpicklingError", "recv() -> UnpicklingError"),
        ("acq", "L7", None, "acquire lock L7"),
        ("rel", "L7", None, "release lock L7"),
        ("close", "e", None, "close()"),
        ("ssend", "s", (100, 40), "send() 40 of 100 bytes"),
        ("srecv", "s", (100, 7), "recv() -> 7 bytes"),
        ("pool", "close", None, "pool"),
    ],
)
def test_describe_tells_each_event_in_the_learners_words(op, obj, extra, expected):
    assert tables.describe(_one(op, obj, extra), lambda lock: f"lock {lock}") == expected


def test_location_name_of_an_unknown_object_is_the_object_itself():
    assert tables.location_name(_one("read", "some-socket-3")) == "some-socket-3"
    assert tables.describe(_one("read", "some-socket-3", [0, 1, 5])) == "read  some-socket-3 = 5"


def test_location_name_of_a_manager_key_names_the_proxy_type():
    assert tables.location_name(_one("read", "m1a@2b['value']", ["Value"])) == (
        "the Manager Value's value"
    )
    assert tables.location_name(_one("read", "m1a@2b['k']", ["dict"])) == "dict['k']"


def _step(task, op, obj, site, value=None, preempted=False):
    return SimpleNamespace(task=task, op=op, obj=obj, site=site, value=value, preempted=preempted)


def _rows(table: str) -> list[str]:
    """The cells of a steps table, one a row (a row has one non-empty cell)."""
    lines = table.splitlines()
    assert lines[-1] == "  (lines of /k/x.py)"
    return [next(c.strip() for c in line.split("|") if c.strip()) for line in lines[2:-1]]


def _line_of(site):
    return ("/k/x.py", site)


@pytest.mark.parametrize(
    ("op", "obj", "expected"),
    [
        ("wait", "Condition", "wait on the Condition"),
        ("set", "Event", "set the Event"),
        ("put", "Queue", "put on the Queue"),
        ("notify", "Condition", "notify the Condition"),
        ("start", "", "start"),
        ("custom", "thing", "custom thing"),
    ],
)
def test_steps_table_names_waits_and_other_steps(op, obj, expected):
    table = tables.steps_table([_step(0, op, obj, 5)], ["main"], _line_of)
    assert _rows(table) == [f"{expected}  (line 5)"]


def _long_run(tasks):
    return [_step(task, "sleep", f"s{i:02d}", i) for i, task in enumerate(tasks)]


def test_a_long_steps_table_starts_three_steps_before_the_first_preemption():
    steps = _long_run([0] * 10 + [1] * 10)
    steps[12].preempted = True
    rows = _rows(tables.steps_table(steps, ["main", "worker"], _line_of))
    assert rows == [f"sleep s{i:02d}  (line {i})" for i in range(9, 20)]


def test_a_long_steps_table_starts_four_steps_before_a_switch_that_leaves_work_undone():
    # Task 0 runs steps 0-9, task 1 steps 10-13, task 0 again 14-19: the switch at 10 left
    # task 0 in the middle of its work.
    steps = _long_run([0] * 10 + [1] * 4 + [0] * 6)
    rows = _rows(tables.steps_table(steps, ["a", "b"], _line_of))
    assert rows == [f"sleep s{i:02d}  (line {i})" for i in range(6, 20)]


def test_a_long_steps_table_without_an_interesting_switch_shows_its_end():
    # Task 0 finishes before task 1 starts: nothing interrupted, so the last 16 steps.
    rows = _rows(tables.steps_table(_long_run([0] * 10 + [1] * 10), ["a", "b"], _line_of))
    assert rows == [f"sleep s{i:02d}  (line {i})" for i in range(4, 20)]


# -- a crash inside recv() -------------------------------------------------------------------

CONNECTION = os.path.join(sysconfig.get_paths()["stdlib"], "multiprocessing", "connection.py")
READER, OTHER_READER = 200, 201


def _crash(exc_type, message, history=None):
    """The message of a WRONG failure after child READER raised inside recv()."""
    children = crashes.Children(
        registry={READER: ProcessInfo(READER, "reader-1", "worker", 0.0, target="read_all")},
        exits={READER: 1},
        raised={
            READER: Raised(
                READER,
                "Traceback ...",
                exc_type,
                message,
                ((CONNECTION, 250, "recv"), (CONNECTION, 430, "_recv_bytes")),
            )
        },
        on_purpose={},
        pool_failures=[],
    )
    outcome = Outcome(status="failed", kind=Kind.WRONG, message="2 items missing")
    crashes.explain_children(outcome, children, str, set(), history)
    assert outcome.kind == Kind.CRASH
    head = f"child process 'reader-1' (pid {READER}, target read_all) raised "
    assert outcome.message.startswith(head)
    assert outcome.message.endswith("; 2 items missing")
    return outcome.message[len(head) : -len("; 2 items missing")]


def _readers_history(second_reader_end: str) -> History:
    events = [
        _event(0, READER, "recv", "r1", (10, 0, None), line=22),
        _event(1, OTHER_READER, "recv", second_reader_end, (10, 1, None), line=22),
        _event(2, READER, "garbled", "r1", "UnpicklingError", line=22),
    ]
    processes = {
        READER: ProcessView(READER, "reader-1", "worker"),
        OTHER_READER: ProcessView(OTHER_READER, "reader-2", "worker"),
    }
    return History(events, processes)


def test_a_torn_message_names_the_other_readers_of_the_same_pipe_end():
    cause = _crash("UnpicklingError", "pickle data was truncated", _readers_history("r1"))
    assert cause == (
        "UnpicklingError: pickle data was truncated. recv() got bytes that were not one whole "
        "message: reader-2 read the same pipe end too, and two readers inside recv() at once "
        "each take part of the other's message."
    )


def test_a_torn_message_with_no_other_reader_asks_whether_it_was_torn():
    cause = _crash("UnpicklingError", "pickle data was truncated", _readers_history("r2"))
    assert cause == (
        "UnpicklingError: pickle data was truncated. recv() got bytes that were not one whole "
        "message: was the message torn?"
    )


def test_a_torn_message_without_a_trace_asks_whether_it_was_torn():
    assert _crash("KeyError", "'\\x00'").endswith(
        ". recv() got bytes that were not one whole message: was the message torn?"
    )


def test_eof_from_unpickling_a_short_message_is_a_torn_message_not_a_missing_sentinel():
    cause = _crash("EOFError", "Ran out of input")
    assert cause.endswith("was the message torn?")
    assert "sentinel" not in cause


def test_eof_from_a_closed_pipe_asks_for_one_sentinel_per_reader():
    assert _crash("EOFError", "").startswith("EOFError. recv() raises EOFError once every copy")


def test_an_exception_inside_recv_that_cannot_come_from_torn_bytes_gets_no_cause():
    assert _crash("ZeroDivisionError", "division by zero") == "ZeroDivisionError: division by zero"


def _stuck_readers(*objects: tuple[int, str]) -> str:
    """The headline of a fan-out where READER waits in recv() holding the readers' lock, and
    each (pid, value) in ``objects`` was received on the pipe before that."""
    events = [_event(0, TEST, "pipe", "p1", ("r1", "w1", False), line=10)]
    for n, (pid, value) in enumerate(objects, 1):
        events.append(_event(n, pid, "got", "r1", value, line=22))
    processes = {
        TEST: ProcessView(TEST, "MainProcess", "test"),
        READER: ProcessView(READER, "reader-1", "worker"),
        OTHER_READER: ProcessView(OTHER_READER, "reader-2", "worker"),
    }
    waiter = waits.Waiter(READER, READER, READER, "recv", "r1", Site(FILE, 22), 0)
    dead = waits.Deadlock((waiter,), {"r1": (TEST, READER)})
    return findings.deadlock_finding(History(events, processes), dead, str).message


def test_sentinels_read_past_by_another_reader_are_named_in_the_hang():
    # The reader in recv() got only items; the others took the sentinels and wait for its lock.
    headline = _stuck_readers((READER, "7"), (OTHER_READER, "<object>"), (TEST, "<object>"))
    assert "reader-2, test process had already received 2 object(s) of type object" in headline
    assert "`item is SENTINEL` is never true" in headline


def test_a_hang_where_only_data_was_read_names_no_sentinel():
    headline = _stuck_readers((READER, "7"), (OTHER_READER, "<str>"))
    assert "recv()" in headline
    assert "SENTINEL" not in headline


# -- the stacks of a stuck test --------------------------------------------------------------

STDLIB = sysconfig.get_paths()["stdlib"]
LEARNER = "/katas/pipe/pipe.py"


def _lib(module: str, function: str, line: int = 1) -> stacks.Frame:
    return stacks.Frame(os.path.join(STDLIB, *module.split("/")), line, function)


def _waiting(*library: stacks.Frame, learner_line: int = 31) -> stacks.Thread:
    """A thread whose learner code (at ``learner_line``) waits in ``library`` (innermost
    first)."""
    return stacks.Thread(1, (*library, stacks.Frame(LEARNER, learner_line, "work")))


RECV = (
    _lib("multiprocessing/connection.py", "_recv"),
    _lib("multiprocessing/connection.py", "recv"),
)
SEND = (_lib("multiprocessing/connection.py", "send"),)
LOCK = (_lib("multiprocessing/synchronize.py", "__enter__"),)
PROCESS_JOIN = (
    _lib("multiprocessing/popen_fork.py", "wait"),
    _lib("multiprocessing/process.py", "join"),
)


def _proc(pid, role, *frames, alive=True):
    thread = _waiting(*frames) if frames else stacks.Thread(1, (stacks.Frame(LEARNER, 5, "run"),))
    return stacks.ProcessStack(pid, f"p{pid}", role, None, 1, (thread,), alive=alive)


def test_parse_dump_reads_every_thread_and_its_frames_innermost_first():
    text = (
        "Thread 0x00007f00000000a1 (most recent call first):\n"
        '  File "/lib/threading.py", line 320 in wait\n'
        '  File "/k/pipe.py", line 12 in worker\n'
        "\n"
        "Current thread 0x00007f00000000b2 (most recent call first):\n"
        '  File "/k/pipe.py", line 40 in main\n'
    )
    assert stacks.parse_dump(text) == (
        stacks.Thread(
            0x7F00000000A1,
            (
                stacks.Frame("/lib/threading.py", 320, "wait"),
                stacks.Frame("/k/pipe.py", 12, "worker"),
            ),
        ),
        stacks.Thread(0x7F00000000B2, (stacks.Frame("/k/pipe.py", 40, "main"),)),
    )


def test_blocking_call_is_the_outermost_library_frame_of_the_innermost_run():
    assert stacks.blocking_call(_waiting(*RECV)) == "Connection.recv()"
    # A thread's own start-up frames (library code outside the learner's) do not count.
    started = (
        *_waiting(*RECV).frames,
        _lib("threading.py", "run"),
        _lib("threading.py", "_bootstrap"),
    )
    assert stacks.blocking_call(stacks.Thread(1, started)) == "Connection.recv()"
    assert stacks.blocking_call(_waiting(*PROCESS_JOIN)) == "Process.join()"
    assert stacks.blocking_call(_waiting(_lib("json/decoder.py", "raw_decode"))) == (
        "raw_decode() of decoder.py"
    )
    assert stacks.blocking_call(_waiting()) is None  # in the learner's own code


def test_blocking_call_in_a_hook_wrapper_is_the_call_the_learner_made():
    hooks_ipc = os.path.join(os.path.dirname(stacks.__file__), "hooks_ipc.py")
    wrapped = (_lib("multiprocessing/connection.py", "_recv"), stacks.Frame(hooks_ipc, 9, "recv_"))
    assert stacks.blocking_call(_waiting(*wrapped)) == "Connection.recv()"
    unknown = (stacks.Frame(hooks_ipc, 9, "frobnicate_"),)
    assert stacks.blocking_call(_waiting(*unknown)) == "frobnicate()"


@pytest.mark.parametrize(
    ("procs", "hint"),
    [
        (
            [_proc(1, "test", *PROCESS_JOIN), _proc(2, "worker", *RECV)],
            "every reader is blocked in recv() while no one is left to send",
        ),
        (
            [_proc(1, "test"), _proc(2, "worker", *RECV), _proc(3, "worker", alive=False)],
            "every reader is blocked in recv() while no one is left to send",
        ),
        (
            [_proc(1, "test", *PROCESS_JOIN), _proc(2, "worker", *LOCK), _proc(3, "pool", *LOCK)],
            "2 processes each wait in Lock.acquire(): if each holds a lock the other wants",
        ),
        (
            [_proc(1, "test", *PROCESS_JOIN), _proc(2, "worker", *LOCK)],
            "a process waits for a lock that is never released",
        ),
        (
            [_proc(1, "test", *RECV), _proc(2, "manager")],
            "the test process waits in recv() for data that nobody sends",
        ),
        (
            [_proc(1, "test", *PROCESS_JOIN), _proc(2, "worker", *SEND)],
            "the parent joins a child that is still blocked sending",
        ),
        (
            [_proc(1, "test", _lib("multiprocessing/queues.py", "get")), _proc(2, "worker")],
            "the test process waits in Queue.get() for an item that never comes",
        ),
        (
            [_proc(1, "test", _lib("multiprocessing/pool.py", "join")), _proc(2, "pool")],
            "the test process waits for pool tasks that never finish",
        ),
        (
            [_proc(1, "test", _lib("socket.py", "accept"))],
            "the server waits in accept() for a client that never connects",
        ),
        (
            [_proc(1, "test", _lib("threading.py", "join"))],
            "the test process joins a thread that never ends",
        ),
        (
            [_proc(1, "test"), _proc(2, "manager", *RECV)],
            "a process waits in recv() for data that nobody sends",
        ),
        ([_proc(1, "test"), _proc(2, "worker")], "no process finished in time"),
    ],
)
def test_diagnose_reads_a_hint_from_the_pattern_of_waits(procs, hint):
    assert stacks.diagnose(procs).startswith(hint)


@pytest.fixture
def learner_file(tmp_path):
    path = tmp_path / "pipe.py"
    path.write_text("def work(lock):\n    ok = lock.acquire()\n    return ok\n")
    return str(path)


def test_summary_names_the_call_and_the_learner_line_a_process_waits_at(learner_file):
    thread = stacks.Thread(7, (*RECV, stacks.Frame(learner_file, 2, "work")))
    proc = stacks.ProcessStack(42, "consumer", "worker", None, 7, (thread,), blocked_since=2.5)
    assert stacks.summary(proc, {learner_file}, lambda f: "pipe.py") == (
        "consumer (pid 42) blocked in Connection.recv() at pipe.py:2 (`ok = lock.acquire()`)"
        " for at least 2.5 s"
    )


def test_summary_reads_a_c_call_from_the_learner_line_when_no_library_frame_shows_it(
    learner_file,
):
    thread = stacks.Thread(7, (stacks.Frame(learner_file, 2, "work"),))
    blocked = stacks.ProcessStack(42, "w", "worker", None, 7, (thread,), blocked_since=1.0)
    assert stacks.summary(blocked, {learner_file}, str).startswith(
        "w (pid 42) blocked in lock.acquire() at "
    )
    running = dataclasses.replace(blocked, blocked_since=None)
    assert stacks.summary(running, {learner_file}, str).startswith("w (pid 42) running at ")


def test_summary_of_a_process_without_a_learner_frame_names_its_first_own_frame():
    thread = stacks.Thread(7, (stacks.Frame("/srv/tool.py", 8, "loop"),))
    proc = stacks.ProcessStack(9, "helper", "worker", None, 7, (thread,))
    assert stacks.summary(proc, set(), str) == "helper (pid 9) running at /srv/tool.py:8 in loop"


def test_summary_of_an_exited_or_unreadable_process_says_so():
    gone = stacks.ProcessStack(3, "w", "worker", None, None, (), alive=False, exit_note="killed")
    assert stacks.summary(gone, set(), str) == "w (pid 3) has exited: killed"
    unknown = dataclasses.replace(gone, exit_note=None)
    assert stacks.summary(unknown, set(), str) == "w (pid 3) has exited: exit status unknown"
    unread = dataclasses.replace(gone, alive=True)
    assert stacks.summary(unread, set(), str) == "w (pid 3): no stack could be read"


def test_render_shows_learner_frames_main_thread_first_and_counts_what_it_hides(learner_file):
    library_only = stacks.Thread(6, (_lib("threading.py", "wait"),))
    helper = stacks.Thread(5, (stacks.Frame(learner_file, 3, "work"),))
    main = stacks.Thread(7, (*RECV, stacks.Frame(learner_file, 2, "work")))
    proc = stacks.ProcessStack(42, "consumer", "worker", "work", 7, (library_only, helper, main))
    others = [dataclasses.replace(proc, pid=100 + i, target=None) for i in range(8)]
    lines = stacks.render([proc, *others], {learner_file}, lambda f: "pipe.py").splitlines()
    assert lines[:9] == [
        "--- consumer (pid 42) blocked in Connection.recv() at pipe.py:2 (`ok = lock.acquire()`)",
        "    target: work",
        "  main thread 0x7 (innermost call last):",
        "  >> pipe.py:2 in work",
        "  >>     ok = lock.acquire()",
        "  thread 0x5 (innermost call last):",
        "  >> pipe.py:3 in work",
        "  >>     return ok",
        "  (1 more thread(s) in library code only)",
    ]
    assert lines[9].startswith("--- consumer (pid 100) ")
    assert sum(line.startswith("--- consumer") for line in lines) == 8
    assert lines[-1] == "--- and 1 more process(es)"


# -- boot: a process asked for its stack as it ends ------------------------------------------

_ENDING = """
import os, signal, sys
from pytest_katas import boot
if sys.argv[1] == "registered":
    boot.register("a child")
else:
    signal.signal(boot.STACK_SIGNAL, lambda *args: None)  # armed, with no end hook
class Late:  # destroyed as the interpreter finalizes, after Python reset its handlers
    def __del__(self):
        os.kill(os.getpid(), boot.STACK_SIGNAL)
late = Late()
"""


@pytest.mark.parametrize(("how", "code"), [("registered", 0), ("bare", -10)])
def test_a_registered_process_survives_a_stack_request_while_it_finalizes(tmp_path, how, code):
    # The supervisor may ask every live process for its stack just as one exits through
    # the interpreter (a spawned child, a pool worker): SIGUSR1's default is to die.
    import subprocess

    env = {**os.environ, ENV_RUNDIR: str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", _ENDING, how], env=env, timeout=60, check=False)
    assert done.returncode == code


# -- leaks: what is left, and when it is left for good ---------------------------------


def test_a_leftover_process_that_sits_still_is_named_without_waiting_out_the_grace():
    baseline = leaks.Baseline.take()
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        started = time.monotonic()
        found = leaks.find_leaks(baseline, set(), None, str, grace=30.0)
        took = time.monotonic() - started
    finally:
        idle.kill()
        idle.wait()
    assert [leak.what for leak in found if leak.what == "process"] == ["process"]
    assert took < 15.0, f"{took:.1f} s: it waited out the grace instead of seeing it asleep"


def test_a_leftover_process_still_at_work_is_waited_for_until_it_ends():
    baseline = leaks.Baseline.take()
    spin = "import time\nend = time.monotonic() + 1.5\nwhile time.monotonic() < end: pass"
    busy = subprocess.Popen([sys.executable, "-c", spin])
    try:
        found = leaks.find_leaks(baseline, set(), None, str, grace=30.0)
    finally:
        busy.kill()
        busy.wait()
    assert not [leak for leak in found if leak.what == "process"], found


def test_a_test_whose_verdict_does_not_depend_on_the_start_method_forks_its_processes():
    def method_in_use() -> str:
        return multiprocessing.get_start_method()

    for chosen in ("spawn", "forkserver", "fork"):
        with start_method(chosen):
            assert any_start_method(method_in_use)() == "fork"
            assert multiprocessing.get_start_method() == chosen, "the chosen one comes back"
            assert fresh_start_method() == (None if chosen != "fork" else "spawn")
    with start_method(None):  # None leaves it as it is
        assert method_in_use() == multiprocessing.get_start_method()
