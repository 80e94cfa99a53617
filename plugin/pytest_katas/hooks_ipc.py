"""Hooks on what carries data between processes: pipes (and which process holds which
end), multiprocessing and queue.Queue queues, and Manager proxies."""

from __future__ import annotations

import os
import sys
import zlib
from collections.abc import Callable
from typing import Any, Final

from pytest_katas import control, coordinate, schedule, trace
from pytest_katas.wrapping import MP_DIR, install_wrapper, patched, small

__all__ = ["install", "note_inherited_ends"]

_CONTEXT: Final = MP_DIR + "context.py"


def _made_by_learner(skip: int = 2) -> bool:
    """Whether a pipe being made was asked for by learner code itself (maybe through
    ``multiprocessing.Pipe``), not by a Queue or a Pool for their own use."""
    frame: Any = sys._getframe(skip)
    if frame is not None and frame.f_code.co_filename == _CONTEXT:
        frame = frame.f_back
    return frame is not None and frame.f_code.co_filename in trace._files


# -- pipes and connections -------------------------------------------------------------

_open_ends: dict[str, int] = {}  # learner pipe ends open in this process -> their fd


def _mark_end(conn: Any, end: str) -> None:
    conn._kata_end = end
    _open_ends[end] = conn.fileno()


def _patch_connections() -> None:
    from multiprocessing import connection, reduction

    cls: Any = connection.Connection
    if patched(cls, "_send_bytes"):
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

    install_wrapper(connection, "Pipe", Pipe)

    send_bytes, recv_bytes, recv, close = cls._send_bytes, cls._recv_bytes, cls.recv, cls.close
    poll = connection._ConnectionBase.poll

    def _send_bytes(self: Any, buf: Any) -> None:
        schedule.jitter(0.1, 0.001)
        end = getattr(self, "_kata_end", None)
        if end is not None:
            coordinate.point("send", end, trace.site())
            trace.access("send", end, len(buf))
        with trace.waiting("send", end or f"fd:{self._handle}", False, trace.site()):
            send_bytes(self, buf)

    def _recv_bytes(self: Any, maxsize: int | None = None) -> Any:
        end = getattr(self, "_kata_end", None)
        where = trace.site() if end is not None else -1
        started = trace._now()
        if end is not None:  # a reader is inside recv() from now on, even if it never returns
            coordinate.attempt("recv", end, where, lambda: bool(poll(self, 0)))
            trace.access("reading", end, None, where)
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
        end = getattr(self, "_kata_end", None)
        try:
            value = recv(self)
        except (EOFError, OSError):
            raise
        except Exception as exc:
            if end is not None:  # the bytes were not one whole message: torn by a second reader
                trace.access("garbled", end, type(exc).__name__)
            raise
        if end is not None:
            trace.access("got", end, small(value))
            coordinate.read(small(value))
        return value

    def close_(self: Any) -> None:
        end = getattr(self, "_kata_end", None)
        if end is not None and self._handle is not None:
            coordinate.point("close", end, trace.site())  # a reader may see end of file now
            _open_ends.pop(end, None)
            trace.record("close", end)
        close(self)

    install_wrapper(cls, "_send_bytes", _send_bytes)
    install_wrapper(cls, "_recv_bytes", _recv_bytes)
    install_wrapper(cls, "recv", recv_)
    install_wrapper(cls, "close", close_)

    def poll_(self: Any, timeout: float | None = 0.0) -> bool:
        if timeout is not None and timeout <= 0:
            return bool(poll(self, timeout))
        end = getattr(self, "_kata_end", None) or f"fd:{self._handle}"
        with trace.waiting("poll", end, timeout is not None):
            return bool(poll(self, timeout))

    install_wrapper(connection._ConnectionBase, "poll", poll_)

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


def note_inherited_ends() -> None:
    """After a fork, this process holds a copy of every learner pipe end its parent had."""
    for end, fd in list(_open_ends.items()):
        trace.record("inherit", end, fd)


# -- queues ------------------------------------------------------------------------------


