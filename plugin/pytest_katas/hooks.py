"""The hooks on every IPC and synchronisation call of a kata test's processes.

Each wrapper does up to three jobs: it records the call in the trace (:mod:`.trace`), says
in the status table when the calling thread waits, and adds schedule noise
(:mod:`.schedule`) while a stress run has it on. Only what the learner made is traced as the
learner's: pipes, locks and sockets made by learner code, and attributes of the learner's own
classes; the stdlib's own pipes and locks only report when they make a thread wait.
"""

from __future__ import annotations

import _thread
import itertools
import os
import socket
import sys
import threading
import types
import zlib
from collections.abc import Callable
from typing import Any, Final

from pytest_katas import schedule, trace

__all__ = ["TracedLock", "TracedRLock", "install", "instrument"]

_MP_DIR: Final = os.path.dirname(threading.__file__) + os.sep + "multiprocessing" + os.sep
_THREADING: Final = threading.__file__
_CONTEXT: Final = _MP_DIR + "context.py"
_ids = itertools.count(1)
PIPE_BUF: Final = 4096  # bytes the kernel writes to a pipe in one piece


def _new_id(prefix: str) -> str:
    return f"{prefix}{os.getpid()}.{next(_ids)}"


def _made_by_learner(skip: int = 2) -> bool:
    """Whether a pipe being made was asked for by learner code itself (maybe through
    ``multiprocessing.Pipe``), not by a Queue or a Pool for their own use."""
    frame: Any = sys._getframe(skip)
    if frame is not None and frame.f_code.co_filename == _CONTEXT:
        frame = frame.f_back
    return frame is not None and frame.f_code.co_filename in trace._files


def _patched(owner: Any, name: str) -> bool:
    return getattr(getattr(owner, name, None), "_kata_hook", False)


def _install(owner: Any, name: str, wrapper: Callable[..., Any]) -> None:
    wrapper._kata_hook = True  # type: ignore[attr-defined]
    setattr(owner, name, wrapper)


# -- pipes and connections -------------------------------------------------------------

_open_ends: dict[str, int] = {}  # learner pipe ends open in this process -> their fd


def _mark_end(conn: Any, end: str) -> None:
    conn._kata_end = end
    _open_ends[end] = conn.fileno()


