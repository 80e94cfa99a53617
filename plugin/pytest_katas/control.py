"""The controlled scheduler for threads: one thread runs at a time, and a plan picks which.

While a controlled run is on (:func:`controlled`), the thread that started it and every
thread that learner or test code starts from it are *tasks*. Each task waits on its own
baton; the running task hands the baton on at *points*, the moments just before an observed
operation (a read or write of a learner object's attribute, a lock taken or let go, a
thread started or joined, a wait on an event, condition or barrier, a queue call, a sleep).
At each point the plan (:mod:`.explore`) chooses who goes next among the tasks that can.

Blocking is modelled, not done: a task that wants a lock someone holds, or waits for a
thread to end, is not runnable until that changes. So "nobody can run" is an exact deadlock,
found at once, with who waits for what. Time is virtual: a sleep or a timed wait lasts no
wall time; the clock jumps to the next timeout when nobody else can run.

Code the scheduler cannot see (a C call that blocks, a lock from before the run held by a
thread it does not control) shows as a task that stops reaching points while its thread
sleeps in the kernel. Then control is *lost*: every task is let go to run freely, the run
finishes as an ordinary one, and the caller falls back to schedule noise and says so.
"""

from __future__ import annotations

import _thread
import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Final, final

from pytest_katas import procs, wrapping
from pytest_katas.explore import Plan

__all__ = [
    "ControlledLock",
    "ControlledRLock",
    "Deadlocked",
    "Scheduler",
    "SelfDeadlocked",
    "Step",
    "controlled",
    "running",
]

RUNNABLE: Final = 0
BLOCKED: Final = 1
DONE: Final = 2

READY: Final = "ready"
TIMEOUT: Final = "timeout"
LOST: Final = "lost"

LOST_AFTER: Final = 0.5  # seconds a task may sleep in the kernel without reaching a point
_GRACE: Final = 0.2  # real seconds to let threads outside the run change what can run

_real_sleep = time.sleep
_get_ident = _thread.get_ident
_active: Scheduler | None = None


class Deadlocked(BaseException):
    """Raised in every task when nobody can run: it unwinds the run (not an Exception, so
    ``except Exception`` in learner code does not swallow it)."""


class SelfDeadlocked(BaseException):
    """Raised in a thread that asks, with no timeout, for a Lock it holds by a `with`: it
    would wait for itself for ever. It ends that thread (not an Exception, so ``except
    Exception`` in learner code does not swallow it and retry); the trace says why."""


@final
@dataclasses.dataclass
class Step:
    """One point of the run: who, about to do what, to what, from which learner line."""

    task: int
    op: str
    obj: str
    site: int
    value: Any = None
    preempted: bool = False  # another task could have gone on, and was stopped here


@final
class Task:
    __slots__ = (
        "baton",
        "deadline",
        "depth",
        "ident",
        "index",
        "name",
        "native",
        "pending",
        "ready",
        "site",
        "state",
        "timed_out",
        "waits",
        "yielding",
        "away",
    )

    def __init__(self, index: int, name: str) -> None:
        self.index, self.name = index, name
        self.baton = _thread.allocate_lock()
        self.baton.acquire()  # held: the task waits until the scheduler lets it go
        self.state = RUNNABLE
        self.ident: int | None = None
        self.native: int | None = None
        self.ready: Callable[[], bool] | None = None
        self.deadline: float | None = None
        self.timed_out = False
        self.waits: str | Callable[[], str] = ""
        self.site = -1
        self.pending = "start"
        self.depth = 0  # inside a library's own use of locks: no preemption there
        self.yielding = False
        self.away = 0  # waiting for the process coordinator, which watches it instead


