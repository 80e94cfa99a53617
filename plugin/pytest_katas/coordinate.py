"""The controlled scheduler for processes: each learner process asks a coordinator for its
turn before each step that another process can see.

While a controlled run is on, the test's process serves a Unix socket in the run directory
(:meth:`.channel.RunDir.control_address`). Every learner process of the test (the test's
own main thread, and each ``multiprocessing.Process`` started from it) connects, and
before each IPC step (a pipe send or receive, a Manager proxy call, a multiprocessing lock
taken or let go, a queue put or get, a join) sends a :class:`Want` and waits for ``go``.
The coordinator grants one step at a time, and only once every process of the run is
waiting at a step (or done): then the plan (:mod:`.explore`) picks who goes. So
``d["count"] -= 1`` through a proxy is two steps, and one preemption between them shows
the lost update, in every run that takes that schedule.

Blocking is found by trying: a process granted a step that may wait (a receive, a lock)
first tries it without waiting (``poll(0)``, ``acquire(False)``); if it would wait, it
says so (:class:`Blocked`) and is not granted again until another process has made a step.
"Nobody can go on" is then a deadlock, reported with who waits for what.

A process that stops asking (it waits in a call the coordinator cannot see) makes the
coordinator *let go*: every process runs freely from then on, the run finishes as an
ordinary one, and the test falls back to schedule noise.

Messages are JSON lines: ``{"t": "want"|"blocked"|"spawned"|"done"|"hello", ...}`` from a
process, ``{"go": 1}`` or ``{"free": 1}`` or ``{"deadlock": 1}`` back.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Final, TypedDict, final

from pytest_katas import control, wrapping
from pytest_katas.channel import RunDir
from pytest_katas.control import Step
from pytest_katas.explore import Plan

__all__ = [
    "Coordinator",
    "Want",
    "active",
    "attempt",
    "connect_child",
    "done",
    "give_up",
    "point",
    "read",
    "serving",
    "spawned",
]

START_WITHIN: Final = 30.0  # seconds a new process may take to ask for its first step
# Seconds a granted process may sleep in the kernel without asking while others wait: a
# Manager's server or a spawned child can keep it waiting that long on a busy machine.
LOST_AFTER: Final = 2.0
_GRACE: Final = 0.3  # real seconds to wait for a pipe's end of file when nobody can run


class Want(TypedDict):
    """A process is about to take a step (``blocking``: it may have to wait)."""

    t: str
    pid: int
    op: str
    obj: str
    site: int
    value: Any  # what the process's previous step read, now that it is known
    join: int  # for a join: the pid joined, else 0


WAITING: Final = 0  # at a step, asking for its turn
RUNNING: Final = 1  # granted: taking its step, and on to the next
BLOCKED: Final = 2  # granted, tried, and would have waited
STARTING: Final = 3  # started, not yet at its first step
DONE: Final = 4


@final
class _Task:
    def __init__(self, index: int, pid: int, name: str) -> None:
        self.index, self.pid, self.name = index, pid, name
        self.state = STARTING
        self.conn: socket.socket | None = None
        self.buffer = b""
        self.pending = "start"
        self.obj = ""
        self.site = -1
        self.join = 0
        self.retry = False  # blocked, but what it waits on has moved since
        self.blocked_on = ""
        self.since = time.monotonic()
        self.native = pid
        self.op = "start"
        self.wrote: Any = None
        self.name_of_obj = ""  # what the learner would call the object of its step
        self.last_step: Step | None = None


@final
class Coordinator:
    """The coordinator's side: runs in a thread of the test's process."""

    def __init__(self, plan: Plan, address: str) -> None:
        self.plan = plan
        self.address = address
        self.tasks: list[_Task] = []
        self.by_pid: dict[int, _Task] = {}
        self.early: dict[int, socket.socket] = {}  # connected before the parent said so
        self.held: dict[int, list[Any]] = {}  # and what they said meanwhile
        self.log: list[Step] = []
        self.progress = 0
        self.retried_all = False
        self.holders: dict[str, int] = {}  # lock -> the task that holds it
        self.current: _Task | None = None
        self.lost: str | None = None
        self.deadlock: list[tuple[int, str, int]] | None = None
        self.closed = False
        self.selector = selectors.DefaultSelector()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(address)
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.selector.register(self.listener, selectors.EVENT_READ, None)
        self.grace_until: float | None = None
        self.finished = threading.Event()

    @property
    def free(self) -> bool:
        return self.lost is not None or self.deadlock is not None or self.closed

    # -- the loop ------------------------------------------------------------------------

    def serve(self) -> None:
        try:
            while not self.closed:
                self._poll(0.02)
                if not self.free:
                    self._check_lost()
                if not self.free:
                    self._decide()
            for _ in range(100):  # what was said before the end: the last value read
                if not self._poll(0):
                    break
        finally:
            self._let_go_all()
            for key in list(self.selector.get_map().values()):
                with contextlib.suppress(OSError):
                    key.fileobj.close()  # type: ignore[union-attr]
            self.selector.close()
            self.finished.set()

    def _poll(self, timeout: float) -> bool:
        events = self.selector.select(timeout)
        for key, _ in events:
            if key.data is None:
                self._accept()
            else:
                self._read(key.fileobj, key.data)  # type: ignore[arg-type]
        return bool(events)

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            conn, _ = self.listener.accept()
            conn.setblocking(False)
            self.selector.register(conn, selectors.EVENT_READ, [b"", None])

    def _read(self, conn: socket.socket, state: list[Any]) -> None:
        try:
            data = conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.selector.unregister(conn)
            conn.close()
            task = state[1]
            if task is not None and task.state != DONE:
                self._finish(task)
            return
        state[0] += data
        while b"\n" in state[0]:
            line, state[0] = state[0].split(b"\n", 1)
            self._message(conn, state, json.loads(line))

    def _message(self, conn: socket.socket, state: list[Any], msg: dict[str, Any]) -> None:
        kind = msg["t"]
        pid = int(msg["pid"])
        if kind == "hello":
            task = self.by_pid.get(pid)
            if task is None:
                self.early[pid] = conn
            else:
                task.conn = conn
            state[1] = task if task is not None else pid
            if self.free:
                self._send(conn, {"free": 1})
            return
        task = state[1] if isinstance(state[1], _Task) else self.by_pid.get(pid)
        if task is None:  # its parent has not said it started it yet: hold the message
            self.held.setdefault(pid, []).append((conn, state, msg))
            return
        state[1] = task
        if task.conn is None:
            task.conn = conn
        if kind == "spawned":
            child = self._add(int(msg["child"]), str(msg["name"]))
            if task.last_step is not None and task.last_step.op == "start":
                task.last_step.obj = f"#{child.index}"
        elif kind == "lost":
            self.lost = str(msg["why"])
            self._let_go_all()
        elif kind == "want":
            if task.state == RUNNING:
                self._moved(task.obj, task)  # the step it was granted is taken
            if task.last_step is not None and msg.get("value") is not None:
                task.last_step.value = msg["value"]
            task.state = WAITING
            task.pending = f"{msg['op']} {msg['obj']}"
            task.obj, task.site, task.join = str(msg["obj"]), int(msg["site"]), int(msg["join"])
            task.op = str(msg["op"])
            task.wrote = msg.get("wrote")
            task.name_of_obj = msg.get("name") or task.obj
            if task.join and task.join in self.by_pid:
                task.obj = f"#{self.by_pid[task.join].index}"
            task.since = time.monotonic()
            if self.free:
                self._send(conn, {"free": 1})
        elif kind == "blocked":
            task.state = BLOCKED
            task.retry = False
            task.blocked_on = _wake_key(task.obj)
            if self.log and self.log[-1] is task.last_step:
                self.log.pop()  # it did not happen: it will be tried again
            task.since = time.monotonic()
        elif kind == "done":
            if task.last_step is not None and msg.get("value") is not None:
                task.last_step.value = msg["value"]
            self._finish(task)

    def _add(self, pid: int, name: str) -> _Task:
        task = _Task(len(self.tasks), pid, name)
        self.tasks.append(task)
        self.by_pid[pid] = task
        self.plan.new_task(task.index)
        conn = self.early.pop(pid, None)
        if conn is not None:
            task.conn = conn
            for key in self.selector.get_map().values():
                if key.fileobj is conn:
                    key.data[1] = task
        for held in self.held.pop(pid, ()):
            self._message(*held)
        return task

    def _finish(self, task: _Task) -> None:
        if task.state == RUNNING:
            self._moved(task.obj, task)
        task.state = DONE
        task.pending = "end"
        for other in self.tasks:  # its pipe ends close as it exits: whoever waits may go on
            if other.state == BLOCKED:
                other.retry = True

    def _moved(self, obj: str, by: _Task) -> None:
        """A step on ``obj`` was taken: who waits on the same thing may try again."""
        if by.op == "acq":
            self.holders[obj] = by.index
        elif by.op == "rel":
            self.holders.pop(obj, None)
        self.progress += 1
        self.retried_all = False
        key = _wake_key(obj)
        for task in self.tasks:
            if task.state == BLOCKED and task.blocked_on == key:
                task.retry = True

    # -- choosing ------------------------------------------------------------------------

    def _enabled(self) -> list[_Task]:
        out = []
        for task in self.tasks:
            if task.state == WAITING:
                if task.join:
                    target = self.by_pid.get(task.join)
                    if target is not None and target.state != DONE:
                        continue
                out.append(task)
            elif task.state == BLOCKED and task.retry:
                out.append(task)
        return out

    def _decide(self) -> None:
        if any(t.state == RUNNING for t in self.tasks):
            return  # someone is between steps: wait until everyone is at one
        # A process starting several in a row goes on starting them, with no decision in
        # between (the children boot side by side); they join in at its first other step,
        # whether or not one was quick enough to ask for a turn already: the same every run.
        task = self.current
        last = task.last_step if task is not None else None
        if task is not None and task.state == WAITING and task.op == "start":
            if last is not None and last.op == "start":
                self._grant(task)
                return
        if any(t.state == STARTING for t in self.tasks):
            if task is not None and task.state == WAITING and task.op == "start":
                self._grant(task)
            return
        enabled = self._enabled()
        if not enabled:
            self._nobody_can_run()
            return
        self.grace_until = None
        current = self.current.index if self.current is not None else None
        indices = tuple(t.index for t in enabled)
        if current not in indices:
            current = None
        if len(enabled) == 1:
            chosen = enabled[0]
        else:
            index = self.plan.pick(current, indices, [t.pending for t in enabled])
            chosen = self.tasks[index]
        if current is not None and chosen.index != current and self.log:
            self.log[-1].preempted = True
        self._grant(chosen)

    def _grant(self, task: _Task) -> None:
        retry = task.state == BLOCKED
        task.state = RUNNING
        task.since = time.monotonic()
        self.current = task
        op = getattr(task, "op", task.pending.split(" ", 1)[0])
        step = Step(task.index, op, task.obj, task.site, task.wrote)
        if not retry or self.log[-1:] != [task.last_step]:
            self.log.append(step)
            task.last_step = step
        if task.conn is not None:
            self._send(task.conn, {"go": 1})

    def _nobody_can_run(self) -> None:
        waiting = [t for t in self.tasks if t.state in (WAITING, BLOCKED)]
        if not waiting:
            return  # all done (or none yet)
        now = time.monotonic()
        if self.grace_until is None:  # a pipe's last writer may be exiting this moment
            self.grace_until = now + _GRACE
            return
        if now < self.grace_until:
            return
        if not self.retried_all and any(t.state == BLOCKED for t in self.tasks):
            self.retried_all = True  # one more try each, in case the world moved
            for task in self.tasks:
                if task.state == BLOCKED:
                    task.retry = True
            self.grace_until = now + _GRACE
            return
        self.deadlock = [(t.index, self._waits(t), t.site) for t in waiting]
        self._let_go_all(deadlock=True)

    def _waits(self, task: _Task) -> str:
        if task.join:
            target = self.by_pid.get(task.join)
            return f"join() of #{target.index}" if target else f"join() of pid {task.join}"
        if task.op == "acq":
            holder = self.holders.get(task.obj)
            held = f", held by #{holder}" if holder is not None else ""
            return f"acquire of {task.name_of_obj}{held}"
        if task.op == "recv":
            return "recv() on an empty pipe"
        return f"{task.op} on {task.name_of_obj}"

    # -- losing control ----------------------------------------------------------------

    def _check_lost(self) -> None:
        now = time.monotonic()
        # A task between steps keeps nobody waiting while it is the only one.
        others_wait = sum(t.state in (WAITING, BLOCKED) for t in self.tasks)
        for task in self.tasks:
            if task.state == STARTING and now - task.since > START_WITHIN:
                self.lost = f"{task.name} took over {START_WITHIN:.0f} s to start"
            elif task.state == RUNNING and others_wait and now - task.since > LOST_AFTER:
                if control.sleeping(task.pid, task.native):
                    self.lost = f"{task.name} waited in a call the coordinator cannot see"
        if self.lost is not None:
            self._let_go_all()

    def _let_go_all(self, deadlock: bool = False) -> None:
        """Every process runs on its own from now on; on a deadlock the test's own process
        is told, so that it stops the run and reports it."""
        for task in self.tasks:
            if task.conn is not None and task.state in (WAITING, BLOCKED):
                told = {"deadlock": 1} if deadlock and task.index == 0 else {"free": 1}
                self._send(task.conn, told)
        for conn in self.early.values():
            self._send(conn, {"free": 1})

    def _send(self, conn: socket.socket, msg: dict[str, Any]) -> None:
        data = (json.dumps(msg) + "\n").encode()
        with contextlib.suppress(OSError):
            conn.setblocking(True)
            conn.sendall(data)
            conn.setblocking(False)


def _wake_key(obj: str) -> str:
    """What a blocked step waits on, as the steps that can wake it name it: a pipe's two
    ends are one pipe; a duplex pipe's ends are told apart by nothing both sides know."""
    if len(obj) > 2 and obj[0] == "p" and obj[-1] in "rw" and obj[1:-1].isdigit():
        return obj[:-1]
    if len(obj) > 1 and obj[0] == "s" and obj[1:].isdigit():
        return "s"
    return obj