def _patch_connections() -> None:
    from multiprocessing import connection, reduction

    cls: Any = connection.Connection
    if _patched(cls, "_send_bytes"):
        return
    original_pipe = connection.Pipe

    def Pipe(duplex: bool = True) -> tuple[Any, Any]:  # noqa: N802 - the library's name
        a, b = original_pipe(duplex)
        if _made_by_learner():
            if duplex:
                ends = [f"s{os.fstat(c.fileno()).st_ino}" for c in (a, b)]
            else:
                inode = os.fstat(a.fileno()).st_ino
                ends = [f"p{inode}r", f"p{inode}w"]
            _mark_end(a, ends[0])
            _mark_end(b, ends[1])
            trace.record("pipe", f"P{ends[0][1:].rstrip('rw')}", [*ends, duplex])
        return a, b

    _install(connection, "Pipe", Pipe)

    send_bytes, recv_bytes, recv, close = cls._send_bytes, cls._recv_bytes, cls.recv, cls.close

    def _send_bytes(self: Any, buf: Any) -> None:
        schedule.jitter(0.1, 0.001)
        end = getattr(self, "_kata_end", None)
        if end is not None:
            trace.access("send", end, len(buf))
        trace.wait_begin("send", end or f"fd:{self._handle}", False, trace.site())
        try:
            send_bytes(self, buf)
        finally:
            trace.wait_end()

    def _recv_bytes(self: Any, maxsize: int | None = None) -> Any:
        end = getattr(self, "_kata_end", None)
        where = trace.site() if end is not None else -1
        started = trace._now()
        trace.wait_begin("recv", end or f"fd:{self._handle}", False, where)
        try:
            buf = recv_bytes(self, maxsize)
        except EOFError:
            if end is not None:
                trace.access("recv", end, [0, started, "EOF"], where)
            raise
        except OSError as exc:
            if end is not None:
                trace.access("recv", end, [0, started, type(exc).__name__], where)
            raise
        finally:
            trace.wait_end()
        if end is not None:
            trace.access("recv", end, [len(buf.getbuffer()), started, None], where)
        schedule.jitter(0.1, 0.001)
        return buf

    def recv_(self: Any) -> Any:
        try:
            return recv(self)
        except (EOFError, OSError):
            raise
        except Exception as exc:
            end = getattr(self, "_kata_end", None)
            if end is not None:  # the bytes were not one whole message: torn by a second reader
                trace.access("garbled", end, type(exc).__name__)
            raise

    def close_(self: Any) -> None:
        end = getattr(self, "_kata_end", None)
        if end is not None and self._handle is not None:
            _open_ends.pop(end, None)
            trace.record("close", end)
        close(self)

    _install(cls, "_send_bytes", _send_bytes)
    _install(cls, "_recv_bytes", _recv_bytes)
    _install(cls, "recv", recv_)
    _install(cls, "close", close_)

    poll = connection._ConnectionBase.poll

    def poll_(self: Any, timeout: float | None = 0.0) -> bool:
        if timeout is not None and timeout <= 0:
            return bool(poll(self, timeout))
        end = getattr(self, "_kata_end", None) or f"fd:{self._handle}"
        trace.wait_begin("poll", end, timeout is not None)
        try:
            return bool(poll(self, timeout))
        finally:
            trace.wait_end()

    _install(connection._ConnectionBase, "poll", poll_)

    # Under spawn and forkserver an end travels pickled: it must stay the learner's there.
    reduce_connection = connection.reduce_connection  # type: ignore[attr-defined]

    def _reduce(conn: Any) -> Any:
        rebuild, args = reduce_connection(conn)
        end = getattr(conn, "_kata_end", None)
        return (rebuild, args) if end is None else (_rebuild_end, (rebuild, args, end))

    reduction.register(cls, _reduce)


def _rebuild_end(rebuild: Callable[..., Any], args: tuple[Any, ...], end: str) -> Any:
    conn = rebuild(*args)
    _mark_end(conn, end)
    trace.record("received", end, conn.fileno())
    return conn


def _note_inherited_ends() -> None:
    """After a fork, this process holds a copy of every learner pipe end its parent had."""
    for end, fd in list(_open_ends.items()):
        trace.record("inherit", end, fd)


# -- multiprocessing locks and semaphores ------------------------------------------------


_LOCK_MAKERS: Final = frozenset(_MP_DIR + name for name in ("synchronize.py", "context.py"))


def _semlock_id(semlock: Any) -> str:
    """The same in every process: the semaphore's name (spawn), else its address (fork)."""
    name = getattr(semlock, "name", None)
    return f"n{name}" if name else f"h{semlock.handle:x}"


def _patch_semlock() -> None:
    from multiprocessing import synchronize

    cls: Any = synchronize.SemLock
    if _patched(cls, "_make_methods"):
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
            self._kata_lock = _new_id("L")
            lock_like = self._semlock.maxvalue == 1
            trace.record("lock", self._kata_lock, [type(self).__name__, lock_like])

    def _make_methods(self: Any) -> None:
        make_methods(self)
        c_acquire, c_release = self._semlock.acquire, self._semlock.release
        lock_like = self._semlock.maxvalue == 1

        def acquire(block: bool = True, timeout: float | None = None) -> bool:
            schedule.jitter(0.1, 0.001)
            lock = getattr(self, "_kata_lock", None)
            got = c_acquire(False)
            if not got and block:
                trace.wait_begin("acquire", lock or "lock", timeout is not None, trace.site())
                try:
                    got = c_acquire(True, timeout)
                finally:
                    trace.wait_end()
            if got and lock is not None:
                trace.access("acq" if lock_like else "hb-", lock)
            return bool(got)

        def release() -> None:
            lock = getattr(self, "_kata_lock", None)
            if lock is not None:
                trace.access("rel" if lock_like else "hb+", lock)
            c_release()
            schedule.jitter(0.1, 0.001)

        self.acquire, self.release = acquire, release

    def __enter__(self: Any) -> bool:
        return bool(self.acquire())

    def __exit__(self: Any, *exc_info: Any) -> None:
        self.release()

    def __getstate__(self: Any) -> Any:
        return (getstate(self), getattr(self, "_kata_lock", None))

    def __setstate__(self: Any, state: Any) -> None:
        inner, lock = state
        setstate(self, inner)
        if lock is not None:
            self._kata_lock = lock

    for name, wrapper in (
        ("__init__", __init__),
        ("_make_methods", _make_methods),
        ("__enter__", __enter__),
        ("__exit__", __exit__),
        ("__getstate__", __getstate__),
        ("__setstate__", __setstate__),
    ):
        _install(cls, name, wrapper)


