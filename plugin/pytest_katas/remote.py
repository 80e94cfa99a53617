"""The learner's own process, for a kata whose test body (the oracle) runs apart from the
learner's code (``oracle = "apart"`` in its kata.toml, while ``katas grade`` grades).

The test process forks the *learner process* before the test body starts. That process
joins the test's cgroup, drops to the learner's user, imports the learner's module when the
test first touches it, and from then on calls the learner's functions for the test body:
one request at a time per thread of the test, each thread over a connection of its own. The
test body itself, the trace's audit and the verdict stay in the test process, which keeps
root: learner code can neither signal it, trace it, read its memory nor write its result.

What crosses back is plain data, and only that: a reply is unpickled with no class but the
builtin containers and the standard library's (``collections.Counter``, ``OrderedDict``,
``defaultdict``, ``deque``), so an ``int`` subclass that equals anything cannot come back,
and nothing the learner sends can run code here. An object the test body passed in comes
back as that very object (a copy in the learner's process stands for it); any other object
comes back as a :class:`Foreign` stand-in that equals nothing but itself, whose methods are
called over there (the learner process keeps the object until the test ends). A reply that
is missing, late or garbled is a failure, never a pass. A test helper marked
:func:`learner_side` runs over there, to look at what only that process can see.

What the test body's stress harness sets around a call in its own process (the trace's
generation, schedule noise, the start method) is handed over with each request and set the
same way in the learner process, which also takes the process coordinator's first task
whenever a controlled run is on.
"""

from __future__ import annotations

import builtins
import collections
import contextlib
import dataclasses
import functools
import io
import multiprocessing
import os
import pickle
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from multiprocessing import reduction
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, Final, NoReturn, final

from pytest_katas import (
    boot,
    control,
    coordinate,
    integrity,
    leaks,
    privilege,
    procs,
    schedule,
    trace,
)
from pytest_katas.loader import TargetImportError, describe_not_implemented
from pytest_katas.messages import _
from pytest_katas.verdict import KataFailure, Kind

if TYPE_CHECKING:
    from pytest_katas.box import TestGroup
    from pytest_katas.sandbox import SandboxSpec

__all__ = [
    "ENV_APART",
    "Foreign",
    "LearnerError",
    "LearnerProcess",
    "active",
    "learner_side",
    "wanted",
]

# Forces the oracle apart without a learner user (the plugin's own tests use it).
ENV_APART: Final = "PYTEST_KATA_ORACLE_APART"
MAX_REPLY: Final = 256 << 20
_FINISH: Final = b"finish"  # the test has ended: report what is left, then wait
_EXIT: Final = "pytest-katas: an exception left the with block"  # __exit__'s first argument
_REPR: Final = 200


def wanted(oracle: str) -> bool:
    """Whether a kata whose kata.toml says ``oracle`` runs its test body apart: only while
    grading (learner code then runs as another user), or when the plugin's tests ask."""
    if oracle != "apart":
        return False
    return privilege.learner() is not None or os.environ.get(ENV_APART) == "1"


# -- what crosses ------------------------------------------------------------------------


@final
@dataclasses.dataclass(frozen=True)
class CallContext:
    """What the test process had set around a call, to be set alike in the learner's."""

    start_method: str
    tracing: bool
    generation: int
    noise: tuple[int, int] | None

    @classmethod
    def here(cls) -> CallContext:
        return cls(
            start_method=multiprocessing.get_start_method(),
            tracing=trace.tracing(),
            generation=trace.generation,
            noise=schedule.current_noise(),
        )


@final
@dataclasses.dataclass(frozen=True)
class Request:
    """One request: ``attr`` (look a name up), ``call`` (call it), ``isinstance`` (is the
    object ``handle`` an instance of the learner's class ``name``), ``probe`` (run the test's
    function ``name``, "module:qualname", over there) or ``flush`` (write out the trace)."""

    op: str
    name: str = ""
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    context: CallContext | None = None
    passed: list[Any] = dataclasses.field(default_factory=list)  # the args' own objects
    handle: int | None = None  # the learner's object it is about; None: the learner's module