@final
class Scheduler:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.tasks: list[Task] = []
        self.by_ident: dict[int, Task] = {}
        self.current: Task | None = None
        self.clock = 0.0
        self.log: list[Step] = []
        self.lost: str | None = None
        self.deadlock: list[tuple[int, str, int]] | None = None  # who waits, in what, where
        self.ended = False
        self.progress = 0
        self.known = {t.ident for t in threading.enumerate()}  # threads from before the run

    # -- tasks ---------------------------------------------------------------------------

    def add_task(self, name: str) -> Task:
        task = Task(len(self.tasks), name)
        self.tasks.append(task)
        self.plan.new_task(task.index)
        return task

    def bind(self, task: Task, ident: int) -> None:
        task.ident = ident
        self.by_ident[ident] = task

    @property
    def free(self) -> bool:
        """Whether tasks run on their own now (control lost, the run over, or a deadlock)."""
        return self.lost is not None or self.ended or self.deadlock is not None

    def enter(self, task: Task) -> None:
        """A new task's thread begins: wait for the first turn."""
        task.native = threading.get_native_id()
        self._park(task)

    def leave(self, task: Task) -> None:
        """A task's thread is done with learner code: hand the baton on for good."""
        task.state = DONE
        task.pending = "end"
        # What the thread does after its target (the stdlib's bookkeeping) is not ours.
        if task.ident is not None and self.by_ident.get(task.ident) is task:
            del self.by_ident[task.ident]
        if not self.free:
            self._switch(task)

    # -- points --------------------------------------------------------------------------

    def point(self, task: Task, op: str, obj: str, where: int, value: Any = None) -> None:
        """``task`` is about to do ``op``: maybe another task goes first."""
        if self.free or task.state == DONE:
            return
        self.progress += 1
        task.pending = f"{op} {obj}"
        task.site = where
        if task.depth == 0:
            self._switch(task)
        self.log.append(Step(task.index, op, obj, where, value))  # it happens now

    def note(self, value: Any) -> None:
        """The value the last step read, now that it is known."""
        if self.log:
            self.log[-1].value = value

    def block(
        self,
        task: Task,
        ready: Callable[[], bool] | None,
        waits: str | Callable[[], str],
        timeout: float | None,
    ) -> str:
        """``task`` cannot go on until ``ready()`` (or ``timeout`` virtual seconds pass).
        READY, TIMEOUT, or LOST (then the caller waits for real)."""
        if self.free:
            if self.deadlock is not None:
                raise Deadlocked
            return LOST
        task.state = BLOCKED
        task.ready = ready
        task.deadline = None if timeout is None else self.clock + max(timeout, 0.0)
        task.timed_out = False
        task.waits = waits
        task.pending = "wait"
        self._switch(task)
        if self.lost is not None or self.ended:
            return LOST
        return TIMEOUT if task.timed_out else READY

    def acquire(
        self,
        task: Task,
        lock: Any,
        blocking: bool,
        timeout: float,
        waits: str | Callable[[], str],
    ) -> bool:
        """Take ``lock`` (a plain lock) as ``task``, modelling the wait for it."""
        while True:
            if lock.acquire(False):
                return True
            if not blocking:
                return False
            outcome = self.block(task, lambda: not lock.locked(), waits, _timeout(timeout))
            if outcome == TIMEOUT:
                return False
            if outcome == LOST:
                return bool(lock.acquire(True, timeout))

    # -- choosing ------------------------------------------------------------------------

    def _enabled(self) -> tuple[int, ...]:
        out = []
        for task in self.tasks:
            if task.state == BLOCKED and task.ready is not None and task.ready():
                task.state = RUNNABLE
                task.ready = None
            if task.state == RUNNABLE:
                out.append(task.index)
        return tuple(out)

    def _switch(self, me: Task) -> None:
        enabled: tuple[int, ...] = ()
        while True:
            enabled = self._enabled()
            if enabled:
                break
            if self._advance_clock() or self._grace():
                continue
            self._declare_deadlock(me)
            return
        current = me.index if me.state == RUNNABLE else None
        if me.yielding and current is not None and len(enabled) > 1:
            current = None
            enabled = tuple(i for i in enabled if i != me.index)
        me.yielding = False
        if len(enabled) == 1:
            chosen = enabled[0]
        else:
            chosen = self.plan.pick(current, enabled, [self.tasks[i].pending for i in enabled])
        nxt = self.tasks[chosen]
        if nxt is me:
            return
        if current is not None and self.log:
            self.log[-1].preempted = True  # the last step before it was stopped
        self.current = nxt
        try:
            nxt.baton.release()
        except RuntimeError:  # let go meanwhile (by the watch): it runs already
            if not self.free:
                raise
        if me.state != DONE:
            self._park(me)

    def _park(self, me: Task) -> None:
        # A short timeout, so that a task never waits on after control is let go.
        while not me.baton.acquire(True, 0.1):
            if self.free:
                break
        if self.deadlock is not None and me.state == BLOCKED:
            raise Deadlocked

    def _advance_clock(self) -> bool:
        timed = [t for t in self.tasks if t.state == BLOCKED and t.deadline is not None]
        if not timed:
            return False
        soonest = min(t.deadline for t in timed if t.deadline is not None)
        self.clock = max(self.clock, soonest)
        for task in timed:
            if task.deadline is not None and task.deadline <= soonest:
                task.state, task.ready, task.timed_out = RUNNABLE, None, True
        return True

    def _grace(self) -> bool:
        """Nobody here can run: give threads outside the run a moment to let one go."""
        if not any(t.ready is not None for t in self.tasks if t.state == BLOCKED):
            return False
        stop = time.monotonic() + _GRACE
        while time.monotonic() < stop:
            _real_sleep(0.002)
            if any(t.ready is not None and t.ready() for t in self.tasks if t.state == BLOCKED):
                return True
        return False

    def _declare_deadlock(self, me: Task) -> None:
        helpers = [
            t
            for t in threading.enumerate()
            if t.ident not in self.known
            and getattr(t, "_kata_task", (None,))[0] is not self
            and t.is_alive()
        ]
        if helpers:  # threads of a library may still wake someone: not sure, so let go
            self.let_go(f"threads outside the scheduler ({helpers[0].name}) had work left")
            return
        self.deadlock = [
            (t.index, t.waits() if callable(t.waits) else t.waits, t.site)
            for t in self.tasks
            if t.state == BLOCKED
        ]
        for task in self.tasks:
            if task is not me and task.state == BLOCKED:
                task.baton.release()
        if me.state == BLOCKED:
            raise Deadlocked

    # -- losing control ----------------------------------------------------------------

    def let_go(self, reason: str | None = None) -> None:
        """Every task runs on its own from now on."""
        if reason is not None and self.lost is None and not self.ended:
            self.lost = reason
        else:
            self.ended = True
        for task in self.tasks:
            if task is not self.current and task.state != DONE:
                with contextlib.suppress(RuntimeError):
                    task.baton.release()

    def _watch(self) -> None:
        """Notice a task that stopped reaching points while asleep in the kernel."""
        seen, since = -1, time.monotonic()
        while not self.free:
            _real_sleep(0.05)
            if self.progress != seen:
                seen, since = self.progress, time.monotonic()
                continue
            task = self.current
            alone = task is not None and all(t is task or t.state == DONE for t in self.tasks)
            if task is None or task.away or alone or time.monotonic() - since < LOST_AFTER:
                if task is not None and (task.away or alone):
                    since = time.monotonic()  # nobody waits for it: no harm in its waiting
                continue
            if sleeping(os.getpid(), task.native):
                where = _where(task)
                self.let_go(f"{task.name} blocked in a call the scheduler cannot see{where}")
                return