def _patch_mp_sync() -> None:
    """multiprocessing's Event and Condition order what happens across processes."""
    from multiprocessing import synchronize

    if _patched(synchronize.Event, "wait"):
        return
    event_set, event_wait = synchronize.Event.set, synchronize.Event.wait

    def set_(self: Any) -> None:
        trace.access("hb+", _semlock_id(self._flag._semlock))
        event_set(self)

    def mp_event_wait_(self: Any, timeout: float | None = None) -> bool:
        trace.wait_begin("wait", "event", timeout is not None, trace.site())
        try:
            got = event_wait(self, timeout)
        finally:
            trace.wait_end()
        if got:
            trace.access("hb-", _semlock_id(self._flag._semlock))
        return bool(got)

    _install(synchronize.Event, "set", set_)
    _install(synchronize.Event, "wait", mp_event_wait_)

    cond = synchronize.Condition
    cond_wait, notify, notify_all = cond.wait, cond.notify, cond.notify_all

    def cond_wait_(self: Any, timeout: float | None = None) -> bool:
        key = _semlock_id(self._lock._semlock)
        trace.wait_begin("wait", "condition", timeout is not None, trace.site())
        try:
            got = cond_wait(self, timeout)
        finally:
            trace.wait_end()
        trace.access("hb-", key)
        return bool(got)

    def notify_(self: Any, n: int = 1) -> None:
        trace.access("hb+", _semlock_id(self._lock._semlock))
        notify(self, n)

    def notify_all_(self: Any) -> None:
        trace.access("hb+", _semlock_id(self._lock._semlock))
        notify_all(self)

    _install(cond, "wait", cond_wait_)
    _install(cond, "notify", notify_)
    _install(cond, "notify_all", notify_all_)


# -- queues ------------------------------------------------------------------------------


def _patch_queues() -> None:
    import queue
    from multiprocessing import queues

    if _patched(queues.Queue, "get"):
        return
    mp_put, mp_get = queues.Queue.put, queues.Queue.get

    def mp_queue_id(q: Any) -> str:
        return f"q{os.fstat(q._reader.fileno()).st_ino}"

    def put(self: Any, obj: Any, block: bool = True, timeout: float | None = None) -> None:
        schedule.jitter(0.2, 0.001)
        trace.access("put", mp_queue_id(self))
        bounded = self._maxsize > 0 and block
        if bounded:
            trace.wait_begin("put", "queue", timeout is not None, trace.site())
        try:
            mp_put(self, obj, block, timeout)
        finally:
            if bounded:
                trace.wait_end()

    def get(self: Any, block: bool = True, timeout: float | None = None) -> Any:
        if block:
            trace.wait_begin("get", "queue", timeout is not None, trace.site())
        try:
            item = mp_get(self, block, timeout)
        finally:
            if block:
                trace.wait_end()
        trace.access("get", mp_queue_id(self))
        schedule.jitter(0.2, 0.001)
        return item

    _install(queues.Queue, "put", put)
    _install(queues.Queue, "get", get)

    q_put, q_get = queue.Queue.put, queue.Queue.get

    def q_put_(self: Any, item: Any, block: bool = True, timeout: float | None = None) -> None:
        trace.access("put", f"t{id(self):x}")
        q_put(self, item, block, timeout)

    def q_get_(self: Any, block: bool = True, timeout: float | None = None) -> Any:
        item = q_get(self, block, timeout)
        trace.access("get", f"t{id(self):x}")
        return item

    _install(queue.Queue, "put", q_put_)
    _install(queue.Queue, "get", q_get_)