# -- a process's side ------------------------------------------------------------------------


@final
class _Client:
    def __init__(self, address: str, name: str, native: int) -> None:
        self.pid = os.getpid()
        self.ident = threading.get_ident()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(address)
        self.buffer = b""
        self.free = False
        self.deadlock = False
        self.value: Any = None
        self._send({"t": "hello", "pid": self.pid, "name": name, "native": native})

    def _send(self, msg: dict[str, Any]) -> None:
        self.sock.sendall((json.dumps(msg) + "\n").encode())

    def _reply(self) -> dict[str, Any]:
        while b"\n" not in self.buffer:
            data = self.sock.recv(4096)
            if not data:
                return {"free": 1}
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        reply: dict[str, Any] = json.loads(line)
        return reply

    def ask(self, msg: dict[str, Any]) -> bool:
        """Send ``msg`` and wait for the turn; False once the coordinator has let go."""
        if self.free:
            return False
        try:
            with control.away():
                self._send(msg)
                reply = self._reply()
        except OSError:
            reply = {"free": 1}
        if "go" in reply:
            return True
        self.free = True
        if "deadlock" in reply:
            self.deadlock = True
            raise control.Deadlocked
        return False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


_client: _Client | None = None


def active() -> bool:
    """Whether the calling thread takes its steps by the coordinator's leave."""
    client = _client
    return (
        client is not None
        and not client.free
        and client.pid == os.getpid()
        and client.ident == threading.get_ident()
    )


