"""Reading the stack dumps of a stuck test: what each process waits in, and what that suggests."""

from __future__ import annotations

import dataclasses
import linecache
import os
import re
import sysconfig
from collections.abc import Callable, Iterable
from typing import Final, final

from pytest_katas.channel import LEARNER_ROLES
from pytest_katas.messages import _

__all__ = ["Frame", "ProcessStack", "Thread", "diagnose", "parse_dump", "render"]

_STDLIB: Final = sysconfig.get_paths()["stdlib"]
_THREAD = re.compile(r"^(Current thread|Thread) (0x[0-9a-f]+)")
_FRAME = re.compile(r'^\s+File "(.*)", line (\d+) in (.*)$')

# (module file, function) -> the call the learner wrote, innermost stdlib frame first.
_BLOCKING: Final[dict[tuple[str, str], str]] = {
    ("connection.py", "_recv"): "Connection.recv()",
    ("connection.py", "_recv_bytes"): "Connection.recv()",
    ("connection.py", "recv_bytes"): "Connection.recv()",
    ("connection.py", "recv"): "Connection.recv()",
    ("connection.py", "_send"): "Connection.send()",
    ("connection.py", "send"): "Connection.send()",
    ("connection.py", "send_bytes"): "Connection.send()",
    ("connection.py", "accept"): "Listener.accept()",
    ("connection.py", "poll"): "Connection.poll()",
    ("connection.py", "wait"): "multiprocessing.connection.wait()",
    ("synchronize.py", "__enter__"): "Lock.acquire()",
    ("synchronize.py", "acquire"): "Lock.acquire()",
    ("synchronize.py", "wait"): "a multiprocessing Condition/Event/Barrier wait()",
    ("threading.py", "_wait_for_tstate_lock"): "Thread.join()",
    ("threading.py", "join"): "Thread.join()",
    ("threading.py", "wait"): "a threading Condition/Event/Barrier wait()",
    ("queues.py", "get"): "Queue.get()",
    ("queues.py", "put"): "Queue.put()",
    ("queues.py", "join"): "JoinableQueue.join()",
    ("queue.py", "get"): "queue.Queue.get()",
    ("queue.py", "put"): "queue.Queue.put()",
    ("queue.py", "join"): "queue.Queue.join()",
    ("pool.py", "join"): "Pool.join()",
    ("pool.py", "get"): "AsyncResult.get()",
    ("pool.py", "wait"): "AsyncResult.wait()",
    ("pool.py", "map"): "Pool.map()",
    ("pool.py", "apply"): "Pool.apply()",
    ("popen_fork.py", "wait"): "Process.join()",
    ("popen_fork.py", "poll"): "Process.join()",
    ("popen_forkserver.py", "poll"): "Process.join()",
    ("process.py", "join"): "Process.join()",
    ("managers.py", "_callmethod"): "a Manager proxy call",
    ("managers.py", "serve_forever"): "the Manager server loop",
    ("socket.py", "accept"): "socket.accept()",
    ("socket.py", "readinto"): "socket file read",
    ("selectors.py", "select"): "selector.select()",
    ("socketserver.py", "serve_forever"): "socketserver.serve_forever()",
    ("socketserver.py", "shutdown"): "socketserver.shutdown()",
}


@final
@dataclasses.dataclass(frozen=True)
class Frame:
    filename: str
    lineno: int
    function: str

    def where(self, relpath: Callable[[str], str]) -> str:
        return f"{relpath(self.filename)}:{self.lineno}"

    def source(self) -> str:
        return linecache.getline(self.filename, self.lineno).strip()


@final
@dataclasses.dataclass(frozen=True)
class Thread:
    ident: int
    frames: tuple[Frame, ...]  # innermost first, as faulthandler prints them


@final
@dataclasses.dataclass
class ProcessStack:
    """One process of the test at the moment of the dump."""

    pid: int
    name: str
    role: str
    target: str | None
    main_thread: int | None
    threads: tuple[Thread, ...]
    alive: bool = True
    exit_note: str | None = None
    blocked_since: float | None = None  # seconds the main thread has not moved

    @property
    def main(self) -> Thread | None:
        for thread in self.threads:
            if thread.ident == self.main_thread:
                return thread
        return self.threads[0] if self.threads else None


def parse_dump(text: str) -> tuple[Thread, ...]:
    """The threads of one faulthandler dump."""
    threads: list[Thread] = []
    ident: int | None = None
    frames: list[Frame] = []
    for line in text.splitlines():
        head = _THREAD.match(line)
        if head:
            if ident is not None:
                threads.append(Thread(ident, tuple(frames)))
            ident, frames = int(head.group(2), 16), []
            continue
        frame = _FRAME.match(line)
        if frame and ident is not None:
            frames.append(Frame(frame.group(1), int(frame.group(2)), frame.group(3)))
    if ident is not None:
        threads.append(Thread(ident, tuple(frames)))
    return tuple(threads)