class Foreign:
    """An object of the learner's that is not plain data: it equals only itself, and its
    attributes and methods are looked up and called over there (an ``EchoServer``'s
    ``start()``, its ``with`` block)."""

    def __init__(
        self, kind: str, shown: str, learner: LearnerProcess | None = None, handle: int = -1
    ) -> None:
        # Underscored: the learner's own attributes (a server's ``kind``) are looked up there.
        self._kind = kind
        self._shown = shown
        self._learner = learner
        self._handle = handle

    def __repr__(self) -> str:
        return self._shown

    def __getattr__(self, name: str) -> Any:
        __tracebackhide__ = True
        if name.startswith("__") or "_learner" not in self.__dict__:  # (while unpickling)
            raise AttributeError(name)
        return self._method(name)

    def _method(self, name: str) -> Any:
        __tracebackhide__ = True
        if self._learner is None:
            raise AttributeError(name)
        return self._learner.attribute(name, self)

    def __enter__(self) -> Any:
        __tracebackhide__ = True
        return self._method("__enter__")()

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> Any:
        """The learner's ``__exit__``, told of an exception by its type's name and message
        (a class of the test's own cannot cross)."""
        __tracebackhide__ = True
        if kind is None:
            return self._method("__exit__")(None, None, None)
        return self._method("__exit__")(_EXIT, kind.__name__, str(exc))


class LearnerError(Exception):
    """An exception raised by learner code in the learner process, seen from the test's."""

    def __init__(self, type_name: str, message: str, frames: list[traceback.FrameSummary]):
        super().__init__(message)
        self.type_name = type_name
        self.frames = frames


class _LearnerAssertion(LearnerError, AssertionError):
    pass


class _LearnerMemoryError(LearnerError, MemoryError):
    pass


class LearnerGone(Exception):
    """The learner process ended, or said something that is not a reply."""


# What a reply may hold as it is: builtin data and the standard library's containers.
_DATA: Final = frozenset({*integrity.PLAIN, *integrity.CONTAINERS, bytearray, range, slice})
_DATA_NAMES: Final = frozenset(
    (kind.__module__, kind.__qualname__) for kind in _DATA if kind is not type(None)
)


class _Plain(pickle.Pickler):
    """The learner process's side: the args' own objects by number, builtin data as it is,
    anything else as a stand-in."""

    def __init__(self, file: io.BytesIO, passed: dict[int, int], keep: _Kept | None) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.passed = passed
        self.keep = keep

    def persistent_id(self, obj: Any) -> Any:
        number = self.passed.get(id(obj))
        if number is not None:
            return ("passed", number)
        kind = type(obj)
        if kind in _DATA or (isinstance(obj, type) and obj in _DATA):  # a defaultdict's factory
            return None
        try:
            shown = repr(obj)
        except Exception:  # noqa: BLE001 - a learner's __repr__ may raise
            shown = f"<{kind.__qualname__} object>"
        if len(shown) > _REPR:
            shown = shown[: _REPR - 3] + "..."
        handle = self.keep.add(obj) if self.keep is not None else -1
        return ("foreign", kind.__qualname__, shown, handle)

    def reducer_override(self, obj: Any) -> Any:
        """A defaultdict whose factory is the learner's own (a lambda) comes back as a
        defaultdict with none: the items are what a test compares."""
        if type(obj) is collections.defaultdict and obj.default_factory not in _DATA:
            return collections.defaultdict, (None,), None, None, iter(obj.items())
        return NotImplemented


class _Strict(pickle.Unpickler):
    """The test process's side: only builtin data and the standard library's containers."""

    def __init__(
        self, data: bytes, passed: list[Any], learner: LearnerProcess | None = None
    ) -> None:
        super().__init__(io.BytesIO(data))
        self.passed = passed
        self.learner = learner

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _DATA_NAMES:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not plain data")

    def persistent_load(self, pid: Any) -> Any:
        if type(pid) is tuple and len(pid) == 2 and pid[0] == "passed" and type(pid[1]) is int:
            if 0 <= pid[1] < len(self.passed):
                return self.passed[pid[1]]
        if type(pid) is tuple and len(pid) == 4 and pid[0] == "foreign":
            kind, shown, handle = pid[1], pid[2], pid[3]
            if type(kind) is str and type(shown) is str and type(handle) is int:
                if self.learner is None:
                    return Foreign(kind[:100], shown[:_REPR])
                return self.learner.foreign(handle, kind[:100], shown[:_REPR])
        raise pickle.UnpicklingError("not a reference this process made")


