"""Hooks on locks and the other ways one thread or process waits for another: the
learner's threading and multiprocessing locks (traced), events, conditions, barriers and
semaphores (which order what happens), and thread starts and joins."""

from __future__ import annotations

import _thread
import os
import sys
import threading
import time
import types
from typing import Any, Final

from pytest_katas import control, coordinate, schedule, trace
from pytest_katas.wrapping import MP_DIR, from_learner, install_wrapper, new_id, patched

__all__ = ["Lock", "RLock", "TracedLock", "TracedRLock", "install", "semlock_id"]


# -- multiprocessing locks and semaphores ------------------------------------------------


_LOCK_MAKERS: Final = frozenset(MP_DIR + name for name in ("synchronize.py", "context.py"))


def _lock_name(line: int | None) -> str:
    """A lock as a deadlock report names it."""
    return f"the lock made at line {line}" if line else "a lock"


def semlock_id(semlock: Any) -> str:
    """The same in every process: the semaphore's name (spawn), else its address (fork)."""
    name = getattr(semlock, "name", None)
    return f"n{name}" if name else f"h{semlock.handle:x}"


def _patch_semlock() -> None:
    from multiprocessing import synchronize

    cls: Any = synchronize.SemLock
    if patched(cls, "_make_methods"):
        return
    init, make_methods = cls.__init__, cls._make_methods
    getstate, setstate = cls.__getstate__, cls.__setstate__
    condition_parts = (synchronize.Condition.__init__.__code__, synchronize.Event.__init__.__code__)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        # A learner's lock is made by learner code through multiprocessing.Lock() (and its
        # kin) alone; the locks inside a Queue, a Condition or an Event are their parts.
        frame: Any = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename in _LOCK_MAKERS:
            if frame.f_code in condition_parts:
                return
            frame = frame.f_back
        if frame is not None and frame.f_code.co_filename in trace._files:
            self._kata_lock = new_id("L")
            self._kata_made = frame.f_lineno  # for a deadlock's "the lock made at line N"
            lock_like = self._semlock.maxvalue == 1
            trace.record("lock", self._kata_lock, [type(self).__name__, lock_like])

    def _make_methods(self: Any) -> None:
        make_methods(self)
        c_acquire, c_release = self._semlock.acquire, self._semlock.release
        lock_like = self._semlock.maxvalue == 1

        def acquire(block: bool = True, timeout: float | None = None) -> bool:
            schedule.jitter(0.1, 0.001)
            lock = getattr(self, "_kata_lock", None)
            if lock is not None and block and timeout is None and coordinate.active():
                where = trace.site()
                name = _lock_name(getattr(self, "_kata_made", None))
                probe = lambda: bool(c_acquire(False))  # noqa: E731
                if coordinate.attempt("acq", lock, where, probe, name):
                    trace.access("acq" if lock_like else "hb-", lock, None, where)
                    return True
            got = c_acquire(False)
            if not got and block:
                entered = getattr(self, "_kata_with", None)
                if lock is not None and timeout is None and lock_like and entered is not None:
                    _held_by_caller(lock, entered)
                with trace.waiting("acquire", lock or "lock", timeout is not None, trace.site()):
                    got = c_acquire(True, timeout)
            if got and lock is not None:
                trace.access("acq" if lock_like else "hb-", lock)
            return bool(got)

        def release() -> None:
            lock = getattr(self, "_kata_lock", None)
            if lock is not None:
                self._kata_with = None
                coordinate.point("rel", lock, trace.site())
                trace.access("rel" if lock_like else "hb+", lock)
            c_release()
            schedule.jitter(0.1, 0.001)

        self.acquire, self.release = acquire, release

    def __enter__(self: Any) -> bool:
        got = bool(self.acquire())
        if getattr(self, "_kata_lock", None) is not None and trace.tracing():
            self._kata_with = _entered(sys._getframe(1))
        return got

    def __exit__(self: Any, *exc_info: Any) -> None:
        self.release()

    def __getstate__(self: Any) -> Any:
        ids = (getattr(self, "_kata_lock", None), getattr(self, "_kata_made", None))
        return (getstate(self), ids)

    def __setstate__(self: Any, state: Any) -> None:
        inner, (lock, made) = state
        setstate(self, inner)
        if lock is not None:
            self._kata_lock, self._kata_made = lock, made

    for name, wrapper in (
        ("__init__", __init__),
        ("_make_methods", _make_methods),
        ("__enter__", __enter__),
        ("__exit__", __exit__),
        ("__getstate__", __getstate__),
        ("__setstate__", __setstate__),
    ):
        install_wrapper(cls, name, wrapper)


