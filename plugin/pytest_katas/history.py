"""The trace read back: every process, thread, pipe, lock and access of a test, in the
order they happened.

The ops recorded by :mod:`.hooks`, by what they say:

- who: ``thread`` (a thread's name), ``pstart``/``pbegin``/``pend``/``pjoin`` (a process
  started by its parent, its first and last words, joined), ``tstart``/``tbegin``/``tend``/
  ``tjoin`` (the same for threads);
- pipes: ``pipe`` (made by learner code: its two ends), ``inherit`` (a forked child's copy of
  an end), ``received`` (an end passed to a spawned child), ``close``, ``send`` (bytes),
  ``recv`` (bytes, when it began, ``EOF`` or an error), ``garbled`` (recv() could not unpickle);
- locks: ``lock`` (made by learner code), ``acq``/``rel``; and the other ways one thread can
  wait for another: ``hb+``/``hb-`` (an event set and seen, a barrier passed, a semaphore),
  ``put``/``get`` (a queue);
- data: ``read``/``write`` of a learner object's attribute or a Manager proxy's key, ``call``
  (any other proxy call);
- sockets: ``accept``, ``srecv``, ``ssend`` (bytes asked, bytes sent), ``sendall``,
  ``shutdown``, ``sclose``; pools: ``pool`` (close, join, terminate);
- ``capped``: the process recorded ``EVENT_CAP`` events and stopped.
"""

from __future__ import annotations

import dataclasses
import itertools
import linecache
from collections.abc import Callable, Iterable
from typing import Any, Final, NamedTuple, final

from pytest_katas import channel
from pytest_katas.channel import RunDir
from pytest_katas.trace import SITE_BASE

__all__ = [
    "Actor",
    "EndCopy",
    "Event",
    "History",
    "PipeInfo",
    "ProcessView",
    "Site",
    "decode_site",
]


@final
@dataclasses.dataclass(frozen=True)
class Site:
    """A line of the learner's code."""

    file: str
    line: int

    def where(self, relpath: Callable[[str], str] = str) -> str:
        return f"{relpath(self.file)}:{self.line}"

    def source(self) -> str:
        return linecache.getline(self.file, self.line).strip()


class Event(NamedTuple):
    """One recorded event (a tuple: a test's history can hold hundreds of thousands)."""

    order: int  # position in the whole test's history
    pid: int
    tid: int  # threading.get_ident(): reused once a thread has ended
    thread: int  # this thread, and no other, in the whole history
    ts: int
    op: str
    obj: str
    site: Site | None
    extra: Any

    @property
    def actor(self) -> tuple[int, int]:
        return (self.pid, self.thread)


@final
@dataclasses.dataclass
class Actor:
    """One thread of one process."""

    pid: int
    thread: int
    name: str
    process: str
    main: bool = False

    @property
    def label(self) -> str:
        if self.main:
            return self.process
        if self.process == "test process":
            return self.name
        return f"{self.process}/{self.name}"


@final
@dataclasses.dataclass
class ProcessView:
    """A process of the test, as the trace and its records tell it."""

    pid: int
    name: str
    role: str
    target: str | None = None
    parent: int | None = None
    token: str | None = None
    started_at: Site | None = None  # the learner line that started it (in its parent)
    exitcode: int | None = None
    ended_ts: int | None = None  # its last words (``pend``), if it said them
    raised: str | None = None  # the type of an exception that ended it (or one of its threads)
    events: list[Event] = dataclasses.field(default_factory=list)

    @property
    def learner(self) -> bool:
        return self.role in (*channel.LEARNER_ROLES, "test")


@final
@dataclasses.dataclass
class EndCopy:
    """One process's copy of a pipe end: how it got it, and whether it closed it."""

    end: str
    pid: int
    how: str  # "made", "inherited" or "received"
    at: Site | None
    closed_at: Site | None = None
    closed: bool = False
    closed_ts: int | None = None  # when: by close(), or when its process ended


@final
@dataclasses.dataclass
class PipeInfo:
    """A pipe made by learner code."""

    id: str
    ends: tuple[str, str]  # (first, second) as Pipe() returned them
    duplex: bool
    made_at: Site | None
    made_by: int

    def peer(self, end: str) -> str:
        """The end that receives what ``end`` sends."""
        return self.ends[1] if end == self.ends[0] else self.ends[0]


