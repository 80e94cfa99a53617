"""Recording what every process and thread of a kata test does: a cheap, bounded event
buffer per process, flushed to the run directory, and a live table of who waits where.

Each event is a short list ``[clock, thread, op, object, site, extra]``:

- ``clock`` is ``time.monotonic_ns()``, one clock for every process of the machine, so
  events from all processes sort into the order they happened in;
- ``thread`` is ``threading.get_ident()``; the first event of each thread is a ``thread``
  event that gives its name;
- ``op`` says what happened (see :mod:`.history` for the list), ``object`` names what it
  happened to (a pipe end, a lock, a dict key), and ``extra`` holds a few small values;
- ``site`` is where in the learner's files it happened: ``file index * SITE_BASE + line``,
  or -1 when no learner code is on the stack (the stdlib's own use of a lock, the test).

Structural events (pipes made and closed, processes and threads started and joined) are
always recorded; accesses (sends, receives, lock operations, reads and writes) only while
the trace is on, and at most ``EVENT_CAP`` per process.
"""

from __future__ import annotations

import _thread
import collections
import dataclasses
import os
import sys
import threading
import time
from typing import Any, Final, final

from pytest_katas import channel
from pytest_katas.channel import RunDir

__all__ = [
    "EVENT_CAP",
    "SITE_BASE",
    "Recorder",
    "access",
    "flush",
    "install",
    "name_thread",
    "record",
    "set_tracing",
    "switched_off",
    "site",
    "tracing",
    "wait_begin",
    "wait_end",
    "waiting",
]

SITE_BASE: Final = 1_000_000
EVENT_CAP: Final = 100_000
_FLUSH_AT: Final = 4096  # events buffered before a write
# How long a check about to read the trace waits for another thread's write to end. A write
# takes milliseconds; one stuck for longer is a finalizer run inside it (Recorder.flush).
FLUSH_WAIT: Final = 5.0

_get_ident = _thread.get_ident
_now = time.monotonic_ns

_files: dict[str, int] = {}  # learner file -> its index in sites
# Frames where a process's own stack starts: a forked child still has its parent's frames
# below them, and the learner line of those is the parent's, not the child's.
_roots: set[Any] = set()


def stack_root(code: Any) -> None:
    """Stop looking for a learner line at frames of ``code`` (a process's bootstrap)."""
    _roots.add(code)


def _learner_index() -> dict[str, int]:
    return {path: index for index, path in enumerate(channel.learner_files())}


def site(skip: int = 2) -> int:
    """The innermost learner-code line on the calling stack, encoded; -1 if none."""
    try:
        frame = learner_frame(sys._getframe(skip))
    except ValueError:
        return -1
    return -1 if frame is None else encode(frame)


def learner_frame(frame: Any) -> Any:
    """The innermost frame of learner code from ``frame`` outwards (not past the frames
    that run learner code for us), or None."""
    files, roots = _files, _roots
    while frame is not None:
        code = frame.f_code
        if code.co_filename in files:
            return frame
        if code in roots:
            return None
        frame = frame.f_back
    return None


def encode(frame: Any) -> int:
    """A learner frame's file and line, as one number (its file's index * SITE_BASE + line)."""
    return int(_files[frame.f_code.co_filename] * SITE_BASE + frame.f_lineno)


@final
class Recorder:
    """This process's share of the trace."""

    def __init__(self, rundir: RunDir) -> None:
        self.pid = os.getpid()
        self.rundir = rundir
        self.fd = rundir.open_trace(self.pid)
        self.events: collections.deque[list[Any]] = collections.deque()
        self.count = 0
        self.on = rundir.read_state().trace
        self.capped = False
        self.names: set[int] = set()
        self.table = rundir.status_table(self.pid)
        self.slots: dict[int, int] = {}
        self.depth: dict[int, int] = {}
        self.free = list(range(channel.SLOTS - 1, -1, -1))
        # Writing a batch allocates, and an allocation may start the garbage collector,
        # which runs finalizers right there: a Pool's closes the pool and waits for its
        # handler threads, which record events too. So the lock that keeps batches in order
        # is never waited for by a thread that only wants its events out (it leaves them to
        # the writer), nor taken twice by one thread; and the slots have a lock of their own
        # under which nothing is allocated.
        self.guard = _thread.allocate_lock()
        self.writer: int | None = None
        self.slot_guard = _thread.allocate_lock()

    def name_thread(self, ident: int) -> None:
        self.names.add(ident)
        thread = threading._active.get(ident)  # type: ignore[attr-defined]
        name = thread.name if thread is not None else f"thread-{ident}"
        self.events.append([_now(), ident, "thread", ident, -1, name])

    def flush(self, wait: float = 0.0) -> None:
        """Write out the events so far. Another thread writing them already takes ours
        too, unless they came after its last look: with ``wait`` seconds, wait that long for
        it to finish first (a check about to read the trace)."""
        me = _get_ident()
        if self.fd is None or not self.events or self.writer == me:
            return
        if not (self.guard.acquire(timeout=wait) if wait > 0 else self.guard.acquire(False)):
            return
        self.writer = me
        try:
            batch = []
            pop = self.events.popleft
            try:
                while True:
                    batch.append(pop())
            except IndexError:
                pass
            if batch:
                self.rundir.append_trace(self.fd, batch)
        finally:
            self.writer = None
            self.guard.release()

    def cap(self) -> None:
        self.capped = True
        self.events.append([_now(), _get_ident(), "capped", "", -1, EVENT_CAP])
        self.flush()

    def slot(self, ident: int) -> int | None:
        slot = self.slots.get(ident)
        if slot is None:
            # The threads gone, found before the lock is taken (that allocates).
            alive = threading._active  # type: ignore[attr-defined]
            gone = [] if self.free else [i for i in list(self.slots) if i not in alive]
            with self.slot_guard:
                for dead in gone:
                    self._free(self.slots.pop(dead, None))
                if not self.free:
                    return None
                slot = self.slots[ident] = self.free.pop()
        return slot

    def _free(self, slot: int | None) -> None:
        if slot is not None:
            if self.table is not None:
                self.table.set(slot, 0, 0, 0, 0, -1, "", "")
            self.free.append(slot)

    def release_slot(self, ident: int) -> None:
        self.depth.pop(ident, None)
        with self.slot_guard:
            self._free(self.slots.pop(ident, None))