def _timeout(timeout: float | None) -> float | None:
    return None if timeout is None or timeout < 0 else timeout


def sleeping(pid: int, native: int | None) -> bool:
    """Whether a thread (of ``pid``, by native id) sleeps in the kernel right now: it waits
    for something, rather than runs."""
    return native is not None and procs.thread_state(pid, native) in ("S", "D")


def _where(task: Task) -> str:
    if task.ident is None:
        return ""
    import sys

    frame = sys._current_frames().get(task.ident)
    plugin = os.path.dirname(__file__)
    while frame is not None and frame.f_code.co_filename.startswith(plugin):
        frame = frame.f_back  # the plugin's own hook is not where the learner waits
    if frame is None:
        return ""
    code = frame.f_code
    return f" ({os.path.basename(code.co_filename)}:{frame.f_lineno}, in {code.co_name})"


def running() -> tuple[Scheduler, Task] | None:
    """The scheduler and the calling thread's task, if this thread is under control now."""
    sched = _active
    if sched is None or sched.free:
        return None
    task = sched.by_ident.get(_get_ident())
    return None if task is None else (sched, task)


def _forget_after_fork() -> None:
    """A forked child is not part of its parent's run of threads (its own processes are
    scheduled by :mod:`.coordinate`, if at all)."""
    global _active
    _active = None