# -- Manager proxies ---------------------------------------------------------------------

_READS: Final = frozenset({"__getitem__", "get", "__contains__", "__getattribute__", "__getattr__"})
_WRITES: Final = frozenset({"__setitem__", "__delitem__", "pop", "setdefault", "__setattr__"})
_LOCKS: Final = frozenset({"Lock", "RLock"})
_SIGNALS: Final = frozenset({"Event", "Condition", "Semaphore", "BoundedSemaphore", "Barrier"})
_QUEUES: Final = frozenset({"Queue", "JoinableQueue"})


def _small(value: Any) -> Any:
    """A value small enough to show in an interleaving table, else its type."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str) and len(value) <= 24:
        return value
    return f"<{type(value).__name__}>"


def _proxy_event(typeid: str, method: str, args: tuple[Any, ...]) -> tuple[str, Any, bool]:
    """(op, key, before) for one proxy call: what the trace says the call did."""
    if typeid in _LOCKS:
        if method in ("acquire", "__enter__"):
            return "acq", None, False
        if method in ("release", "__exit__"):
            return "rel", None, True
    elif typeid in _SIGNALS:
        if method in ("set", "notify", "notify_all", "release"):
            return "hb+", None, True
        if method in ("wait", "acquire", "wait_for"):
            return "hb-", None, False
    elif typeid in _QUEUES:
        if method in ("put", "put_nowait"):
            return "put", None, True
        if method in ("get", "get_nowait"):
            return "get", None, False
    elif typeid == "Value" and method in ("get", "set"):
        return ("read" if method == "get" else "write"), "value", method == "set"
    if method in _READS and args:
        return "read", args[0], False
    if method in _WRITES and args:
        return "write", args[0], True
    if method == "update":
        return "write", "*", True
    return "call", None, False


_BLOCKING_CALLS: Final = frozenset({"acquire", "__enter__", "wait", "wait_for", "get", "join"})


def _has_timeout(method: str, args: tuple[Any, ...], kwds: dict[str, Any]) -> bool:
    """Whether a blocking proxy call gives up after a while (or does not block at all)."""
    if kwds.get("timeout") is not None or kwds.get("block", kwds.get("blocking", True)) is False:
        return True
    if method == "wait":  # wait(timeout)
        return bool(args) and args[0] is not None
    if args and args[0] is False:  # acquire(False), get(False)
        return True
    return len(args) > 1 and args[1] is not None  # acquire(True, 5), get(True, 5)


def _patch_proxies() -> None:
    from multiprocessing import managers

    cls = managers.BaseProxy
    if _patched(cls, "_callmethod"):
        return
    callmethod = cls._callmethod

    def _callmethod(
        self: Any, methodname: str, args: tuple[Any, ...] = (), kwds: Any = None
    ) -> Any:
        kwds = kwds or {}
        where = trace.site()
        token = self._token
        if where < 0 or methodname in ("#GETVALUE", "__repr__", "__str__"):
            result = callmethod(self, methodname, args, kwds)
            schedule.jitter(0.1, 0.002)
            return result
        ref = f"m{token.id}@{zlib.crc32(repr(token.address).encode()) & 0xFFFF:04x}"
        op, key, before = _proxy_event(token.typeid, methodname, args)
        obj = ref if key is None else f"{ref}[{key!r}]"
        value = _small(args[1] if len(args) > 1 else args[0] if args else None)
        if before:
            trace.access(op, obj, [token.typeid, methodname, value], where)
        waits = methodname in _BLOCKING_CALLS and token.typeid in _LOCKS | _SIGNALS | _QUEUES
        # A call the server answers at once is in flight, not waiting: only a lock, an event
        # or a queue can keep it waiting for another process.
        timed = not waits or _has_timeout(methodname, args, kwds)
        trace.wait_begin(methodname, ref, timed, where)
        try:
            result = callmethod(self, methodname, args, kwds)
        finally:
            trace.wait_end()
        if not before and (op != "acq" or result is not False):
            trace.access(op, obj, [token.typeid, methodname, _small(result)], where)
        schedule.jitter(0.1, 0.002)
        return result

    _install(cls, "_callmethod", _callmethod)


# -- processes and pools --------------------------------------------------------------------


def _patch_processes() -> None:
    from multiprocessing import process

    cls = process.BaseProcess
    if _patched(cls, "join"):
        return
    start, join = cls.start, cls.join

    def start_(self: Any) -> None:
        self._kata_token = _new_id("p")
        trace.record("pstart", self._kata_token, self.name)
        start(self)

    def process_join_(self: Any, timeout: float | None = None) -> None:
        trace.wait_begin("join", self.name, timeout is not None, trace.site())
        try:
            join(self, timeout)
        finally:
            trace.wait_end()
        if self.exitcode is not None:
            trace.record("pjoin", getattr(self, "_kata_token", ""), [self.pid, self.exitcode])

    _install(cls, "start", start_)
    _install(cls, "join", process_join_)


def process_began(process: Any, role: str) -> None:
    """First words of a multiprocessing child (from its bootstrap)."""
    trace.record("pbegin", getattr(process, "_kata_token", ""), [process.name, role])
    if role == "manager":
        trace.silence()


def process_ending(process: Any) -> None:
    trace.record("pend", getattr(process, "_kata_token", ""), os.getpid())
    trace.flush()


def _patch_pool() -> None:
    from multiprocessing import pool

    cls = pool.Pool
    if _patched(cls, "close"):
        return
    for name in ("close", "join", "terminate"):
        original = getattr(cls, name)

        def pool_call_(self: Any, *args: Any, _original: Any = original, _name: str = name) -> Any:
            trace.record("pool", f"{id(self):x}", _name)
            if _name == "join":
                trace.wait_begin("join", "pool", False, trace.site())
                try:
                    return _original(self, *args)
                finally:
                    trace.wait_end()
            return _original(self, *args)

        _install(cls, name, pool_call_)


# -- threads and their locks -----------------------------------------------------------------


class TracedLock:
    """A learner's ``threading.Lock``: the real lock, with each acquire and release traced."""

    _kind = "acq"

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._kata_lock = _new_id("l")
        kind = type(self).__name__.removeprefix("Traced")
        trace.record("lock", self._kata_lock, [kind, True], trace.site(3))

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        got = self._inner.acquire(False)
        if not got and blocking:
            trace.wait_begin("acquire", self._kata_lock, timeout >= 0, trace.site())
            try:
                got = self._inner.acquire(True, timeout)
            finally:
                trace.wait_end()
        if got:
            trace.access("acq", self._kata_lock)
        return bool(got)

    def release(self) -> None:
        trace.access("rel", self._kata_lock)
        self._inner.release()

    def locked(self) -> bool:
        return bool(self._inner.locked())

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc_info: Any) -> None:
        self.release()

    def _at_fork_reinit(self) -> None:
        self._inner._at_fork_reinit()

    def __repr__(self) -> str:
        return repr(self._inner)


