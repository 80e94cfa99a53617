"""Spotting a deadlock as it happens, instead of at the deadline.

A test is stuck for good when every thread of every process that runs learner code waits,
without a timeout, in a call we observe, and stays there; and when nothing outside that
set can wake any of them: each pipe a thread reads is held open for writing only by
processes of the set (or by a Manager's server, which never writes to it). The status
tables (:mod:`.channel`) say who waits where, the kernel says whether each thread is
really asleep, and ``/proc`` says who holds which end of each pipe. Anything we cannot
account for (a thread we do not observe, a socket, a process we do not know) means no
verdict: the deadline still decides.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable
from typing import Final, final

import psutil

from pytest_katas import channel, procs
from pytest_katas.channel import RunDir, Slot
from pytest_katas.history import History, PipeInfo, Site
from pytest_katas.trace import SITE_BASE

__all__ = ["Deadlock", "DeadlockWatch", "Waiter", "load", "patience", "quiet", "stretch"]

QUIET: Final = 0.3  # seconds everyone must stay put before we call it a deadlock
# On a machine busier than it has cores, a thread that could run may wait its turn for the
# CPU (or the GIL) asleep in the kernel for longer than QUIET: then wait longer.
BUSY_QUIET: Final = 1.5
STRETCH_MAX: Final = 3.0  # a busy machine gets a test at most three times its deadline


def load() -> float:
    """How busy the machine is: runnable tasks per core over the last minute (0 if unknown)."""
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except OSError:
        return 0.0


def quiet() -> float:
    """How long everyone must stay put now, given how busy the machine is."""
    return BUSY_QUIET if load() > 1 else QUIET


def stretch() -> float:
    """How many times its deadline a test may take now: 1 while a core is free; on a busier
    machine, as many times as each core has tasks to run (a correct solution slowed down by
    other work is not a hang), at most STRETCH_MAX."""
    return min(STRETCH_MAX, max(1.0, load()))


def patience(seconds: float) -> float:
    """How long a kata test may wait for something a correct solution does at once (three
    pool tasks meeting, say): ``seconds`` while a core is free, longer on a busy machine,
    as a test's deadline is stretched (:func:`stretch`)."""
    return seconds * stretch()


_INFRA: Final = ("resource_tracker", "forkserver")


@final
@dataclasses.dataclass(frozen=True)
class Waiter:
    pid: int
    native_id: int
    ident: int
    op: str
    obj: str
    site: Site | None
    since: int


@final
@dataclasses.dataclass(frozen=True)
class Deadlock:
    """Who waits for what, when nobody can go on."""

    waiters: tuple[Waiter, ...]
    holders: dict[str, tuple[int, ...]]  # pipe end waited on -> pids that hold its other side
    quiet: float = QUIET  # how long everyone had stayed put


_proc_state = procs.thread_state


def _tasks(pid: int) -> list[int] | None:
    try:
        return [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except (OSError, ValueError):
        return None


def _descriptors(pid: int) -> dict[str, list[int]]:
    """``pipe:[ino]`` / ``socket:[ino]`` -> the access modes ``pid`` holds it with."""
    found: dict[str, list[int]] = {}
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return found
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if not link.startswith(("pipe:", "socket:")):
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}", encoding="ascii") as handle:
                flags = next(
                    int(line.split()[1], 8) for line in handle if line.startswith("flags:")
                )
        except (OSError, StopIteration, ValueError):
            continue
        found.setdefault(link, []).append(flags & os.O_ACCMODE)
    return found