def _want(
    op: str, obj: str, site: int, join: int = 0, wrote: Any = None, name: str | None = None
) -> bool:
    client = _client
    assert client is not None
    value, client.value = client.value, None
    msg = {"t": "want", "pid": client.pid, "op": op, "obj": obj, "site": site}
    msg.update(value=value, join=join, wrote=wrote, name=name)
    return client.ask(msg)


def point(op: str, obj: str, site: int, join: int = 0, wrote: Any = None) -> None:
    """Wait for the turn to take a step that cannot block (a send, a proxy call);
    ``wrote``: the value a write is about to store, for the table."""
    if active():
        _want(op, obj, site, join, wrote)


def attempt(
    op: str, obj: str, site: int, probe: Callable[[], bool], name: str | None = None
) -> bool:
    """Wait for the turn to take a step that may block; ``probe()`` tries it without
    waiting. True once the probe succeeded (the step is taken), False if the coordinator
    let go (then the caller takes the step the ordinary way)."""
    if not active():
        return False
    client = _client
    assert client is not None
    if not _want(op, obj, site, name=name):
        return False
    while True:
        if probe():
            return True
        if not client.ask({"t": "blocked", "pid": client.pid}):
            return False


def read(value: Any) -> None:
    """What the step just taken read: sent with the next request, for the table."""
    client = _client
    if client is not None and client.pid == os.getpid():
        client.value = value