def _patch_mp_sync() -> None:
    """multiprocessing's Event and Condition order what happens across processes."""
    from multiprocessing import synchronize

    if patched(synchronize.Event, "wait"):
        return
    event_set, event_wait = synchronize.Event.set, synchronize.Event.wait

    def set_(self: Any) -> None:
        trace.access("hb+", semlock_id(self._flag._semlock))
        event_set(self)

    def mp_event_wait_(self: Any, timeout: float | None = None) -> bool:
        with trace.waiting("wait", "event", timeout is not None, trace.site()):
            got = event_wait(self, timeout)
        if got:
            trace.access("hb-", semlock_id(self._flag._semlock))
        return bool(got)

    install_wrapper(synchronize.Event, "set", set_)
    install_wrapper(synchronize.Event, "wait", mp_event_wait_)

    cond = synchronize.Condition
    cond_wait, notify, notify_all = cond.wait, cond.notify, cond.notify_all

    def cond_wait_(self: Any, timeout: float | None = None) -> bool:
        key = semlock_id(self._lock._semlock)
        with trace.waiting("wait", "condition", timeout is not None, trace.site()):
            got = cond_wait(self, timeout)
        trace.access("hb-", key)
        return bool(got)

    def notify_(self: Any, n: int = 1) -> None:
        trace.access("hb+", semlock_id(self._lock._semlock))
        notify(self, n)

    def notify_all_(self: Any) -> None:
        trace.access("hb+", semlock_id(self._lock._semlock))
        notify_all(self)

    install_wrapper(cond, "wait", cond_wait_)
    install_wrapper(cond, "notify", notify_)
    install_wrapper(cond, "notify_all", notify_all_)


# -- a thread that asks again for a Lock it holds ---------------------------------------------

# Who holds a Lock by `with`: the process and thread (a forked child has a copy of the lock,
# and its main thread the ident of the thread that forked), and the function and line.
_Entered = tuple[int, int, str, int]


def _entered(frame: Any) -> _Entered:
    """The `with` that took a lock: its thread, and its learner function and line (a
    Condition's `with` goes through the stdlib first: up to four frames out)."""
    files, first = trace._files, frame
    for _ in range(4):
        if frame.f_code.co_filename in files:
            return os.getpid(), _thread.get_ident(), frame.f_code.co_name, trace.encode(frame)
        frame = frame.f_back
        if frame is None:
            break
    return os.getpid(), _thread.get_ident(), first.f_code.co_name, -1


def _held_by_caller(lock: str, entered: _Entered) -> None:
    """A blocking acquire, with no timeout, of a Lock (not reentrant) that failed: if the
    calling thread holds that Lock by a `with` it has not left, it waits for itself for
    ever. Nobody else may release it for it (the `with` would then release a lock it no
    longer holds), so this is a deadlock already: record it and stop the thread at once,
    instead of letting the test sit out its deadline. Only while the trace is on: the
    audit names it from the trace (:func:`.findings.self_deadlock`)."""
    pid, ident, holder, took = entered
    if ident != _thread.get_ident() or pid != os.getpid() or not trace.tracing():
        return
    where = trace.site()
    asking = trace.learner_frame(sys._getframe(1))
    asker = asking.f_code.co_name if asking is not None else "?"
    trace.record("relock", lock, [holder, took, asker], where)
    trace.flush()
    raise control.SelfDeadlocked(
        f"{holder}() asked again for a Lock this thread already holds: it waits for itself"
    )