class History:
    """Everything the processes of one test recorded, read from its run directory."""

    def __init__(self, events: list[Event], processes: dict[int, ProcessView]) -> None:
        self.events = events
        self.processes = processes
        self.actors: dict[tuple[int, int], Actor] = {}
        self.idents: dict[tuple[int, int], int] = {}  # (pid, ident) -> its latest thread
        self.pipes: dict[str, PipeInfo] = {}
        self.end_pipe: dict[str, PipeInfo] = {}
        self.copies: dict[str, list[EndCopy]] = {}
        self.locks: dict[str, tuple[str, Site | None]] = {}  # id -> (kind, made at)
        self.capped: list[int] = []
        self._index()

    @classmethod
    def read(cls, rundir: RunDir, files: tuple[str, ...]) -> History:
        """Everything recorded so far; ``files`` are the learner's, in the order sites
        number them (:func:`.channel.learner_files` in the test's processes)."""
        records = rundir.processes()
        exits = rundir.read(channel.EXITED)
        raw: list[tuple[int, int, list[Any]]] = []
        serials = itertools.count(1)
        for pid in rundir.trace_pids():
            current: dict[Any, int] = {}  # a thread ident -> the thread that has it now
            for order, event in enumerate(rundir.read_trace(pid)):
                if len(event) != 6 or not isinstance(event[0], int):
                    continue
                tid = event[1]
                if event[2] == "thread" or tid not in current:
                    current[tid] = next(serials)  # a new thread (an ident can be reused)
                raw.append((event[0], pid * 1_000_000 + order, [pid, current[tid], *event]))
        raw.sort()  # by time, then by place in its process's trace: never by the payload
        sites: dict[Any, Site | None] = {}
        events = []
        for index, (_, _, (pid, thread, ts, tid, op, obj, where, extra)) in enumerate(raw):
            site = sites.get(where, _UNSEEN)
            if site is _UNSEEN:
                site = sites[where] = decode_site(where, files)
            events.append(
                Event(index, pid, int(tid), thread, ts, str(op), str(obj), site, extra)  # type: ignore[arg-type]
            )
        processes = {
            pid: ProcessView(pid, info.name, info.role, info.target, info.parent)
            for pid, info in records.items()
        }
        for pid, record in exits.items():
            if pid in processes:
                processes[pid].exitcode = record.exitcode
        for pid, crash in rundir.read(channel.RAISED).items():
            if pid in processes:
                processes[pid].raised = crash.exc_type or "an exception"
        return cls(events, processes)

    def _index(self) -> None:
        starts: dict[str, Site | None] = {}
        for event in self.events:
            proc = self.processes.get(event.pid)
            if proc is None:
                proc = self.processes[event.pid] = ProcessView(event.pid, f"pid {event.pid}", "?")
            proc.events.append(event)
            op = event.op
            if op == "thread":
                main = event.extra == "MainThread"
                self.actors[event.actor] = Actor(
                    event.pid, event.thread, str(event.extra), proc.name, main
                )
                self.idents[(event.pid, event.tid)] = event.thread
            elif op == "pstart":
                starts[event.obj] = event.site
            elif op == "pbegin":
                proc.token = event.obj
                proc.started_at = starts.get(event.obj)
            elif op == "pipe":
                first, second, duplex = event.extra
                pipe = PipeInfo(event.obj, (first, second), bool(duplex), event.site, event.pid)
                self.pipes[pipe.id] = pipe
                for end in pipe.ends:
                    self.end_pipe[end] = pipe
                    self.copies.setdefault(end, []).append(
                        EndCopy(end, event.pid, "made", event.site)
                    )
            elif op in ("inherit", "received"):
                how = "inherited" if op == "inherit" else "received"
                self.copies.setdefault(event.obj, []).append(
                    EndCopy(event.obj, event.pid, how, event.site)
                )
            elif op == "close":
                for copy in self.copies.get(event.obj, []):
                    if copy.pid == event.pid and not copy.closed:
                        copy.closed, copy.closed_at, copy.closed_ts = True, event.site, event.ts
            elif op == "pend":
                proc.ended_ts = event.ts
            elif op == "lock":
                self.locks[event.obj] = (str(event.extra[0]), event.site)
            elif op == "capped":
                self.capped.append(event.pid)
        for actor in self.actors.values():
            proc = self.processes.get(actor.pid)
            if proc is not None:
                actor.process = _process_label(proc)
        for proc in self.processes.values():  # a started child's start line is its parent's
            if proc.started_at is None and proc.token is not None:
                proc.started_at = starts.get(proc.token)

    # -- questions ----------------------------------------------------------------------

    def actor(self, pid: int, thread: int) -> Actor:
        found = self.actors.get((pid, thread))
        if found is None:
            proc = self.processes.get(pid)
            label = _process_label(proc) if proc is not None else f"pid {pid}"
            found = self.actors[(pid, thread)] = Actor(pid, thread, f"thread {thread}", label, True)
        return found

    def thread_of(self, pid: int, ident: int) -> int:
        """The thread that has ``threading.get_ident() == ident`` in ``pid`` now."""
        return self.idents.get((pid, ident), -ident)

    def of(self, ops: Iterable[str], pid: int | None = None) -> list[Event]:
        wanted = set(ops)
        source = self.processes[pid].events if pid is not None else self.events
        return [event for event in source if event.op in wanted]

    def learner_processes(self) -> list[ProcessView]:
        return [p for p in self.processes.values() if p.role in channel.LEARNER_ROLES]

    def test_process(self) -> ProcessView | None:
        return next((p for p in self.processes.values() if p.role == "test"), None)

    def label(self, pid: int) -> str:
        proc = self.processes.get(pid)
        return _process_label(proc) if proc is not None else f"pid {pid}"

    def open_copies(self, end: str, at: int) -> list[EndCopy]:
        """The copies of ``end`` still open at time ``at``: not closed, process not ended."""
        found = []
        for copy in self.copies.get(end, []):
            if copy.closed_ts is not None and copy.closed_ts <= at:
                continue
            ended = self.processes[copy.pid].ended_ts if copy.pid in self.processes else None
            if ended is not None and ended <= at:
                continue
            found.append(copy)
        return found


def _process_label(proc: ProcessView) -> str:
    if proc.role == "test":
        return "test process"
    return proc.name


_UNSEEN: Final = object()


def decode_site(encoded: Any, files: tuple[str, ...]) -> Site | None:
    """A site as the hooks encode it (file index * SITE_BASE + line), or None."""
    if not isinstance(encoded, int) or encoded < 0:
        return None
    index, line = divmod(encoded, SITE_BASE)
    return Site(files[index], line) if index < len(files) else None