def spawned(pid: int, name: str) -> None:
    """This process has just started a child that will take part."""
    client = _client
    if client is not None and client.pid == os.getpid() and not client.free:
        with contextlib.suppress(OSError):
            client._send({"t": "spawned", "pid": client.pid, "child": pid, "name": name})


def give_up(why: str) -> None:
    """Something the coordinator cannot schedule has begun (a Pool's own processes)."""
    client = _client
    if client is not None and client.pid == os.getpid() and not client.free:
        client.free = True
        with contextlib.suppress(OSError):
            client._send({"t": "lost", "pid": client.pid, "why": why})


def done() -> None:
    """This process will take no more steps (its learner code has returned)."""
    global _client
    client = _client
    if client is not None and client.pid == os.getpid():
        with contextlib.suppress(OSError):
            client._send({"t": "done", "pid": client.pid, "value": client.value})
        client.close()
        _client = None


def connect_child(name: str) -> None:
    """In a learner process that has just started: take part, if a controlled run is on."""
    global _client
    if _client is not None and _client.pid != os.getpid():
        with contextlib.suppress(OSError):
            _client.sock.detach()  # the parent's connection: leave it to the parent
        _client = None
    rundir = RunDir.current()
    if rundir is None:
        return
    address = rundir.control_address()
    if not os.path.exists(address):
        return
    try:
        _client = _Client(address, name, os.getpid())
    except OSError:
        _client = None


