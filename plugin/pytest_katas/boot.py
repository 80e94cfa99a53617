"""Runs first in every process of a kata test: imports learner code by name, and records
what each process is, how it ended, and where it is blocked when asked (SIGUSR1).

The test sandbox calls :func:`install` directly. Children started with fork inherit it;
children started with spawn or forkserver run it through :mod:`pytest_katas._childmain`,
which stands in for ``__main__`` so that multiprocessing imports it before anything else.
Everything here talks to the supervisor through the run directory (:mod:`.channel`).
"""

from __future__ import annotations

import atexit
import importlib.abc
import importlib.machinery
import importlib.util
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import FrameType, ModuleType
from typing import IO, Any, Final

from pytest_katas import channel
from pytest_katas.channel import RunDir

__all__ = ["STACK_SIGNAL", "install", "learner_site", "register", "role_of"]

STACK_SIGNAL: Final = signal.SIGUSR1

_installed_pid: int | None = None
_stack_file: IO[str] | None = None


class _TargetFinder(importlib.abc.MetaPathFinder):
    """Imports the kata target (``kata_pipe`` ...) from its file, in any process."""

    def __init__(self, modules: dict[str, str]) -> None:
        self.modules = modules

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        location = self.modules.get(fullname)
        if location is None:
            return None
        return kata_spec(fullname, location)


_no_learner_code_in: int | None = None  # the pid of a test process whose body runs apart


def forbid_learner_code() -> None:
    """In a test process whose body runs apart from learner code (it keeps root): from now
    on no learner module can be imported in this process, by anyone (the noise and the
    store hooks look for learner code by importing it; here they find none)."""
    global _no_learner_code_in
    _no_learner_code_in = os.getpid()


class _KataLoader(importlib.machinery.SourceFileLoader):
    """Loads a learner module, then traces the attributes of its classes."""

    def exec_module(self, module: ModuleType) -> None:
        if _no_learner_code_in == os.getpid():
            raise ImportError(f"{self.name} runs in the learner process, never here")
        super().exec_module(module)
        from pytest_katas import hooks_objects

        hooks_objects.instrument(module)


def kata_spec(name: str, location: str) -> ModuleSpec | None:
    """How to import the learner's file ``location`` as module ``name``."""
    return importlib.util.spec_from_file_location(
        name, location, loader=_KataLoader(name, location)
    )


def learner_site(frames: traceback.StackSummary | None = None) -> str | None:
    """``file:line`` of the innermost learner-code frame of ``frames`` (default: here)."""
    files = set(channel.learner_files())
    for frame in reversed(frames if frames is not None else traceback.extract_stack()):
        if frame.filename in files:
            return f"{frame.filename}:{frame.lineno}"
    return None


def _dump_stacks(signum: int, frame: FrameType | None) -> None:
    """Write every thread's stack, innermost call first, in faulthandler's format.

    faulthandler can dump from a C signal handler whatever Python is doing, but it walks
    the other threads' frames while they run, and that crashes the process when a thread
    is busy making and dropping frames (seen with a learner's spinning loop). This handler
    runs in the main thread between two bytecodes, holding the GIL: a blocked call returns
    EINTR, the handler runs, and the call goes on.
    """
    handle = _stack_file
    if handle is None:
        return
    try:
        lines = []
        here = threading.get_ident()
        for ident, top in sys._current_frames().items():
            head = "Current thread" if ident == here else "Thread"
            lines.append(f"{head} 0x{ident:016x} (most recent call first):")
            walk = frame if ident == here else top
            while walk is not None:
                code = walk.f_code
                lines.append(f'  File "{code.co_filename}", line {walk.f_lineno} in {code.co_name}')
                walk = walk.f_back
            lines.append("")
        handle.write("\n".join(lines) + "\n")
        handle.flush()
    except Exception:  # noqa: BLE001, S110 - a stack dump must never break the learner's code
        pass


def _target_name(func: Any) -> str | None:
    return None if func is None else (getattr(func, "__qualname__", None) or repr(func))


def _target_site(func: Any) -> str | None:
    code = getattr(func, "__code__", None)
    return f"{code.co_filename}:{code.co_firstlineno}" if code is not None else None


def role_of(func: Any) -> str:
    """What a multiprocessing child is, from its target: a Manager's server, a Pool's
    worker, or one of the learner's own processes."""
    module = getattr(func, "__module__", "") or ""
    name = getattr(func, "__qualname__", "") or ""
    if module == "multiprocessing.managers" and name.endswith("_run_server"):
        return "manager"
    if module == "multiprocessing.pool" and name == "worker":
        return "pool"
    return "worker"


def _ignore_stack_signal() -> None:
    """At the end of a process that exits through the interpreter (a spawned child, a pool
    worker under spawn): Python puts its own handlers back to the default as it finalizes,
    and the default of SIGUSR1 is to die. A stack asked for then would kill a process that
    was ending well. An ignored signal stays ignored."""
    signal.signal(STACK_SIGNAL, signal.SIG_IGN)


def register(name: str, func: Any = None, role: str | None = None) -> None:
    """Announce this process to the supervisor and arm the stack dump on SIGUSR1."""
    global _stack_file
    rundir = RunDir.current()
    if rundir is None:
        return
    pid = os.getpid()
    if _stack_file is not None:
        _stack_file.close()
    _stack_file = open(rundir.stack_path(pid), "w", encoding="utf-8")
    if threading.current_thread() is threading.main_thread():
        signal.signal(STACK_SIGNAL, _dump_stacks)
        atexit.register(_ignore_stack_signal)
    info = channel.ProcessInfo(
        pid=pid,
        name=name,
        role=role or role_of(func),
        started=time.time(),
        target=_target_name(func),
        where=_target_site(func),
        main_thread=threading.main_thread().ident,
        parent=os.getppid(),
    )
    rundir.write(channel.REGISTERED, info)