os.register_at_fork(after_in_child=_forget_after_fork)


@contextlib.contextmanager
def controlled(plan: Plan) -> Iterator[Scheduler]:
    """Run the body under control: the calling thread is task 0."""
    global _active
    sched = Scheduler(plan)
    main = sched.add_task(threading.current_thread().name)
    sched.bind(main, _get_ident())
    main.native = threading.get_native_id()
    sched.current = main
    _active = sched
    wrapping.start_own_thread(sched._watch)
    try:
        yield sched
    finally:
        _active = None
        sched.let_go()


@contextlib.contextmanager
def away() -> Iterator[None]:
    """The calling task waits for the process coordinator: not lost, only elsewhere."""
    ctl = running()
    if ctl is None:
        yield
        return
    ctl[1].away += 1
    try:
        yield
    finally:
        ctl[1].away -= 1


def give_up(why: str) -> None:
    """Something the scheduler cannot control has begun (a Pool's threads): let go."""
    sched = _active
    if sched is not None and not sched.free:
        sched.let_go(why)


@contextlib.contextmanager
def library_call(op: str, obj: str, where: int) -> Iterator[None]:
    """A call into a library's synchronisation (an event, a barrier): one point before it,
    none inside it, where the library holds locks of its own."""
    ctl = running()
    if ctl is None:
        yield
        return
    sched, task = ctl
    if task.depth == 0:
        sched.point(task, op, obj, where)
    task.depth += 1
    try:
        yield
    finally:
        task.depth -= 1


# -- locks for code under control ------------------------------------------------------------


class ControlledLock:
    """A plain lock whose waits the scheduler models (made under control, by a library)."""

    def __init__(self) -> None:
        self._inner = _thread.allocate_lock()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        ctl = running()
        if ctl is None:
            return bool(self._inner.acquire(blocking, timeout))
        sched, task = ctl
        return sched.acquire(task, self._inner, blocking, timeout, "a library's lock")

    __enter__ = acquire

    def release(self) -> None:
        self._inner.release()

    def __exit__(self, *exc_info: Any) -> None:
        self._inner.release()

    def locked(self) -> bool:
        return bool(self._inner.locked())

    def _at_fork_reinit(self) -> None:
        self._inner = _thread.allocate_lock()


class ControlledRLock:
    """A reentrant lock, in Python over a plain one, so that the scheduler can see whether it
    is free (a C RLock says so only to its owner)."""

    def __init__(self) -> None:
        self._block = _thread.allocate_lock()
        self._owner: int | None = None
        self._count = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        me = _get_ident()
        if self._owner == me:
            self._count += 1
            return True
        ctl = running()
        if ctl is None:
            got = bool(self._block.acquire(blocking, timeout))
        else:
            sched, task = ctl
            got = sched.acquire(task, self._block, blocking, timeout, "a library's lock")
        if got:
            self._owner, self._count = me, 1
        return got

    def __enter__(self) -> bool:
        return self.acquire()

    def release(self) -> None:
        if self._owner != _get_ident():
            raise RuntimeError("cannot release un-acquired lock")
        self._count -= 1
        if not self._count:
            self._owner = None
            self._block.release()

    def __exit__(self, *exc_info: Any) -> None:
        self.release()

    def locked(self) -> bool:
        return bool(self._block.locked())

    def _is_owned(self) -> bool:
        return self._owner == _get_ident()

    def _release_save(self) -> tuple[int, int | None]:
        state = (self._count, self._owner)
        self._count, self._owner = 0, None
        self._block.release()
        return state

    def _acquire_restore(self, state: tuple[int, int | None]) -> None:
        ctl = running()
        if ctl is None:
            self._block.acquire()
        else:
            sched, task = ctl
            sched.acquire(task, self._block, True, -1, "a library's lock")
        self._count, self._owner = state

    def _at_fork_reinit(self) -> None:
        self._block = _thread.allocate_lock()
        self._owner, self._count = None, 0