_rec: Recorder | None = None


def _append(rec: Recorder, op: str, obj: Any, extra: Any, where: int) -> None:
    ident = _get_ident()
    if ident not in rec.names:
        rec.name_thread(ident)
    rec.events.append([_now(), ident, op, obj, where, extra])
    rec.count += 1
    if rec.count >= EVENT_CAP:
        rec.cap()
    elif len(rec.events) >= _FLUSH_AT:
        rec.flush()


def record(op: str, obj: Any, extra: Any = None, where: int | None = None) -> None:
    """A structural event: recorded whether or not the trace is on."""
    rec = _rec
    if rec is not None and not rec.capped:
        _append(rec, op, obj, extra, site(2) if where is None else where)


def access(op: str, obj: Any, extra: Any = None, where: int | None = None) -> None:
    """An access event (a send, a lock taken, a key read): recorded while the trace is on."""
    rec = _rec
    if rec is not None and rec.on and not rec.capped:
        _append(rec, op, obj, extra, site(2) if where is None else where)


def wait_begin(op: str, obj: str, timed: bool, where: int = -1) -> None:
    """Say in the status table that this thread now waits (outermost observed call only),
    with every event so far on disk: the supervisor may read both at any moment."""
    rec = _rec
    if rec is None:
        return
    ident = _get_ident()
    depth = rec.depth.get(ident, 0)
    rec.depth[ident] = depth + 1
    if depth:
        return
    rec.flush()
    slot = rec.slot(ident)
    if slot is not None and rec.table is not None:
        state = channel.TIMED if timed else channel.BLOCKED
        rec.table.set(slot, ident, threading.get_native_id(), state, _now(), where, op, obj)


def wait_end() -> None:
    rec = _rec
    if rec is None:
        return
    ident = _get_ident()
    depth = rec.depth.get(ident, 1) - 1
    rec.depth[ident] = depth
    if depth:
        return
    slot = rec.slots.get(ident)
    if slot is not None and rec.table is not None:
        rec.table.set(slot, ident, threading.get_native_id(), channel.RUNNING, _now(), -1, "", "")


@final
class waiting:  # noqa: N801 - used as a statement: ``with trace.waiting(...):``
    """Say in the status table, for the ``with`` block, what this thread waits in."""

    __slots__ = ("args",)

    def __init__(self, op: str, obj: str, timed: bool, where: int = -1) -> None:
        self.args = (op, obj, timed, where)

    def __enter__(self) -> None:
        wait_begin(*self.args)

    def __exit__(self, *exc_info: object) -> None:
        wait_end()


# Which run of a stress test this is: a learner object's attributes are named by its address,
# and an address freed in one run is reused in the next, by another object that no thread of
# the first run ever saw. The run's number in the name keeps the two apart.
generation = 0


def next_generation() -> None:
    """A new run of a stress test begins (in the test's process)."""
    global generation
    generation += 1


def flush() -> None:
    """Every event so far on disk, for a check that reads the trace next."""
    if _rec is not None:
        _rec.flush(wait=FLUSH_WAIT)


def tracing() -> bool:
    """Whether accesses are being recorded in this process right now."""
    return _rec is not None and _rec.on and not _rec.capped


def switched_off() -> bool:
    """Whether recording was turned off in this process (the grader's integrity check:
    learner code must not be able to hide what it did)."""
    return _rec is not None and not _rec.on


def name_thread(name: str) -> None:
    """Name the calling thread in the trace (a new thread, before it is registered)."""
    rec = _rec
    if rec is not None:
        ident = _get_ident()
        rec.names.add(ident)
        rec.events.append([_now(), ident, "thread", ident, -1, name])


def set_tracing(on: bool) -> None:
    """Turn recording of accesses on or off in this process and in the children it starts
    from now on (structural events go on)."""
    if _rec is not None:
        _rec.flush(wait=FLUSH_WAIT)
        _rec.on = on
        state = _rec.rundir.read_state()
        if state.trace != on:
            _rec.rundir.write_state(dataclasses.replace(state, trace=on))


def silence() -> None:
    """Record nothing more in this process: it is infrastructure (a Manager's server)."""
    if _rec is not None:
        _rec.flush()
        _rec.on = False
        _rec.capped = True  # structural events stop too


def thread_done() -> None:
    """The calling thread is about to end: free its status slot."""
    if _rec is not None:
        _rec.release_slot(_get_ident())


def _before_fork() -> None:
    flush()


def _after_fork_in_child() -> None:
    global _rec
    rundir = RunDir.current()
    if _rec is not None and _rec.fd is not None:
        os.close(_rec.fd)  # the parent's file: its events are the parent's to write
    _rec = Recorder(rundir) if rundir is not None else None


_forks_hooked = False


def install() -> None:
    """Start this process's recorder (once per process; a forked child gets its own)."""
    global _rec, _files, _forks_hooked
    rundir = RunDir.current()
    if rundir is None:
        return
    _files = _learner_index()
    if _rec is None or _rec.pid != os.getpid():
        _rec = Recorder(rundir)
    if not _forks_hooked:
        os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
        _forks_hooked = True