class TracedRLock(TracedLock):
    """A learner's ``threading.RLock``; it also serves a Condition made by learner code."""

    def _is_owned(self) -> bool:
        return bool(self._inner._is_owned())

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
        inner = _thread.allocate_lock()
        return TracedLock(inner) if _from_learner(2) else inner


_NATIVE_LOCK: Final = type(_thread.allocate_lock())
_NATIVE_RLOCK: Final = threading.RLock


def _from_learner(skip: int) -> bool:
    """Whether the frame ``skip`` levels up (0 is this function) runs learner code."""
    try:
        frame = sys._getframe(skip)
    except ValueError:
        return False
    return frame.f_code.co_filename in trace._files


class Lock(metaclass=_LockType):
    """Stands in for ``threading.Lock``: learner code gets a traced lock, others the real one."""


def RLock(*args: Any, **kwargs: Any) -> Any:  # noqa: N802 - threading's name
    inner = _NATIVE_RLOCK(*args, **kwargs)
    return TracedRLock(inner) if _from_learner(2) else inner


def _patch_threading() -> None:
    cls = threading.Thread
    if _patched(cls, "join"):
        return
    threading.Lock = Lock  # type: ignore[assignment,misc,unused-ignore]
    # Pickle finds a function by its name: the real RLock (a Manager registers it, and
    # sends it to its server) must still be found under a name of its own.
    _NATIVE_RLOCK.__qualname__ = _NATIVE_RLOCK.__name__ = "_kata_native_RLock"
    threading._kata_native_RLock = _NATIVE_RLOCK  # type: ignore[attr-defined]
    threading.RLock = RLock  # type: ignore[assignment]
    start, join, bootstrap = cls.start, cls.join, cls._bootstrap_inner  # type: ignore[attr-defined]

    def start_(self: threading.Thread) -> None:
        token = self._kata_token = _new_id("t")  # type: ignore[attr-defined]
        trace.record("tstart", token, self.name)
        start(self)

    def bootstrap_(self: threading.Thread) -> None:
        trace.name_thread(self.name)
        trace.record("tbegin", getattr(self, "_kata_token", ""), self.name)
        try:
            bootstrap(self)
        finally:
            trace.record("tend", getattr(self, "_kata_token", ""))
            trace.thread_done()

    def thread_join_(self: threading.Thread, timeout: float | None = None) -> None:
        trace.wait_begin("join", self.name, timeout is not None, trace.site())
        try:
            join(self, timeout)
        finally:
            trace.wait_end()
        if not self.is_alive():
            trace.record("tjoin", getattr(self, "_kata_token", ""))

    _install(cls, "start", start_)
    _install(cls, "_bootstrap_inner", bootstrap_)
    _install(cls, "join", thread_join_)

    cond = threading.Condition
    cond_init, cond_wait, notify = cond.__init__, cond.wait, cond.notify

    def cond_init_(self: Any, lock: Any = None) -> None:
        if lock is None and _from_learner(2):
            lock = TracedRLock(_NATIVE_RLOCK())
        cond_init(self, lock)

    def cond_wait_(self: Any, timeout: float | None = None) -> bool:
        trace.wait_begin("wait", "condition", timeout is not None, trace.site())
        try:
            got = cond_wait(self, timeout)
        finally:
            trace.wait_end()
        trace.access("hb-", f"c{id(self):x}")
        return bool(got)

    def notify_(self: Any, n: int = 1) -> None:
        trace.access("hb+", f"c{id(self):x}")
        notify(self, n)

    _install(cond, "__init__", cond_init_)
    _install(cond, "wait", cond_wait_)
    _install(cond, "notify", notify_)

    event_set, event_wait = threading.Event.set, threading.Event.wait

    def set_(self: Any) -> None:
        trace.access("hb+", f"e{id(self):x}")
        event_set(self)

    def event_wait_(self: Any, timeout: float | None = None) -> bool:
        trace.wait_begin("wait", "event", timeout is not None, trace.site())
        try:
            got = event_wait(self, timeout)
        finally:
            trace.wait_end()
        if got:
            trace.access("hb-", f"e{id(self):x}")
        return bool(got)

    _install(threading.Event, "set", set_)
    _install(threading.Event, "wait", event_wait_)

    barrier_wait = threading.Barrier.wait

    def barrier_wait_(self: Any, timeout: float | None = None) -> int:
        key = _barrier_id(self)
        trace.access("hb+", key)
        trace.wait_begin("wait", "barrier", timeout is not None, trace.site())
        try:
            index = barrier_wait(self, timeout)
        finally:
            trace.wait_end()
        trace.access("hb-", key)
        return int(index)

    _install(threading.Barrier, "wait", barrier_wait_)

    sem_acquire, sem_release = threading.Semaphore.acquire, threading.Semaphore.release

    def sem_acquire_(self: Any, blocking: bool = True, timeout: float | None = None) -> bool:
        if blocking:
            trace.wait_begin("acquire", "semaphore", timeout is not None, trace.site())
        try:
            got = sem_acquire(self, blocking, timeout)
        finally:
            if blocking:
                trace.wait_end()
        if got:
            trace.access("hb-", f"S{id(self):x}")
        return bool(got)

    def sem_release_(self: Any, n: int = 1) -> None:
        trace.access("hb+", f"S{id(self):x}")
        sem_release(self, n)

    _install(threading.Semaphore, "acquire", sem_acquire_)
    _install(threading.Semaphore, "release", sem_release_)
    threading.Semaphore.__enter__ = sem_acquire_  # type: ignore[method-assign]


