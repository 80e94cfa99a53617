"""Finding what a test left behind: processes still alive, threads not joined, descriptors open."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import threading
import time
from collections.abc import Callable
from typing import Final, final

import psutil

from pytest_katas.channel import REGISTERED, RunDir
from pytest_katas.messages import _
from pytest_katas.procs import thread_state

__all__ = ["Baseline", "Leak", "find_leaks", "infrastructure_pids", "summary"]

_INFRA_DIRS = (f"{os.sep}multiprocessing{os.sep}", f"{os.sep}concurrent{os.sep}")


@final
@dataclasses.dataclass(frozen=True)
class Leak:
    what: str  # "process", "thread" or "descriptor"
    description: str


@final
@dataclasses.dataclass(frozen=True)
class Baseline:
    threads: frozenset[int]
    fds: frozenset[int]

    @classmethod
    def take(cls) -> Baseline:
        return cls(frozenset(t.ident or 0 for t in threading.enumerate()), frozenset(_fds()))


def _fds() -> set[int]:
    try:
        return {int(fd) for fd in os.listdir("/proc/self/fd")}
    except OSError:
        return set()


def infrastructure_pids() -> set[int]:
    """multiprocessing's own helpers (resource tracker, forkserver), never a learner's leak."""
    found: set[int] = set()
    for child in psutil.Process().children(recursive=True):
        try:
            cmdline = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "resource_tracker" in cmdline or "forkserver" in cmdline:
            found.add(child.pid)
    return found


def _infrastructure_fds() -> set[int]:
    fds: set[int] = set()
    try:
        from multiprocessing import forkserver, resource_tracker

        tracker_fd = getattr(resource_tracker._resource_tracker, "_fd", None)
        if tracker_fd is not None:
            fds.add(tracker_fd)
        alive = getattr(forkserver._forkserver, "_forkserver_alive_fd", None)
        if alive is not None:
            fds.add(alive)
    except ImportError:  # pragma: no cover
        pass
    return fds


def _thread_leaks(baseline: Baseline) -> list[threading.Thread]:
    leaked = []
    for thread in threading.enumerate():
        if thread.ident in baseline.threads or not thread.is_alive():
            continue
        site = getattr(thread, "_kata_site", None) or ""
        if any(part in site for part in _INFRA_DIRS):
            continue
        leaked.append(thread)
    return leaked


def _process_leaks() -> list[psutil.Process]:
    infra = infrastructure_pids()
    leaked = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.pid not in infra and child.status() != psutil.STATUS_ZOMBIE:
                leaked.append(child)
        except psutil.Error:
            continue
    return leaked


def _sentinels() -> set[int]:
    """The fds that track live children: a leaked process is reported as a process."""
    import multiprocessing

    fds: set[int] = set()
    for child in multiprocessing.active_children():
        with contextlib.suppress(ValueError, AttributeError):
            fds.add(child.sentinel)
        with contextlib.suppress(AttributeError, IndexError, TypeError):  # fork's 2nd pipe end
            popen = child._popen  # type: ignore[attr-defined]
            fds.update(fd for fd in popen.finalizer._args if isinstance(fd, int))
    return fds


def _fd_leaks(baseline: Baseline, own: set[int]) -> list[tuple[int, str]]:
    ignore = baseline.fds | own | _infrastructure_fds() | _sentinels()
    leaked = []
    for fd in sorted(_fds() - ignore):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(("socket:", "pipe:")):
            leaked.append((fd, target))
    return leaked


def _socket_names() -> dict[int, str]:
    names = {}
    try:
        for conn in psutil.Process().net_connections(kind="all"):
            local = ":".join(map(str, conn.laddr)) if conn.laddr else "?"
            remote = ":".join(map(str, conn.raddr)) if conn.raddr else ""
            state = f" {conn.status}" if conn.status and conn.status != "NONE" else ""
            names[conn.fd] = f"{local}{' -> ' + remote if remote else ''}{state}"
    except psutil.Error:
        pass
    return names


SETTLED: Final = 0.25


def _stillness(
    baseline: Baseline, procs: list[psutil.Process], fds: list[tuple[int, str]]
) -> tuple[object, ...] | None:
    """What is left and the CPU it has used, or None while any of it (or any thread of
    ours that could still end it: a library's too) is not asleep in the kernel."""
    marks: list[object] = [tuple(fds)]
    for proc in procs:
        try:
            with proc.oneshot():
                if proc.status() != psutil.STATUS_SLEEPING:
                    return None
                used = proc.cpu_times()
                marks.append((proc.pid, used.user + used.system))
        except psutil.Error:
            return None
    me = os.getpid()
    mine = threading.get_ident()
    natives: set[int] = set()
    for thread in threading.enumerate():
        if thread.ident in baseline.threads or thread.ident == mine or not thread.is_alive():
            continue
        native = thread.native_id
        if native is None or thread_state(me, native) != "S":
            return None
        natives.add(native)
    try:
        ours = psutil.Process().threads()
    except psutil.Error:
        return None
    marks.extend(sorted((t.id, t.user_time + t.system_time) for t in ours if t.id in natives))
    return tuple(marks)


def find_leaks(
    baseline: Baseline,
    own_fds: set[int],
    rundir: RunDir | None,
    relpath: Callable[[str], str],
    grace: float = 1.0,
) -> list[Leak]:
    """What is still alive or open ``grace`` seconds after the test returned, or as soon as
    what is left has sat still for SETTLED seconds: every process and thread it could be
    waiting for asleep in the kernel, using no CPU, and nothing closed or ended meanwhile.
    Then nothing is about to finish (a process being stopped, or waiting for the CPU on a
    busy machine, is not asleep); what is left is left for good."""
    deadline = time.monotonic() + grace
    last: tuple[object, ...] | None = None
    since = 0.0
    while True:
        gc.collect()
        threads, procs = _thread_leaks(baseline), _process_leaks()
        fds = _fd_leaks(baseline, own_fds)
        now = time.monotonic()
        if not (threads or procs or fds) or now >= deadline:
            break
        mark = _stillness(baseline, procs, fds)
        if mark is None or mark != last:
            last, since = mark, now
        elif now - since >= SETTLED:
            break
        time.sleep(0.02)
    names = {}
    for pid, info in (rundir.read(REGISTERED) if rundir is not None and procs else {}).items():
        if info.where:
            names[pid] = _("{name} (pid {pid}, target {target} at {where})").format(
                name=info.name, pid=pid, target=info.target, where=relpath(info.where)
            )
        else:
            names[pid] = _("{name} (pid {pid}, target {target})").format(
                name=info.name, pid=pid, target=info.target
            )
    leaks = [
        Leak(
            "process",
            _("process {name} is still running").format(name=names.get(p.pid, f"pid {p.pid}")),
        )
        for p in procs
    ]
    for thread in threads:
        site = getattr(thread, "_kata_site", None)
        if site:
            text = _("thread {name} is still running, started at {where}").format(
                name=repr(thread.name), where=relpath(site)
            )
        else:
            text = _("thread {name} is still running").format(name=repr(thread.name))
        leaks.append(Leak("thread", text))
    sockets = _socket_names()
    for fd, target in fds:
        detail = sockets.get(fd, target)
        if target.startswith("socket:"):
            text = _("socket (fd {fd}, {detail}) is still open")
        else:
            text = _("pipe end (fd {fd}, {detail}) is still open")
        leaks.append(Leak("descriptor", text.format(fd=fd, detail=detail)))
    return leaks


def summary(found: list[Leak]) -> tuple[str, str]:
    """The LEAK headline and its details, for what a test left behind."""
    lines = "\n".join(f"  - {leak.description}" for leak in found)
    message = _("the code left {count} thing(s) running or open").format(count=len(found))
    details = _(
        "left behind after the test returned:\n{lines}\n\nJoin every process and thread "
        "you start, and close every pipe and socket you open (a `with` block does both)."
    ).format(lines=lines)
    return message, details
