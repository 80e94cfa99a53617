"""Learner code as another user, while ``katas grade`` grades: the test process drops to that
user before any learner code runs, so nothing the learner starts can signal, trace or write
to pytest, the supervisor, the watchdog or the report (they stay root); and at the end of
each test every process of that user is stopped, then killed, by PID.

Only in force when the grader asks for it (``PYTEST_KATA_LEARNER_USER``, set by
:mod:`pytest_katas.grade` in the environment of the box it starts) and pytest runs as root.
Inside the grader's box (``PYTEST_KATA_BOXED``: its own PID namespace, tests one at a time)
every process of the learner's user belongs to the running test, whatever session or
process group it moved to; outside a box only the test's cgroup, if any, is swept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import pwd
import signal
import time
from typing import TYPE_CHECKING, Final, final

import psutil

from pytest_katas.channel import RunDir

if TYPE_CHECKING:
    from pytest_katas import box

__all__ = ["Learner", "become", "learner", "members", "sweep", "test_group"]

ENV_USER: Final = "PYTEST_KATA_LEARNER_USER"
ENV_BOXED: Final = "PYTEST_KATA_BOXED"
TASKS_MAX: Final = 512  # processes and threads of one test, enforced by the kernel
_MEMORY_SLACK: Final = 256 << 20


@final
@dataclasses.dataclass(frozen=True)
class Learner:
    name: str
    uid: int
    gid: int
    boxed: bool  # in the grader's own PID namespace: every process of uid is the test's


@functools.cache
def learner() -> Learner | None:
    """The user learner code runs as, or None when not grading (or not root)."""
    name = os.environ.get(ENV_USER)
    if not name or os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    if entry.pw_uid == 0:
        return None
    boxed = os.environ.get(ENV_BOXED) == "1" and os.getpid() != 1 and _own_pid_namespace()
    return Learner(name, entry.pw_uid, entry.pw_gid, boxed)


def _own_pid_namespace() -> bool:
    """Whether this process is in a PID namespace other than the host's first one."""
    try:
        return os.readlink("/proc/self/ns/pid") != os.readlink("/proc/1/ns/pid") or _nspid()
    except OSError:
        return False


def _nspid() -> bool:
    with contextlib.suppress(OSError):
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("NSpid:"):
                    return len(line.split()) > 2  # a pid in more than one namespace
    return False


def test_group(max_memory: int) -> box.TestGroup | None:
    """A cgroup for one test's processes: a fork storm stops at the kernel's limit."""
    if learner() is None:
        return None
    from pytest_katas import box

    return box.TestGroup.create(
        f"test-{os.getpid()}-{time.monotonic_ns()}", TASKS_MAX, max_memory + _MEMORY_SLACK
    )


def become(who: Learner, rundir: RunDir) -> None:
    """In the forked test process, before any learner code: give the run directory to the
    learner's user (its processes write their records there) and become that user, for
    good (no way back: the saved IDs change too)."""
    for folder, _, files in os.walk(rundir.path):
        os.chown(folder, who.uid, who.gid)
        for name in files:
            os.chown(os.path.join(folder, name), who.uid, who.gid)
    with contextlib.suppress(OSError):  # out of memory, the kernel takes learner code first
        with open("/proc/self/oom_score_adj", "w", encoding="ascii") as handle:
            handle.write("1000")
    os.setgroups([])
    os.setresgid(who.gid, who.gid, who.gid)
    os.setresuid(who.uid, who.uid, who.uid)
    if os.getuid() != who.uid or os.geteuid() != who.uid:  # pragma: no cover - kernel says no
        raise PermissionError(f"could not become {who.name}")


def members(who: Learner) -> list[int]:
    """Every process of the learner's user, when that means "of this test" (boxed)."""
    if not who.boxed:
        return []
    found = []
    for proc in psutil.process_iter(["uids"]):
        with contextlib.suppress(psutil.Error, TypeError):
            if proc.info["uids"].real == who.uid:
                found.append(proc.pid)
    return found


def sweep(who: Learner, group: box.TestGroup | None, timeout: float = 3.0) -> list[int]:
    """End every process the test left: stop them all first, so a fork storm cannot grow
    while it is killed, then kill them; repeat until none is left. Returns their PIDs."""
    if group is not None:
        group.kill_all()
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = members(who)
        if not pids:
            break
        seen.update(pids)
        for signum in (signal.SIGSTOP, signal.SIGKILL):
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signum)
        time.sleep(0.005)
    return sorted(seen)