@contextlib.contextmanager
def serving(plan: Plan, learner: int | None = None) -> Iterator[Coordinator | None]:
    """Coordinate the processes of the body; the calling thread takes part as task 0, or,
    when the test body runs apart from learner code, the learner process (pid
    ``learner``) does, in each call the body makes into it (:func:`taking_part`)."""
    global _client
    rundir = RunDir.current()
    if rundir is None:
        yield None
        return
    address = rundir.control_address()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(address)
    coordinator = Coordinator(plan, address)
    os.chmod(address, 0o777)  # noqa: S103 - learner code may run as another user
    coordinator._add(learner or os.getpid(), "test")
    coordinator.tasks[0].native = learner or threading.get_native_id()
    coordinator.tasks[0].state = RUNNING
    coordinator.current = coordinator.tasks[0]
    wrapping.start_own_thread(coordinator.serve)
    try:
        _client = None if learner else _Client(address, "test", threading.get_native_id())
    except OSError:
        _client = None
    try:
        yield coordinator
    finally:
        client, _client = _client, None
        if client is not None:
            with contextlib.suppress(OSError):
                client._send({"t": "done", "pid": client.pid, "value": client.value})
            client.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(address)
        coordinator.closed = True
        coordinator.finished.wait(5)


@contextlib.contextmanager
def taking_part() -> Iterator[None]:
    """In the learner process, for one call from a test body that runs apart: take part in
    the controlled run as its first task, if one is on, as the test's own thread does
    otherwise (the coordinator knows this process by its pid)."""
    connect_child("test")
    try:
        yield
    finally:
        done()