# -- threads and their locks -----------------------------------------------------------------


class TracedLock:
    """A learner's ``threading.Lock``: the real lock, with each acquire and release traced."""

    _kind = "acq"
    _reentrant = False

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._kata_holder: control.Task | None = None
        self._kata_took = -1  # where the controlled holder took it
        self._kata_with: _Entered | None = None  # who holds it by `with`, and from where
        self._kata_lock = new_id("l")
        kind = type(self).__name__.removeprefix("Traced")
        self._kata_made = trace.site(3)
        trace.record("lock", self._kata_lock, [kind, True], self._kata_made)

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        ctl = control.running()
        if ctl is not None:
            return self._controlled_acquire(*ctl, blocking, timeout)
        got = self._inner.acquire(False)
        if not got and blocking:
            entered = self._kata_with
            if entered is not None and timeout < 0 and not self._reentrant:
                _held_by_caller(self._kata_lock, entered)
            with trace.waiting("acquire", self._kata_lock, timeout >= 0, trace.site()):
                got = self._inner.acquire(True, timeout)
        if got:
            trace.access("acq", self._kata_lock)
        return bool(got)

    def _controlled_acquire(
        self, sched: control.Scheduler, task: control.Task, blocking: bool, timeout: float
    ) -> bool:
        where = trace.site(3)
        sched.point(task, "acq", self._kata_lock, where)
        holder = self._kata_holder

        took = self._kata_took

        def waits() -> str:
            made = self._kata_made % trace.SITE_BASE if self._kata_made >= 0 else None
            if holder is task:  # a Lock is not reentrant: its holder waits for itself
                at = f" at line {took % trace.SITE_BASE}" if took >= 0 else ""
                return (
                    f"acquire of {_lock_name(made)}, a Lock this thread already holds (it "
                    f"took it{at}): it waits for itself"
                )
            held = f", held by #{holder.index}" if holder is not None else ""
            return f"acquire of {_lock_name(made)}{held}"

        got = sched.acquire(task, self._inner, blocking, timeout, waits)
        if got:
            if not self._nested():
                self._kata_holder = task
                self._kata_took = where
            trace.access("acq", self._kata_lock, None, where)
        return got

    def _nested(self) -> bool:
        """Held more than once by its owner (an RLock taken again): still held after one
        release, and not newly taken by one more acquire."""
        return False

    def release(self) -> None:
        ctl = control.running()
        if ctl is not None:
            ctl[0].point(ctl[1], "rel", self._kata_lock, trace.site())
        trace.access("rel", self._kata_lock)
        if not self._nested():
            self._kata_holder = None
            self._kata_with = None
        self._inner.release()

    def locked(self) -> bool:
        return bool(self._inner.locked())

    def __enter__(self) -> bool:
        got = self.acquire()
        if trace.tracing():  # only the trace can name a self-deadlock (_held_by_caller)
            self._kata_with = _entered(sys._getframe(1))
        return got

    def __exit__(self, *exc_info: Any) -> None:
        self.release()

    def _at_fork_reinit(self) -> None:
        self._inner._at_fork_reinit()

    def __repr__(self) -> str:
        return repr(self._inner)


class TracedRLock(TracedLock):
    """A learner's ``threading.RLock``; it also serves a Condition made by learner code."""

    _reentrant = True

    def _is_owned(self) -> bool:
        return bool(self._inner._is_owned())

    def _nested(self) -> bool:
        return bool(self._inner._count > 1)

    def _release_save(self) -> Any:
        trace.access("rel", self._kata_lock)
        return self._inner._release_save()

    def _acquire_restore(self, state: Any) -> None:
        self._inner._acquire_restore(state)
        trace.access("acq", self._kata_lock)