def record_exception(exc: BaseException) -> None:
    """Keep what ended this process, for the crash report."""
    rundir = RunDir.current()
    if rundir is None or (isinstance(exc, SystemExit) and exc.code in (None, 0)):
        return
    frames = tuple(
        (frame.filename, frame.lineno or 0, frame.name)
        for frame in traceback.extract_tb(exc.__traceback__)
    )
    rundir.write(
        channel.RAISED,
        channel.Raised(
            pid=os.getpid(),
            traceback="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
            exc_type=type(exc).__qualname__,
            message=str(exc),
            frames=frames,
        ),
    )


def _patch_process() -> None:
    from multiprocessing import process

    original = process.BaseProcess._bootstrap  # type: ignore[attr-defined]
    if getattr(original, "_kata_patched", False):
        return

    def _bootstrap(self: Any, *args: Any, **kwargs: Any) -> Any:
        from pytest_katas import hooks, schedule

        target = getattr(self, "_target", None)
        role = role_of(target)
        register(self.name, target or type(self).run, role)
        hooks.process_began(self, role)
        if role != "manager":  # a Manager's server is not learner code
            schedule.install_from_env(self.name)
        run = self.run

        def watched_run() -> None:
            try:
                run()
            except SystemExit:
                raise
            except BaseException as exc:  # noqa: BLE001 - recorded, then the child exits
                # The supervisor shows this traceback once, in the learner's terms; the
                # exit code stays the 1 that multiprocessing gives a child that raised.
                record_exception(exc)
                raise SystemExit(1) from None
            finally:
                hooks.process_ending(self)

        self.run = watched_run
        return original(self, *args, **kwargs)

    _bootstrap._kata_patched = True  # type: ignore[attr-defined]
    process.BaseProcess._bootstrap = _bootstrap  # type: ignore[attr-defined]
    from pytest_katas import trace

    trace.stack_root(_bootstrap.__code__)
    trace.stack_root(original.__code__)

    original_start = process.BaseProcess.start

    def start(self: Any) -> None:
        # Noted by the parent too: a child killed before it boots (a Pool terminated at
        # once under spawn) still counts as started.
        original_start(self)
        rundir = RunDir.current()
        if rundir is None:
            return
        target = getattr(self, "_target", None)
        info = channel.ProcessInfo(
            pid=self.pid,
            name=self.name,
            role=role_of(target),
            started=time.time(),
            target=_target_name(target),
            where=_target_site(target),
            parent=os.getpid(),
        )
        rundir.write(channel.STARTED, info)

    process.BaseProcess.start = start  # type: ignore[method-assign]


def _patch_exit_codes() -> None:
    """Remember every child's exit code as its parent learns it, for crash reports."""
    from multiprocessing import popen_fork, popen_forkserver

    for cls in (popen_fork.Popen, popen_forkserver.Popen):
        original = cls.__dict__.get("poll")
        if original is None or getattr(original, "_kata_patched", False):
            continue

        def poll(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            seen = self.returncode
            code = _original(self, *args, **kwargs)
            rundir = RunDir.current()
            if seen is None and code is not None and rundir is not None:
                rundir.write(channel.EXITED, channel.Exited(self.pid, code))
            return code

        poll._kata_patched = True  # type: ignore[attr-defined]
        cls.poll = poll  # type: ignore[method-assign]


def _patch_deliberate_signals() -> None:
    """Remember which children were ended on purpose (terminate(), kill()): not crashes."""
    from multiprocessing import popen_fork

    original = popen_fork.Popen._send_signal  # type: ignore[attr-defined]
    if getattr(original, "_kata_patched", False):
        return

    def _send_signal(self: Any, sig: int) -> None:
        rundir = RunDir.current()
        if rundir is not None:
            rundir.write(channel.ENDED, channel.Ended(self.pid, sig))
        original(self, sig)

    _send_signal._kata_patched = True  # type: ignore[attr-defined]
    popen_fork.Popen._send_signal = _send_signal  # type: ignore[attr-defined]


def _patch_pool_failures() -> None:
    """Keep the traceback of every task that failed in a Pool worker, even if ignored."""
    from multiprocessing import pool

    for cls in (pool.ApplyResult, pool.MapResult):
        original = cls.__dict__["_set"]
        if getattr(original, "_kata_patched", False):
            continue

        def _set(self: Any, i: Any, obj: Any, _original: Any = original) -> None:
            success, value = obj
            if not success:
                _record_pool_failure(value)
            _original(self, i, obj)

        _set._kata_patched = True  # type: ignore[attr-defined]
        cls._set = _set  # type: ignore[union-attr]


def _record_pool_failure(exc: Any) -> None:
    rundir = RunDir.current()
    if rundir is None or not isinstance(exc, BaseException):
        return
    cause = exc.__cause__
    remote = str(cause) if cause is not None else ""
    text = remote or "".join(traceback.format_exception_only(type(exc), exc))
    failure = channel.PoolFailure(os.getpid(), text.strip())
    rundir.write(channel.POOL_FAILED, failure, key=str(time.monotonic_ns()))


def install() -> None:
    """Make this process a well-behaved citizen of a kata test. Safe to call twice."""
    global _installed_pid
    if _installed_pid == os.getpid():
        return
    _installed_pid = os.getpid()
    modules = channel.learner_modules()
    if modules and not any(isinstance(f, _TargetFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _TargetFinder(modules))
    _patch_process()
    _patch_exit_codes()
    _patch_deliberate_signals()
    _patch_pool_failures()
    from pytest_katas import hooks, trace

    trace.install()
    hooks.install()