def _is_stdlib(filename: str) -> bool:
    return filename.startswith(_STDLIB) and "site-packages" not in filename


def blocking_call(thread: Thread) -> str | None:
    """The library call ``thread`` waits in, named as the caller wrote it.

    That is the outermost library frame of the innermost run of library frames: for
    ``recv -> _recv_bytes -> _recv`` it is ``recv``, which the learner called.
    """
    outer = None
    for frame in thread.frames:
        if frame.filename in _HOOKS:
            outer = frame  # our wrapper stands where the learner's call went in
            continue
        if frame.filename.startswith(_PLUGIN_DIR):
            continue  # our bookkeeping sits between library frames
        if not _is_stdlib(frame.filename):
            break
        outer = frame
    if outer is None:
        return None
    if outer.filename in _HOOKS:
        return _HOOK_CALLS.get(outer.function, f"{outer.function.rstrip('_')}()")
    key = (os.path.basename(outer.filename), outer.function)
    return _BLOCKING.get(key, f"{outer.function}() of {key[0]}")


_CALL: Final = re.compile(r"([A-Za-z_][\w.]*)\(")


def _call_in(source: str) -> str | None:
    """The last call on a line of source: ``lock.acquire()`` from ``ok = lock.acquire()``."""
    calls = _CALL.findall(source)
    return f"{calls[-1]}()" if calls else None


def learner_frame(thread: Thread, learner_files: set[str]) -> Frame | None:
    for frame in thread.frames:
        if frame.filename in learner_files:
            return frame
    return None


def summary(proc: ProcessStack, learner_files: set[str], relpath: Callable[[str], str]) -> str:
    """``consumer (pid 4242) blocked in Connection.recv() at katas/pipe/pipe.py:31 ...``"""
    label = f"{proc.name} (pid {proc.pid})"
    if not proc.alive:
        return _("{label} has exited: {how}").format(
            label=label, how=proc.exit_note or _("exit status unknown")
        )
    main = proc.main
    if main is None:
        return _("{label}: no stack could be read").format(label=label)
    call = blocking_call(main)
    mine = learner_frame(main, learner_files)
    if call is None and proc.blocked_since is not None and mine is not None:
        call = _call_in(mine.source())  # a C call (lock.acquire(), sock.recv()): no frame
    if call:
        text = _("{label} blocked in {call}").format(label=label, call=call)
    else:
        text = _("{label} running").format(label=label)
    if mine is not None:
        text += _(" at {where}").format(where=mine.where(relpath))
        if mine.source():
            text += f" (`{mine.source()}`)"
    else:
        frame = next((f for f in main.frames if not _is_machinery(f.filename)), None)
        if frame is not None:
            text += _(" at {where} in {function}").format(
                where=frame.where(relpath), function=frame.function
            )
    if proc.blocked_since is not None:
        text += _(" for at least {seconds:.1f} s").format(seconds=proc.blocked_since)
    return text


_PROCESS_PY: Final = os.path.join("multiprocessing", "process.py")
_PLUGIN_DIR: Final = os.path.dirname(os.path.abspath(__file__)) + os.sep
_HOOKS: Final = frozenset(
    _PLUGIN_DIR + f"hooks{part}.py" for part in ("", "_ipc", "_sync", "_net", "_objects")
)
# The wrappers of the hooks modules, by function name, as the call the learner made.
_HOOK_CALLS: Final = {
    "__enter__": "Lock.acquire()",
    "acquire": "Lock.acquire()",
    "_send_bytes": "Connection.send()",
    "_recv_bytes": "Connection.recv()",
    "recv_": "Connection.recv()",
    "poll_": "Connection.poll()",
    "get": "Queue.get()",
    "put": "Queue.put()",
    "q_get_": "queue.Queue.get()",
    "q_put_": "queue.Queue.put()",
    "mp_event_wait_": "a multiprocessing Event wait()",
    "cond_wait_": "a Condition wait()",
    "event_wait_": "a threading Condition/Event/Barrier wait()",
    "barrier_wait_": "Barrier.wait()",
    "sem_acquire_": "Semaphore.acquire()",
    "_callmethod": "a Manager proxy call",
    "process_join_": "Process.join()",
    "thread_join_": "Thread.join()",
    "pool_call_": "Pool.join()",
    "recv": "socket.recv()",
    "send": "socket.send()",
    "sendall": "socket.sendall()",
    "accept": "socket.accept()",
}


def _is_machinery(filename: str) -> bool:
    """pytest's, pluggy's and our own frames: never what the learner needs to see."""
    return (
        filename.startswith((_PLUGIN_DIR, "<frozen"))
        or "site-packages" in filename
        or filename.endswith(f"{os.sep}pytest")
    )