class _LockType(type):
    """``threading.Lock`` is a class from 3.13 on: keep ``isinstance`` working on it."""

    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, (_NATIVE_LOCK, TracedLock)) and not isinstance(obj, TracedRLock)

    def __call__(cls) -> Any:
        if from_learner(2):
            return TracedLock(_thread.allocate_lock())
        if control.running() is not None and not _thread_internal():
            return control.ControlledLock()
        return _thread.allocate_lock()


_NATIVE_LOCK: Final = type(_thread.allocate_lock())
_NATIVE_RLOCK: Final = threading.RLock


class Lock(metaclass=_LockType):
    """Stands in for ``threading.Lock``: learner code gets a traced lock, others the real one."""


def RLock(*args: Any, **kwargs: Any) -> Any:  # noqa: N802 - threading's name
    # A learner's RLock is one the scheduler can see into (a C RLock tells only its owner
    # whether it is held); so is a library's RLock made under control.
    if from_learner(2):
        return TracedRLock(control.ControlledRLock())
    if control.running() is not None and not _thread_internal():
        return control.ControlledRLock()
    return _NATIVE_RLOCK(*args, **kwargs)


def _allocate_lock() -> Any:
    """``threading._allocate_lock``: a Condition's waiter made under control is seen too."""
    if control.running() is not None and not _thread_internal():
        return control.ControlledLock()
    return _thread.allocate_lock()


_INTERNALS: set[types.CodeType] = set()


def _thread_internal() -> bool:
    """Whether a lock is being made for a Thread's own bookkeeping (its 'started' event):
    that one stays native, as the new thread sets it before it is under control."""
    frame: Any = sys._getframe(2)
    for _ in range(8):
        if frame is None:
            return False
        if frame.f_code in _INTERNALS:
            return True
        frame = frame.f_back
    return False


_real_sleep = time.sleep


def _sleep(seconds: float) -> None:
    """``time.sleep``: under control, virtual (a sleep lets others run, and costs nothing)."""
    ctl = control.running()
    if ctl is None:
        if coordinate.active():  # a scheduled process: its turn order is the coordinator's
            coordinate.point("sleep", f"{seconds:g}", trace.site())
            return
        _real_sleep(seconds)
        return
    sched, task = ctl
    sched.point(task, "sleep", f"{seconds:g}", trace.site())
    if sched.block(task, None, f"sleep({seconds:g})", float(seconds)) == control.LOST:
        _real_sleep(seconds)


def _controls(thread: threading.Thread) -> control.Task | None:
    """``thread``'s task, if it runs under the scheduler that controls the caller."""
    owned = getattr(thread, "_kata_task", None)
    sched = control._active
    return owned[1] if owned is not None and owned[0] is sched else None


def _starter_controls() -> bool:
    """Whether start() was called from code we schedule (the learner's or a test's), not
    from the stdlib or the plugin, whose helper threads go their own way."""
    frame: Any = sys._getframe(2)  # 0 is here, 1 the start() wrapper
    name = frame.f_code.co_filename if frame is not None else ""
    return not name.startswith(_UNSCHEDULED)


_UNSCHEDULED: Final = (os.path.dirname(threading.__file__) + os.sep, os.path.dirname(__file__))