def _barrier_id(barrier: Any) -> str:
    lock = getattr(barrier._cond, "_lock", None)
    semlock = getattr(lock, "_semlock", None)
    return _semlock_id(semlock) if semlock is not None else f"b{id(barrier):x}"


# -- sockets ----------------------------------------------------------------------------------


def _sock_id(sock: socket.socket) -> str:
    try:
        return f"k{os.fstat(sock.fileno()).st_ino}"
    except (OSError, ValueError):
        return "k?"


def _patch_sockets() -> None:
    """A socket's peer may be anywhere, so a thread waiting on one never counts as stuck
    for good: socket calls are traced, but not shown in the status table."""
    cls = socket.socket
    if _patched(cls, "send"):
        return
    c_send, c_sendall, c_recv = cls.send, cls.sendall, cls.recv
    c_recv_into, c_accept, c_shutdown, c_close = cls.recv_into, cls.accept, cls.shutdown, cls.close

    def send(self: socket.socket, data: Any, flags: int = 0) -> int:
        schedule.jitter(0.1, 0.001)
        where = trace.site() if trace.tracing() else -1
        if where < 0:
            return int(c_send(self, data, flags))
        view = memoryview(data)
        asked = view.nbytes
        if asked > 1 and trace.tracing():
            # send() may write only part of what it is given; the learner's must cope, so
            # it is made to happen here. sendall() is not touched: it loops by itself.
            view = view.cast("B")[: asked // 2]
        sent = int(c_send(self, view, flags))
        trace.access("ssend", _sock_id(self), [asked, sent], where)
        return sent

    def sendall(self: socket.socket, data: Any, flags: int = 0) -> None:
        schedule.jitter(0.1, 0.001)
        where = trace.site() if trace.tracing() else -1
        if where >= 0:
            trace.access("sendall", _sock_id(self), memoryview(data).nbytes, where)
        c_sendall(self, data, flags)

    def recv(self: socket.socket, bufsize: int, flags: int = 0) -> bytes:
        data = c_recv(self, bufsize, flags)
        where = trace.site() if trace.tracing() else -1
        if where >= 0:
            trace.access("srecv", _sock_id(self), [bufsize, len(data)], where)
        schedule.jitter(0.1, 0.001)
        return bytes(data)

    def recv_into(self: socket.socket, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        got = int(c_recv_into(self, buffer, nbytes, flags))
        schedule.jitter(0.1, 0.001)
        return got

    def accept(self: socket.socket) -> tuple[socket.socket, Any]:
        conn, address = c_accept(self)
        where = trace.site() if trace.tracing() else -1
        if where >= 0:
            trace.access("accept", _sock_id(self), _sock_id(conn), where)
        return conn, address

    def shutdown(self: socket.socket, how: int) -> None:
        where = trace.site() if trace.tracing() else -1
        if where >= 0:
            trace.access("shutdown", _sock_id(self), how, where)
        c_shutdown(self, how)

    def close(self: socket.socket) -> None:
        where = trace.site() if trace.tracing() else -1
        if where >= 0 and not self._closed:  # type: ignore[attr-defined]
            trace.access("sclose", _sock_id(self), None, where)
        c_close(self)

    for name, wrapper in (
        ("send", send),
        ("sendall", sendall),
        ("recv", recv),
        ("recv_into", recv_into),
        ("accept", accept),
        ("shutdown", shutdown),
        ("close", close),
    ):
        _install(cls, name, wrapper)


# -- the learner's own objects -------------------------------------------------------------

_SYNC_MODULES: Final = frozenset(
    {"threading", "_thread", "socket", "queue", "selectors", __name__}
    | {f"multiprocessing.{m}" for m in ("synchronize", "connection", "queues", "managers")}
    | {"multiprocessing.pool", "multiprocessing.process", "multiprocessing.context"}
)
_not_data: dict[tuple[type, str], bool] = {}  # (class, name) -> a method or property?
_sync_types: dict[type, bool] = {}


def _is_sync(value: Any) -> bool:
    """Locks, threads, sockets, queues, pipes: what the learner's objects hold, not data."""
    kind = type(value)
    known = _sync_types.get(kind)
    if known is None:
        known = _sync_types[kind] = (kind.__module__ in _SYNC_MODULES) or callable(value)
    return known


def _class_level(cls: type, name: str) -> bool:
    """Whether ``name`` is found on the class as anything but a slot: a method, a
    property, a class constant. Reads of those are not the data races live in."""
    key = (cls, name)
    found = _not_data.get(key)
    if found is None:
        found = False
        for klass in cls.__mro__:
            if name in klass.__dict__:
                found = not isinstance(klass.__dict__[name], types.MemberDescriptorType)
                break
        _not_data[key] = found
    return found


def _location(obj: Any, name: str) -> str:
    return f"{type(obj).__qualname__}@{id(obj):x}.{name}"


def _instrument_class(cls: type) -> None:
    if "_kata_traced" in cls.__dict__:
        return
    get: Any = cls.__getattribute__
    set_: Any = cls.__setattr__
    files = trace._files
    base = trace.SITE_BASE

    def __getattribute__(self: Any, name: str) -> Any:
        value = get(self, name)
        if trace._rec is not None and trace._rec.on and name[:2] != "__":
            frame = sys._getframe(1)
            index = files.get(frame.f_code.co_filename)
            if index is not None and not _class_level(type(self), name) and not _is_sync(value):
                where = index * base + frame.f_lineno
                trace.access("read", _location(self, name), _small(value), where)
        return value

    def __setattr__(self: Any, name: str, value: Any) -> None:
        set_(self, name, value)
        if trace._rec is not None and trace._rec.on and name[:2] != "__":
            frame = sys._getframe(1)
            index = files.get(frame.f_code.co_filename)
            if index is not None and not _class_level(type(self), name) and not _is_sync(value):
                where = index * base + frame.f_lineno
                trace.access("write", _location(self, name), _small(value), where)

    type.__setattr__(cls, "__getattribute__", __getattribute__)
    type.__setattr__(cls, "__setattr__", __setattr__)
    type.__setattr__(cls, "_kata_traced", True)


def instrument(module: types.ModuleType) -> None:
    """Trace reads and writes of the attributes of the learner's own classes."""
    for value in list(vars(module).values()):
        if isinstance(value, type) and value.__module__ == module.__name__:
            try:
                _instrument_class(value)
            except TypeError:  # a class that refuses new methods: untraced, not broken
                continue


_fork_hooked = False


def install() -> None:
    """Put the hooks in place in this process (a forked child inherits them). Safe to call
    twice; call :func:`.trace.install` first."""
    global _fork_hooked
    _patch_connections()
    _patch_semlock()
    _patch_mp_sync()
    _patch_queues()
    _patch_proxies()
    _patch_processes()
    _patch_pool()
    _patch_threading()
    _patch_sockets()
    if not _fork_hooked:
        os.register_at_fork(after_in_child=_note_inherited_ends)
        _fork_hooked = True