class _Handles(pickle.Pickler):
    """The test process's side of a request: a stand-in goes back as the learner's object."""

    def __init__(self, file: io.BytesIO, learner: LearnerProcess) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.learner = learner

    def persistent_id(self, obj: Any) -> Any:
        if type(obj) is Foreign and obj._learner is self.learner:
            return ("handle", obj._handle)
        return None


class _Kept:
    """The learner process's side: the objects the test process holds stand-ins for, kept
    alive until the test ends (as the test body's own references would keep them)."""

    def __init__(self) -> None:
        self.objects: dict[int, Any] = {}
        self.numbers: dict[int, int] = {}
        self.guard = threading.Lock()

    def add(self, obj: Any) -> int:
        with self.guard:
            number = self.numbers.get(id(obj))
            if number is None:
                number = self.numbers[id(obj)] = len(self.objects)
                self.objects[number] = obj
            return number

    def get(self, number: int) -> Any:
        with self.guard:
            return self.objects[number]

    def clear(self) -> None:
        with self.guard:
            self.objects.clear()
            self.numbers.clear()


class _Request(pickle.Unpickler):
    """The learner process's reading of a request: handles become the learner's objects."""

    def __init__(self, data: bytes, kept: _Kept) -> None:
        super().__init__(io.BytesIO(data))
        self.kept = kept

    def persistent_load(self, pid: Any) -> Any:
        if type(pid) is tuple and len(pid) == 2 and pid[0] == "handle":
            return self.kept.get(pid[1])
        raise pickle.UnpicklingError("not a handle")


def _passed_objects(value: Any, found: list[Any], seen: set[int], depth: int = 0) -> None:
    """The objects of ``value`` that are not plain data (a function, an ``object()``)."""
    if id(value) in seen or depth > 50:
        return
    seen.add(id(value))
    kind = type(value)
    if kind in (list, tuple, set, frozenset):
        for item in value:
            _passed_objects(item, found, seen, depth + 1)
    elif kind is dict:
        for key, item in value.items():
            _passed_objects(key, found, seen, depth + 1)
            _passed_objects(item, found, seen, depth + 1)
    elif kind not in _DATA:
        found.append(value)


# -- the test process's side -------------------------------------------------------------

_current: LearnerProcess | None = None


def active() -> LearnerProcess | None:
    """The learner process of the test running here, if its oracle runs apart."""
    learner = _current
    return learner if learner is not None and learner.owner == os.getpid() else None


