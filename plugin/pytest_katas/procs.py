"""The process tree of one test: who is in it, how they ended, their stacks, and ending them."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import time
from collections.abc import Iterator

import psutil

from pytest_katas import boot, channel
from pytest_katas.channel import Exited, RunDir
from pytest_katas.stacks import ProcessStack, parse_dump

__all__ = [
    "describe_exit",
    "exit_status",
    "from_wait_status",
    "group_members",
    "reap",
    "sample_stacks",
    "subreaper",
    "terminate_group",
]

_PR_SET_CHILD_SUBREAPER = 36


@contextlib.contextmanager
def subreaper() -> Iterator[None]:
    """Adopt the test's orphans while it runs, so none is left a zombie or a stray."""
    libc_name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(libc_name, use_errno=True) if libc_name else None
    if libc is not None:
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    try:
        yield
    finally:
        if libc is not None:
            libc.prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name: state first, then ppid, pgrp."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def thread_state(pid: int, tid: int) -> str | None:
    """The kernel's state letter for one thread (R running, S and D asleep in a call)."""
    try:
        with open(f"/proc/{pid}/task/{tid}/stat", encoding="utf-8", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def group_members(pgid: int) -> list[int]:
    """Every live (not zombie) process of the test: its process group is the sandbox's pid."""
    members = []
    for pid in psutil.pids():
        fields = _stat(pid)
        if fields is not None and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            members.append(pid)
    return members


def _zombie_status(pid: int) -> int | None:
    """A zombie's wait status, from /proc/<pid>/stat field 52 (Linux 3.5+)."""
    fields = _stat(pid)
    if fields is None or fields[0] != "Z" or len(fields) < 50:
        return None
    return int(fields[49])


def from_wait_status(status: int) -> int:
    """multiprocessing's convention: the exit code, or minus the signal number."""
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def exit_status(pid: int, exits: dict[int, Exited], reaped: dict[int, int]) -> int | None:
    """How ``pid`` ended, if it did: from its parent's join (``exits``, the test's
    exit records, read once by the caller), our reaping, or its zombie."""
    if pid in exits:
        return exits[pid].exitcode
    if pid in reaped:
        return reaped[pid]
    status = _zombie_status(pid)
    return from_wait_status(status) if status is not None else None


def describe_exit(code: int | None) -> str:
    if code is None:
        return "it ended, but how is unknown"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}"
    return f"exited with code {code}"


def sample_stacks(rundir: RunDir, alive: set[int], wait: float = 0.5) -> dict[int, ProcessStack]:
    """Ask every live registered process for its stacks (SIGUSR1) and read them back."""
    registry = rundir.read(channel.REGISTERED)
    sizes: dict[int, int] = {}
    for pid in registry:
        if pid not in alive:
            continue
        sizes[pid] = rundir.stack_size(pid)
        with contextlib.suppress(OSError):
            os.kill(pid, boot.STACK_SIGNAL)
    deadline = time.monotonic() + wait
    dumps: dict[int, str] = {}
    last: dict[int, int] = {}
    while sizes and time.monotonic() < deadline:
        time.sleep(0.02)
        for pid, size in list(sizes.items()):
            now = rundir.stack_size(pid)
            if now > size and last.get(pid) == now:  # grown, and done growing
                dumps[pid] = rundir.read_stack(pid, size)
                del sizes[pid]
            last[pid] = now
    for pid, size in sizes.items():  # slow to answer: take what there is
        dumps[pid] = rundir.read_stack(pid, size)
    stacks = {}
    for pid, info in registry.items():
        stacks[pid] = ProcessStack(
            pid=pid,
            name=info.name,
            role=info.role,
            target=info.target,
            main_thread=info.main_thread,
            threads=parse_dump(dumps.get(pid, "")),
            alive=pid in alive,
        )
    return stacks


def _is_tracker(pid: int) -> bool:
    try:
        return "resource_tracker" in " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return False


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signum)


def terminate_group(pgid: int, grace: float = 0.5) -> None:
    """TERM every process of the test, give them ``grace`` s, then KILL what is left.

    multiprocessing's resource tracker goes last, after it has seen everyone else go: it
    then unlinks the named semaphores a killed test would otherwise leave in /dev/shm.
    """
    members = group_members(pgid)
    trackers = [pid for pid in members if _is_tracker(pid)]
    _signal_all([pid for pid in members if pid not in trackers], signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not [pid for pid in group_members(pgid) if pid not in trackers]:
            break
        time.sleep(0.02)
    for _ in range(200):  # a fork bomb keeps forking while we kill: repeat until empty
        rest = [pid for pid in group_members(pgid) if pid not in trackers]
        if not rest:
            break
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)
        _signal_all(rest, signal.SIGKILL)
        time.sleep(0.005)
    deadline = time.monotonic() + grace
    while trackers and time.monotonic() < deadline:
        trackers = [pid for pid in trackers if psutil.pid_exists(pid) and not _zombie(pid)]
        time.sleep(0.02)
    _signal_all(trackers, signal.SIGKILL)


def _zombie(pid: int) -> bool:
    fields = _stat(pid)
    return fields is None or fields[0] in ("Z", "X")


def reap(pids: set[int], reaped: dict[int, int], timeout: float = 2.0) -> None:
    """Collect the exit status of every process we adopted, so none stays a zombie."""
    deadline = time.monotonic() + timeout
    pending = set(pids)
    while pending and time.monotonic() < deadline:
        for pid in list(pending):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # not ours (yet): its parent may still be alive
                if not psutil.pid_exists(pid):
                    pending.discard(pid)
                continue
            if done:
                reaped[pid] = from_wait_status(status)
                pending.discard(pid)
        if pending:
            time.sleep(0.01)