def _patch_queues() -> None:
    import queue
    from multiprocessing import queues

    if patched(queues.Queue, "get"):
        return
    mp_put, mp_get = queues.Queue.put, queues.Queue.get

    def mp_queue_id(q: Any) -> str:
        return f"q{os.fstat(q._reader.fileno()).st_ino}"

    def put(self: Any, obj: Any, block: bool = True, timeout: float | None = None) -> None:
        schedule.jitter(0.2, 0.001)
        if coordinate.active():
            coordinate.point("put", "queue", trace.site())
            trace.access("put", mp_queue_id(self))
            _put_now(self, obj, block, timeout)
            return
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
        if coordinate.active():
            box: list[Any] = []

            def probe() -> bool:
                try:
                    box.append(mp_get(self, False))
                except queue.Empty:
                    return False
                return True

            if coordinate.attempt("get", "queue", trace.site(), probe):
                trace.access("get", mp_queue_id(self))
                coordinate.read(small(box[0]))
                return box[0]
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

    install_wrapper(queues.Queue, "put", put)
    install_wrapper(queues.Queue, "get", get)

    q_put, q_get = queue.Queue.put, queue.Queue.get

    def q_put_(self: Any, item: Any, block: bool = True, timeout: float | None = None) -> None:
        trace.access("put", f"t{id(self):x}")
        with control.library_call("put", "queue", trace.site()):
            q_put(self, item, block, timeout)

    def q_get_(self: Any, block: bool = True, timeout: float | None = None) -> Any:
        with control.library_call("get", "queue", trace.site()):
            item = q_get(self, block, timeout)
        trace.access("get", f"t{id(self):x}")
        return item

    install_wrapper(queue.Queue, "put", q_put_)
    install_wrapper(queue.Queue, "get", q_get_)


def _put_now(q: Any, obj: Any, block: bool, timeout: float | None) -> None:
    """A put written to the queue's pipe before it returns, not later by the queue's feeder
    thread: under the coordinator, a get that follows must find the item there at once, in
    every run alike."""
    import queue
    from multiprocessing.reduction import ForkingPickler

    if q._closed:
        raise ValueError(f"Queue {q!r} is closed")
    if not q._sem.acquire(block, timeout):
        raise queue.Full
    data = ForkingPickler.dumps(obj)
    if q._wlock is None:
        q._writer.send_bytes(data)
    else:
        with q._wlock:
            q._writer.send_bytes(data)


# -- Manager proxies ---------------------------------------------------------------------

_READS: Final = frozenset({"__getitem__", "get", "__contains__", "__getattribute__", "__getattr__"})
_WRITES: Final = frozenset({"__setitem__", "__delitem__", "pop", "setdefault", "__setattr__"})
_LOCKS: Final = frozenset({"Lock", "RLock"})
_SIGNALS: Final = frozenset({"Event", "Condition", "Semaphore", "BoundedSemaphore", "Barrier"})
_QUEUES: Final = frozenset({"Queue", "JoinableQueue"})


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
    if patched(cls, "_callmethod"):
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
        value = small(args[1] if len(args) > 1 else args[0] if args else None)
        if coordinate.active():
            taken = _coordinated(self, token.typeid, methodname, args, kwds, op, obj, where)
            if taken:
                trace.access(op, obj, [token.typeid, methodname, True], where)
                return True
        if before:
            trace.access(op, obj, [token.typeid, methodname, value], where)
        waits = methodname in _BLOCKING_CALLS and token.typeid in _LOCKS | _SIGNALS | _QUEUES
        # A call the server answers at once is in flight, not waiting: only a lock, an event
        # or a queue can keep it waiting for another process.
        timed = not waits or _has_timeout(methodname, args, kwds)
        with trace.waiting(methodname, ref, timed, where):
            result = callmethod(self, methodname, args, kwds)
        if not before and (op != "acq" or result is not False):
            trace.access(op, obj, [token.typeid, methodname, small(result)], where)
        if op == "read":
            coordinate.read(small(result))
        schedule.jitter(0.1, 0.002)
        return result

    def _coordinated(
        self: Any,
        typeid: str,
        methodname: str,
        args: tuple[Any, ...],
        kwds: dict[str, Any],
        op: str,
        obj: str,
        where: int,
    ) -> bool:
        """Wait for the turn of this proxy call. A blocking acquire of a Manager lock is
        tried without blocking first: True if that took the lock (the call is done)."""
        if typeid in _LOCKS and methodname in ("acquire", "__enter__"):
            if not _has_timeout(methodname, args, kwds):
                shown = f"{obj}" if op != "acq" else obj
                return coordinate.attempt(
                    "acq", shown, where, lambda: bool(callmethod(self, "acquire", (False,)))
                )
        wrote = small(args[1]) if op == "write" and len(args) > 1 else None
        coordinate.point(op if op != "call" else methodname, obj, where, wrote=wrote)
        return False

    install_wrapper(cls, "_callmethod", _callmethod)


def install() -> None:
    _patch_connections()
    _patch_queues()
    _patch_proxies()