def _patch_threading() -> None:
    cls = threading.Thread
    if patched(cls, "join"):
        return
    threading.Lock = Lock  # type: ignore[assignment,misc,unused-ignore]
    # Pickle finds a function by its name: the real RLock (a Manager registers it, and
    # sends it to its server) must still be found under a name of its own.
    _NATIVE_RLOCK.__qualname__ = _NATIVE_RLOCK.__name__ = "_kata_native_RLock"
    threading._kata_native_RLock = _NATIVE_RLOCK  # type: ignore[attr-defined]
    threading.RLock = RLock  # type: ignore[assignment]
    threading._allocate_lock = _allocate_lock  # type: ignore[attr-defined]
    time.sleep = _sleep  # type: ignore[assignment]
    start, join, is_alive = cls.start, cls.join, cls.is_alive
    bootstrap = cls._bootstrap_inner  # type: ignore[attr-defined]
    _INTERNALS.update((cls.__init__.__code__, start.__code__))

    def start_(self: threading.Thread) -> None:
        self._kata_site = _start_site()  # type: ignore[attr-defined]
        token = self._kata_token = new_id("t")  # type: ignore[attr-defined]
        trace.record("tstart", token, self.name)
        ctl = control.running()
        if ctl is None or not _starter_controls():
            start(self)
            return
        sched, me = ctl
        sched.point(me, "start", f"#{len(sched.tasks)}", trace.site())
        task = sched.add_task(self.name)
        self._kata_task = (sched, task)  # type: ignore[attr-defined]
        run = self.run

        def run_under_control() -> None:
            sched.enter(task)
            try:
                run()
            except control.Deadlocked:
                pass
            finally:
                sched.leave(task)

        self.run = run_under_control  # type: ignore[method-assign]
        me.depth += 1  # start() waits for the thread to exist: no point in there
        try:
            start(self)
        finally:
            me.depth -= 1
        sched.bind(task, self.ident or 0)

    def bootstrap_(self: threading.Thread) -> None:
        trace.name_thread(self.name)
        trace.record("tbegin", getattr(self, "_kata_token", ""), self.name)
        try:
            bootstrap(self)
        finally:
            trace.record("tend", getattr(self, "_kata_token", ""))
            trace.thread_done()

    def seen_end(thread: threading.Thread) -> None:
        """``thread`` is known to have ended: a join, as the trace counts them."""
        token = getattr(thread, "_kata_token", None)
        if token is not None and not getattr(thread, "_kata_seen_end", False):
            thread._kata_seen_end = True  # type: ignore[attr-defined]
            trace.record("tjoin", token)

    def thread_join_(self: threading.Thread, timeout: float | None = None) -> None:
        ctl, task = control.running(), _controls(self)
        if ctl is not None and task is not None and self._started.is_set():  # type: ignore[attr-defined]
            sched, me = ctl
            sched.point(me, "join", f"#{task.index}", trace.site())
            outcome = sched.block(
                me, lambda: task.state == control.DONE, f"join() of #{task.index}", timeout
            )
            if outcome == control.TIMEOUT:
                return
            join(self, None if outcome == control.READY else timeout)
        else:
            with trace.waiting("join", self.name, timeout is not None, trace.site()):
                join(self, timeout)
        if not is_alive(self):
            seen_end(self)

    def is_alive_(self: threading.Thread) -> bool:
        # Learner code that finds a thread dead has waited for its end as surely as a
        # join() would (a server that drops the client threads it finds dead, say).
        alive = bool(is_alive(self))
        task = _controls(self)
        if task is not None and self._started.is_set():  # type: ignore[attr-defined]
            ctl = control.running()
            if ctl is not None and from_learner(2):  # a learner polling: let the others go
                ctl[1].yielding = True
                ctl[0].point(ctl[1], "is_alive", f"#{task.index}", trace.site())
            alive = task.state != control.DONE
        if not alive and self._started.is_set() and from_learner(2):  # type: ignore[attr-defined]
            seen_end(self)
        return alive

    install_wrapper(cls, "start", start_)
    install_wrapper(cls, "_bootstrap_inner", bootstrap_)
    install_wrapper(cls, "join", thread_join_)
    install_wrapper(cls, "is_alive", is_alive_)

    cond = threading.Condition
    cond_init, cond_wait, notify = cond.__init__, cond.wait, cond.notify

    def cond_init_(self: Any, lock: Any = None) -> None:
        if lock is None and from_learner(2):
            lock = TracedRLock(control.ControlledRLock())
        cond_init(self, lock)

    def cond_wait_(self: Any, timeout: float | None = None) -> bool:
        where = trace.site()
        with control.library_call("wait", "condition", where):
            with trace.waiting("wait", "condition", timeout is not None, where):
                got = cond_wait(self, timeout)
        trace.access("hb-", f"c{id(self):x}")
        return bool(got)

    def notify_(self: Any, n: int = 1) -> None:
        trace.access("hb+", f"c{id(self):x}")
        with control.library_call("notify", "condition", trace.site()):
            notify(self, n)

    install_wrapper(cond, "__init__", cond_init_)
    install_wrapper(cond, "wait", cond_wait_)
    install_wrapper(cond, "notify", notify_)

    event_set, event_wait = threading.Event.set, threading.Event.wait

    def set_(self: Any) -> None:
        trace.access("hb+", f"e{id(self):x}")
        with control.library_call("set", "event", trace.site()):
            event_set(self)

    def event_wait_(self: Any, timeout: float | None = None) -> bool:
        where = trace.site()
        with control.library_call("wait", "event", where):
            with trace.waiting("wait", "event", timeout is not None, where):
                got = event_wait(self, timeout)
        if got:
            trace.access("hb-", f"e{id(self):x}")
        return bool(got)

    install_wrapper(threading.Event, "set", set_)
    install_wrapper(threading.Event, "wait", event_wait_)

    barrier_wait = threading.Barrier.wait

    def barrier_wait_(self: Any, timeout: float | None = None) -> int:
        key = _barrier_id(self)
        trace.access("hb+", key)
        where = trace.site()
        with control.library_call("wait", "barrier", where):
            with trace.waiting("wait", "barrier", timeout is not None, where):
                index = barrier_wait(self, timeout)
        trace.access("hb-", key)
        return int(index)

    install_wrapper(threading.Barrier, "wait", barrier_wait_)

    sem_acquire, sem_release = threading.Semaphore.acquire, threading.Semaphore.release

    def sem_acquire_(self: Any, blocking: bool = True, timeout: float | None = None) -> bool:
        where = trace.site()
        if blocking:
            trace.wait_begin("acquire", "semaphore", timeout is not None, where)
        try:
            with control.library_call("acquire", "semaphore", where):
                got = sem_acquire(self, blocking, timeout)
        finally:
            if blocking:
                trace.wait_end()
        if got:
            trace.access("hb-", f"S{id(self):x}")
        return bool(got)

    def sem_release_(self: Any, n: int = 1) -> None:
        trace.access("hb+", f"S{id(self):x}")
        with control.library_call("release", "semaphore", trace.site()):
            sem_release(self, n)

    install_wrapper(threading.Semaphore, "acquire", sem_acquire_)
    install_wrapper(threading.Semaphore, "release", sem_release_)
    threading.Semaphore.__enter__ = sem_acquire_  # type: ignore[method-assign]


def _start_site() -> str | None:
    """Where a thread is being started, for a leak report: the innermost learner line,
    else the line that called start() (the stdlib's own threads say where they belong)."""
    caller: Any = sys._getframe(2)  # 0 is here, 1 the start() wrapper
    frame = caller
    while frame is not None:
        if frame.f_code.co_filename in trace._files:
            return f"{frame.f_code.co_filename}:{frame.f_lineno}"
        frame = frame.f_back
    return f"{caller.f_code.co_filename}:{caller.f_lineno}" if caller is not None else None


def _barrier_id(barrier: Any) -> str:
    lock = getattr(barrier._cond, "_lock", None)
    semlock = getattr(lock, "_semlock", None)
    return semlock_id(semlock) if semlock is not None else f"b{id(barrier):x}"


def install() -> None:
    _patch_semlock()
    _patch_mp_sync()
    _patch_threading()