def _shown(thread: Thread) -> list[Frame]:
    """Outermost first, from the first frame of test or learner code, machinery dropped."""
    frames = list(reversed(thread.frames))
    for start, frame in enumerate(frames):  # a forked child inherits its parent's frames
        if frame.function == "_bootstrap" and frame.filename.endswith(_PROCESS_PY):
            frames = frames[start + 1 :]
    for start, frame in enumerate(frames):
        if not _is_machinery(frame.filename) and not _is_stdlib(frame.filename):
            frames = frames[start:]
            break
    return [frame for frame in frames if not _is_machinery(frame.filename)]


_PROCESSES_SHOWN: Final = 8
_FRAMES_SHOWN: Final = 6


def render(
    procs: Iterable[ProcessStack], learner_files: set[str], relpath: Callable[[str], str]
) -> str:
    """Every process's stacks: the test's and the learner's frames only (the summary line
    names the library call each waits in), learner frames marked, main thread first."""
    out: list[str] = []
    procs = list(procs)
    for proc in procs[:_PROCESSES_SHOWN]:
        out.append(f"--- {summary(proc, learner_files, relpath)}")
        if proc.target:
            out.append("    " + _("target: {target}").format(target=proc.target))
        ordered = sorted(proc.threads, key=lambda t: t.ident != proc.main_thread)
        hidden = 0
        for thread in ordered:
            frames = [f for f in _shown(thread) if not _is_stdlib(f.filename)]
            if not frames:
                hidden += 1
                continue
            if thread.ident == proc.main_thread:
                head = _("main thread {ident} (innermost call last):")
            else:
                head = _("thread {ident} (innermost call last):")
            out.append("  " + head.format(ident=f"0x{thread.ident:x}"))
            for frame in frames[-_FRAMES_SHOWN:]:
                mine = frame.filename in learner_files
                mark = ">>" if mine else "  "
                out.append(f"  {mark} {frame.where(relpath)} in {frame.function}")
                if mine and frame.source():
                    out.append(f"  {mark}     {frame.source()}")
        if hidden:
            out.append(
                "  " + _("({count} more thread(s) in library code only)").format(count=hidden)
            )
    if len(procs) > _PROCESSES_SHOWN:
        more = _("and {count} more process(es)").format(count=len(procs) - _PROCESSES_SHOWN)
        out.append(f"--- {more}")
    return "\n".join(out)


def diagnose(procs: list[ProcessStack]) -> str:
    """A hint from the pattern of waits: a missing sentinel, an open end, a deadlock..."""
    alive = [p for p in procs if p.alive and p.main is not None]
    calls = {p.pid: blocking_call(p.main) for p in alive if p.main is not None}
    learners = [p for p in alive if p.role in LEARNER_ROLES]
    exited = [p for p in procs if not p.alive]
    recv = [p for p in alive if calls[p.pid] == "Connection.recv()"]
    locks = [p for p in alive if calls[p.pid] == "Lock.acquire()"]
    main = next((p for p in alive if p.role == "test"), None)
    main_call = calls.get(main.pid) if main else None
    if [p for p in learners if calls[p.pid] == "Connection.recv()"] and (
        exited or main_call in ("Process.join()", "Connection.recv()")
    ):
        return _(
            "every reader is blocked in recv() while no one is left to send: was a sentinel "
            "missing (one per reader), or was a write end left open, so that EOF never comes?"
        )
    if len(locks) >= 2:
        return _(
            "{count} processes each wait in Lock.acquire(): if each holds a lock the other "
            "wants, that is a deadlock. Take locks in one fixed order, and release them with "
            "`with lock:` so that no path forgets."
        ).format(count=len(locks))
    if locks:
        return _(
            "a process waits for a lock that is never released: was it acquired without "
            "`with`, and released on only some paths?"
        )
    if main_call == "Connection.recv()" and not learners:
        return _("the test process waits in recv() for data that nobody sends")
    if main_call in ("Process.join()", "Pool.join()") and any(
        calls[p.pid] == "Connection.send()" for p in learners
    ):
        return _(
            "the parent joins a child that is still blocked sending: a pipe holds only so much, "
            "so read the results before you join()"
        )
    if main_call in ("Queue.get()", "queue.Queue.get()"):
        return _("the test process waits in Queue.get() for an item that never comes")
    if main_call in ("AsyncResult.get()", "Pool.join()", "AsyncResult.wait()"):
        return _("the test process waits for pool tasks that never finish")
    if main_call == "socket.accept()":
        return _("the server waits in accept() for a client that never connects")
    if main_call == "Thread.join()":
        return _(
            "the test process joins a thread that never ends: what is that thread waiting for?"
        )
    if recv:
        return _("a process waits in recv() for data that nobody sends")
    return _("no process finished in time")