@final
class LearnerProcess:
    """The test process's handle on the learner process (see the module's docstring).

    Each thread of the test body that calls learner code gets a connection of its own (a
    ``stop()`` run by a helper thread while the test's main thread looks at the server's
    threads), served over there by a thread of the same name."""

    def __init__(self, spec: SandboxSpec, group: TestGroup | None) -> None:
        global _current
        ours, theirs = socket.socketpair()
        opener, opened = socket.socketpair()
        self.owner = os.getpid()
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - the learner process; its coverage is its behaviour
            ours.close()
            opener.close()
            _serve(Connection(theirs.detach()), Connection(opened.detach()), spec, group)
        theirs.close()
        opened.close()
        self.conn = Connection(ours.detach())
        self._opener = Connection(opener.detach())
        self._conns: dict[threading.Thread, Connection] = {threading.current_thread(): self.conn}
        self._guard = threading.Lock()
        self._foreign: dict[int, Foreign] = {}
        self._functions: dict[tuple[int | None, str], RemoteFunction] = {}
        self.gone: str | None = None
        _current = self

    # -- requests ----------------------------------------------------------------------

    def _connection(self) -> Connection:
        """This thread's connection to the learner process, opened on its first request
        (those of threads that have ended are closed then: their threads over there end)."""
        me = threading.current_thread()
        with self._guard:
            conn = self._conns.get(me)
            if conn is None:
                for thread in [t for t in self._conns if not t.is_alive()]:
                    self._conns.pop(thread).close()
                ours, theirs = socket.socketpair()
                try:
                    self._opener.send_bytes(me.name.encode("utf-8", "replace")[:200])
                    reduction.send_handle(self._opener, theirs.fileno(), self.pid)
                finally:
                    theirs.close()
                conn = self._conns[me] = Connection(ours.detach())
        return conn

    def _ask(self, request: Request | None) -> tuple[Any, ...]:
        """Send ``request`` (None: the test has ended) and read the reply."""
        __tracebackhide__ = True
        if self.gone is not None:
            raise LearnerGone(self.gone)
        try:
            conn = self._connection()
            if request is None:
                conn.send_bytes(_FINISH)
            else:
                out = io.BytesIO()
                _Handles(out, self).dump(request)
                conn.send_bytes(out.getvalue())
            with control.away():
                data = conn.recv_bytes(MAX_REPLY)
        except (EOFError, OSError):
            self.gone = _("the process that runs your code ended ({how}) while {what}").format(
                how=procs.describe_exit(self._exit_status()), what=_describe(request)
            )
            raise LearnerGone(self.gone) from None
        try:
            reply = _Strict(data, request.passed if request is not None else [], self).load()
        except Exception as exc:  # noqa: BLE001 - anything garbled is the learner's doing
            self.gone = _("the process that runs your code answered {what} with {why}").format(
                what=_describe(request), why=f"data that is not plain ({exc})"
            )
            raise LearnerGone(self.gone) from None
        if type(reply) is not tuple or not reply or type(reply[0]) is not str:
            self.gone = _("the process that runs your code answered {what} with {why}").format(
                what=_describe(request), why="something that is not a reply"
            )
            raise LearnerGone(self.gone)
        return reply

    def _exit_status(self, wait: float = 1.0) -> int | None:
        """How the learner process ended (a negative signal number, or its exit code), if
        it ends within ``wait`` seconds."""
        deadline = time.monotonic() + wait
        while True:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return None
            if pid:
                return os.waitstatus_to_exitcode(status)
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.01)

    def foreign(self, handle: int, kind: str, shown: str) -> Foreign:
        """The stand-in for the learner's object ``handle``: the same one each time."""
        with self._guard:
            found = self._foreign.get(handle)
            if found is None:
                found = self._foreign[handle] = Foreign(kind, shown, self, handle)
            return found

    def attribute(self, name: str, of: Foreign | None = None) -> Any:
        """The learner module's attribute ``name`` (or that of the object ``of``). A
        function or method is looked up once: each call is then one round trip."""
        __tracebackhide__ = True
        handle = of._handle if of is not None else None
        known = self._functions.get((handle, name))
        if known is not None:
            return known
        reply = self._ask(Request("attr", name, handle=handle))
        if reply == ("function",):
            function = self._functions[handle, name] = RemoteFunction(self, name, handle)
            return function
        return self._result(reply, name)

    def call(
        self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], handle: int | None = None
    ) -> Any:
        __tracebackhide__ = True
        return self._invoke("call", name, args, kwargs, handle, name)

    def is_instance(self, obj: Any, name: str) -> bool:
        """``isinstance(obj, <the learner's class name>)``, asked over there."""
        if type(obj) is not Foreign or obj._learner is not self:
            return False
        return (
            self._result(self._ask(Request("isinstance", name, handle=obj._handle)), name) is True
        )

    def probe(self, function: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run the test's own ``function`` (see :func:`learner_side`) in the learner process."""
        __tracebackhide__ = True
        where = f"{function.__module__}:{function.__qualname__}"
        return self._invoke("probe", where, args, kwargs, None, function.__name__)

    def _invoke(
        self,
        op: str,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        handle: int | None,
        shown: str,
    ) -> Any:
        """A call over there, with the context set here around it (see :class:`CallContext`)."""
        __tracebackhide__ = True
        passed: list[Any] = []
        _passed_objects((args, kwargs), passed, set())
        request = Request(op, name, args, kwargs, CallContext.here(), passed, handle)
        return self._result(self._ask(request), shown)

    def flush(self) -> None:
        """Have the learner process write out what its threads have traced so far."""
        __tracebackhide__ = True
        self._ask(Request("flush"))

    def _result(self, reply: tuple[Any, ...], name: str) -> Any:
        __tracebackhide__ = True
        kind, rest = reply[0], reply[1:]
        if kind == "ok" and len(rest) == 1:
            problem = integrity.plain_data_problem(rest[0])
            if problem is not None:  # pragma: no cover - the unpickler lets none through
                raise KataFailure(Kind.WRONG, f"{name}() returned {problem}")
            return rest[0]
        raise _exception(kind, rest, name)

    def finish(self) -> list[leaks.Leak]:
        """The test body has returned: what the learner's code left behind, as seen in its
        own process (then the learner process waits to be ended with the test)."""
        with self._guard:  # the other threads' connections end: their threads over there too
            for conn in self._conns.values():
                if conn is not self.conn:
                    conn.close()
            self._opener.close()
        try:
            reply = self._ask(None)
        except LearnerGone:
            return []
        found = []
        if reply[0] == "leaks" and len(reply) == 2 and type(reply[1]) is list:
            for entry in reply[1]:
                if type(entry) is tuple and len(entry) == 2:
                    what, text = entry
                    if type(what) is str and type(text) is str:
                        found.append(leaks.Leak(what, text))
        return found


def _describe(request: Request | None) -> str:
    if request is None:
        return _("the test ended")
    if request.op == "call":
        return _("{name}() ran").format(name=request.name)
    return _("the test looked up {name}").format(name=request.name)


def _exception(kind: str, rest: tuple[Any, ...], name: str) -> BaseException:
    """The exception the test body sees for a reply that is not a result."""
    texts = all(type(part) is str for part in rest)
    if kind == "failure" and len(rest) == 4 and type(rest[0]) is str and type(rest[1]) is str:
        with contextlib.suppress(ValueError):
            failure = KataFailure(Kind(rest[0]), rest[1])
            failure.seed = rest[2] if type(rest[2]) is int else None
            failure.traced = rest[3] is True
            return failure
    if kind == "broken" and len(rest) == 1 and texts:
        return TargetImportError(rest[0])
    if kind == "todo" and len(rest) == 1 and texts:
        return LearnerTodo(rest[0])
    if kind == "missing" and len(rest) == 1 and texts:
        return AttributeError(rest[0])
    if kind == "deadlocked" and not rest:
        return control.Deadlocked()
    if kind == "raised" and len(rest) == 3 and type(rest[0]) is str and type(rest[1]) is str:
        frames = [
            traceback.FrameSummary(f[0], f[1], f[2], line=f[3])
            for f in (rest[2] if type(rest[2]) is list else [])
            if type(f) is tuple and len(f) == 4 and type(f[1]) is int
            if all(type(part) is str for part in (f[0], f[2], f[3]))
        ]
        cls = {"AssertionError": _LearnerAssertion, "MemoryError": _LearnerMemoryError}
        return cls.get(rest[0], LearnerError)(rest[0], rest[1], frames)
    return LearnerGone(
        _("the process that runs your code answered {what} with {why}").format(
            what=_("{name}() ran").format(name=name), why="something that is not a reply"
        )
    )


class LearnerTodo(Exception):
    """The learner's function is still the stub: the text says which and where to read."""


@final
class RemoteFunction:
    """A learner function or class, or a method of one of the learner's objects, called in
    the learner process. ``isinstance(obj, kata.SomeClass)`` asks over there."""

    def __init__(self, learner: LearnerProcess, name: str, handle: int | None = None) -> None:
        self._learner = learner
        self._handle = handle
        self.__name__ = self.__qualname__ = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        return self._learner.call(self.__name__, args, kwargs, self._handle)

    def __instancecheck__(self, obj: Any) -> bool:
        return self._handle is None and self._learner.is_instance(obj, self.__name__)

    def __repr__(self) -> str:
        return f"<{self.__name__} in the learner's process>"


def learner_side(function: Callable[..., Any]) -> Callable[..., Any]:
    """For a test module's own helper that must look at the learner's objects where they
    live (its threads, their stacks, a spy on ``socket``): ``function(kata, *args)`` runs in
    the learner's process when the test body runs apart from learner code, and returns its
    result from there as plain data (the learner's objects as stand-ins); here, it is just
    called. The helper must be defined at the top level of the test module."""

    @functools.wraps(function)
    def run(kata: Any, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        learner = active()
        if learner is None:
            return function(kata, *args, **kwargs)
        return learner.probe(function, args, kwargs)

    return run


# -- the learner process's side ----------------------------------------------------------


def _serve(
    conn: Connection, opener: Connection, spec: SandboxSpec, group: TestGroup | None
) -> NoReturn:
    """The learner process's whole life: become the learner, then answer until told to end."""
    global _current
    _current = None
    code = 0
    try:
        if spec.nonce_fd is not None:
            os.close(spec.nonce_fd)  # the test process's proof: never the learner's
            spec.nonce_fd = None
        who = privilege.learner()
        if group is not None:
            group.add(os.getpid())
        if who is not None:
            privilege.become(who, spec.rundir)
        boot.register("test process", role="test")
        side = _Side(spec)
        opening = threading.Thread(
            target=side.open_channels, args=(opener,), name="pytest-katas-channels", daemon=True
        )
        opening.start()
        baseline = leaks.Baseline.take()
        while True:
            try:
                data = conn.recv_bytes()
            except EOFError:
                break
            if data == _FINISH:
                side.end()
                own = {conn.fileno(), *side.open_fds()}
                found = leaks.find_leaks(baseline, own, spec.rundir, spec.target.kata.relpath)
                conn.send_bytes(_dump(("leaks", [(x.what, x.description) for x in found]), {}))
                with contextlib.suppress(EOFError, OSError):
                    conn.recv_bytes()  # nothing more comes: wait to be ended with the test
                break
            conn.send_bytes(side.reply(data, main=True))
    except BaseException:  # noqa: BLE001 - the test process reports a learner process that died
        traceback.print_exc()
        code = os.EX_SOFTWARE
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
    os._exit(code)


@final
class _Side:
    """What the learner process keeps between requests: the objects the test holds
    stand-ins for, the schedule noise in force, the connections of the test's threads."""

    def __init__(self, spec: SandboxSpec) -> None:
        self.spec = spec
        self.kept = _Kept()
        self.fds: set[int] = set()
        self.guard = threading.Lock()
        self.noise: tuple[int, int] | None = None
        self.noisy = contextlib.ExitStack()

    def open_channels(self, opener: Connection) -> None:
        """Serve each connection the test process opens for one of its threads, in a
        thread named like that one (its name shows in the trace as the test's own)."""
        while True:
            try:
                name = opener.recv_bytes(1024).decode("utf-8", "replace")
                fd = reduction.recv_handle(opener)
            except (EOFError, OSError):
                return
            with self.guard:
                self.fds.add(fd)
            threading.Thread(target=self._channel, args=(fd,), name=name, daemon=True).start()

    def _channel(self, fd: int) -> None:
        try:
            with Connection(fd) as conn:
                while True:
                    try:
                        data = conn.recv_bytes()
                    except (EOFError, OSError):
                        return
                    conn.send_bytes(self.reply(data, main=False))
        finally:
            with self.guard:
                self.fds.discard(fd)  # closed: the number may be the learner's next

    def open_fds(self) -> set[int]:
        with self.guard:
            return set(self.fds)

    def end(self) -> None:
        """The test has ended: what the test held goes, and so does the noise."""
        self.kept.clear()
        with self.guard:
            self.noisy.close()
            self.noise = None
        trace.flush()

    def reply(self, data: bytes, main: bool) -> bytes:
        """The answer to one request, pickled. Nothing of the call outlives this function
        but what the test keeps a stand-in for: what is still alive at the end of the test
        is what learner code kept."""
        try:
            request = _Request(data, self.kept).load()
        except Exception as exc:  # noqa: BLE001 - an argument that does not arrive whole
            return _dump(_raised(exc), {})
        reply, passed = self._answer(request, main)
        trace.flush()
        try:
            return _dump(reply, passed, self.kept)
        except Exception as exc:  # noqa: BLE001 - a result that cannot be sent
            return _dump(_raised(exc), {})

    def _answer(self, request: Request, main: bool) -> tuple[tuple[Any, ...], dict[int, int]]:
        spec = self.spec
        passed = {id(obj): number for number, obj in enumerate(request.passed)}
        owner = spec.target if request.handle is None else self.kept.get(request.handle)
        try:
            if request.op == "flush":
                return ("ok", None), {}
            if request.op == "attr":
                value = getattr(owner, request.name)
                return (("function",) if callable(value) else ("ok", value)), {}
            if request.op == "isinstance":
                cls = getattr(spec.target, request.name)
                return ("ok", isinstance(owner, cls) if isinstance(cls, type) else False), {}
            if request.op == "probe":
                module, _, qualname = request.name.partition(":")
                function: Any = sys.modules[module]
                for part in qualname.split("."):
                    function = getattr(function, part)
                function = getattr(function, "__wrapped__", function)
                args: tuple[Any, ...] = (spec.target, *request.args)
            else:
                function = getattr(owner, request.name)
                args = _exit_args(request) if request.name == "__exit__" else request.args
            assert request.context is not None
            with self._context(request.context, main):
                return ("ok", function(*args, **request.kwargs)), passed
        except control.Deadlocked:
            from pytest_katas import stress

            stress._stop_children()
            return ("deadlocked",), {}
        except KataFailure as exc:
            return ("failure", exc.kind.value, str(exc), exc.seed, exc.traced), {}
        except TargetImportError as exc:
            return ("broken", str(exc)), {}
        except AttributeError as exc:
            if request.op == "attr":
                return ("missing", str(exc)), {}
            return _raised(exc), {}
        except NotImplementedError as exc:
            kata, path = spec.target.kata, spec.target.path
            text = describe_not_implemented(kata, path, exc.__traceback__, spec.test_name)
            return (("todo", text) if text is not None else _raised(exc)), {}
        except BaseException as exc:  # noqa: BLE001 - every exception of learner code is reported
            return _raised(exc), {}

    @contextlib.contextmanager
    def _context(self, context: CallContext, main: bool) -> Iterator[None]:
        """Set what the test process had set around the call (see :class:`CallContext`).
        The noise stays on after the call, until a request says otherwise: threads the
        learner's code started (a server's) go on running between calls."""
        multiprocessing.set_start_method(context.start_method, force=True)
        trace.set_tracing(context.tracing)
        trace.generation = context.generation
        with self.guard:
            if context.noise != self.noise:
                self.noisy.close()
                self.noise = context.noise
                if context.noise is not None:
                    self.noisy.enter_context(schedule.noise(*context.noise))
        with coordinate.taking_part() if main else contextlib.nullcontext():
            yield


def _exit_args(request: Request) -> tuple[Any, ...]:
    """``__exit__``'s arguments: an exception told by name is one of a class of that name."""
    if len(request.args) == 3 and request.args[0] == _EXIT:
        name, message = str(request.args[1]), str(request.args[2])
        kind = getattr(builtins, name, None)
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            kind = type(name, (Exception,), {})
        try:
            exc = kind(message)
        except Exception:  # noqa: BLE001 - a builtin that wants other arguments
            kind = type(name, (Exception,), {})
            exc = kind(message)
        return kind, exc, None
    return request.args


def _dump(reply: tuple[Any, ...], passed: dict[int, int], kept: _Kept | None = None) -> bytes:
    out = io.BytesIO()
    _Plain(out, passed, kept).dump(reply)
    return out.getvalue()


def _raised(exc: BaseException) -> tuple[Any, ...]:
    frames = [
        (f.filename, f.lineno or 0, f.name, f.line or "")
        for f in traceback.extract_tb(exc.__traceback__)
    ]
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - a learner's __str__ may raise
        message = ""
    return ("raised", type(exc).__name__, message[:2000], frames[-20:])