@final
class DeadlockWatch:
    """Called now and then by the supervisor; says when the test can no longer move."""

    def __init__(
        self, rundir: RunDir, files: tuple[str, ...], passive: tuple[int, ...] = ()
    ) -> None:
        self.rundir = rundir
        self.files = files
        self.passive = frozenset(passive)  # processes that cannot wake anyone
        self.registry: dict[int, channel.ProcessInfo] = {}
        self.infra: dict[int, bool] = {}
        self.last: tuple[tuple[int, int, int], ...] | None = None
        self.still_since = 0.0

    def _is_infra(self, pid: int) -> bool:
        known = self.infra.get(pid)
        if known is None:
            try:
                cmdline = " ".join(psutil.Process(pid).cmdline())
            except psutil.Error:
                cmdline = ""
            known = self.infra[pid] = any(name in cmdline for name in _INFRA)
        return known

    def _waiters(self, members: list[int]) -> tuple[list[Waiter], list[int]] | None:
        """Every learner thread's wait, or None if any thread may still move."""
        if any(pid not in self.registry for pid in members):
            self.registry = self.rundir.read(channel.REGISTERED)
        waiters, passive = [], []
        for pid in members:
            if pid in self.passive:
                passive.append(pid)
                continue
            info = self.registry.get(pid)
            if info is None:
                if self._is_infra(pid):
                    passive.append(pid)
                    continue
                return None  # a process that has not told us who it is (yet)
            if info.role == "manager":
                passive.append(pid)
                continue
            tasks = _tasks(pid)
            if not tasks:
                return None
            slots = {slot.native_id: slot for slot in self.rundir.read_status(pid)}
            for tid in tasks:
                slot = slots.get(tid)
                if slot is None or slot.state != channel.BLOCKED:
                    return None
                if _proc_state(pid, tid) not in ("S",):
                    return None
                waiters.append(self._waiter(pid, slot))
        return (waiters, passive) if waiters else None

    def _waiter(self, pid: int, slot: Slot) -> Waiter:
        site = None
        if slot.site >= 0:
            index, line = divmod(slot.site, SITE_BASE)
            if index < len(self.files):
                site = Site(self.files[index], line)
        return Waiter(pid, slot.native_id, slot.ident, slot.op, slot.obj, site, slot.since)

    def check(self, members: list[int]) -> Deadlock | None:
        found = self._waiters(members)
        now = time.monotonic()
        if found is None:
            self.last = None
            return None
        waiters, passive = found
        key = tuple((w.pid, w.native_id, w.since) for w in waiters)
        if key != self.last:
            self.last, self.still_since = key, now
            return None
        waited = quiet()
        if now - self.still_since < waited:
            return None
        holders = self._holders(waiters, set(members), set(passive))
        if holders is None:
            self.still_since = now + 1.0  # something outside may still act: look less often
            return None
        return Deadlock(tuple(waiters), holders, waited)

    def _holders(
        self, waiters: list[Waiter], members: set[int], passive: set[int]
    ) -> dict[str, tuple[int, ...]] | None:
        """Who could still write to (or read from) each pipe someone waits on, if all of
        them are inside the test and stuck too; None if anyone else might."""
        # A process that left the test's group is still our descendant (we reap orphans).
        everyone = set(members)
        with contextlib.suppress(psutil.Error):
            everyone |= {child.pid for child in psutil.Process().children(recursive=True)}
        tables = {pid: _descriptors(pid) for pid in everyone}
        ends = History.read(self.rundir, self.files).end_pipe
        holders: dict[str, tuple[int, ...]] = {}
        for waiter in waiters:
            if waiter.op not in ("recv", "send", "poll"):
                if waiter.op in ("accept",) or waiter.obj.startswith("k"):
                    return None  # a socket: its peer may be anywhere
                continue
            link, want = self._other_side(waiter, ends)
            if link is None:
                return None
            who = tuple(
                sorted(
                    pid
                    for pid, table in tables.items()
                    if any(mode in want for mode in table.get(link, []))
                )
            )
            holders[waiter.obj] = who
            if any(pid not in members for pid in who):
                return None
        return holders

    def _other_side(
        self, waiter: Waiter, ends: dict[str, PipeInfo]
    ) -> tuple[str | None, tuple[int, ...]]:
        """The kernel object at the other side of the end ``waiter`` waits on, and the
        access modes that can wake it (a writer for a reader, a reader for a writer)."""
        writers, readers = (os.O_WRONLY, os.O_RDWR), (os.O_RDONLY, os.O_RDWR)
        want = writers if waiter.op != "send" else readers
        obj = waiter.obj
        if obj.startswith("p") and obj[-1:] in "rw":
            return f"pipe:[{obj[1:-1]}]", want
        if obj.startswith("s"):
            pipe = ends.get(obj)
            peer = pipe.peer(obj) if pipe is not None else None
            return (f"socket:[{peer[1:]}]", (os.O_RDWR,)) if peer else (None, want)
        if obj.startswith("fd:"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{waiter.pid}/fd/{obj[3:]}")
                if link.startswith("pipe:"):
                    return link, want
        return None, want


def describe_wait(waiter: Waiter, relpath: Callable[[str], str]) -> str:
    where = ""
    if waiter.site is not None:
        source = waiter.site.source().split("  #", 1)[0].strip()
        where = f" at {waiter.site.where(relpath)}" + (f" (`{source}`)" if source else "")
    return f"{waiter.op}(){where}"
