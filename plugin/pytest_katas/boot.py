"""Runs first in every process of a kata test: imports learner code by name, and records
what each process is, how it ended, and where it is blocked when asked (SIGUSR1).

The test sandbox calls :func:`install` directly. Children started with fork inherit it;
children started with spawn or forkserver run it through :mod:`pytest_katas._childmain`,
which stands in for ``__main__`` so that multiprocessing imports it before anything else.
Everything here talks to the supervisor through small files in ``$PYTEST_KATA_RUNDIR``.
"""

from __future__ import annotations

import faulthandler
import importlib.abc
import importlib.util
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import IO, Any, Final

__all__ = ["ENV_MODULES", "ENV_RUNDIR", "STACK_SIGNAL", "install", "learner_site", "register"]

ENV_RUNDIR: Final = "PYTEST_KATA_RUNDIR"
ENV_MODULES: Final = "PYTEST_KATA_MODULES"
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
        return importlib.util.spec_from_file_location(fullname, location)


def _rundir() -> str | None:
    return os.environ.get(ENV_RUNDIR)


def _write(name: str, data: dict[str, Any]) -> None:
    rundir = _rundir()
    if rundir is None:
        return
    path = os.path.join(rundir, name)
    try:
        with open(path + ".tmp", "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        os.replace(path + ".tmp", path)
    except OSError:
        pass


def learner_files() -> set[str]:
    return set(json.loads(os.environ.get(ENV_MODULES, "{}")).values())


def learner_site(frames: traceback.StackSummary | None = None) -> str | None:
    """``file:line`` of the innermost learner-code frame of ``frames`` (default: here)."""
    files = learner_files()
    for frame in reversed(frames if frames is not None else traceback.extract_stack()):
        if frame.filename in files:
            return f"{frame.filename}:{frame.lineno}"
    return None


def _describe(func: Any) -> dict[str, Any]:
    code = getattr(func, "__code__", None)
    return {
        "target": getattr(func, "__qualname__", None) or repr(func),
        "where": f"{code.co_filename}:{code.co_firstlineno}" if code is not None else None,
    }


def register(name: str, func: Any = None, role: str = "child") -> None:
    """Announce this process to the supervisor and arm the stack dump on SIGUSR1."""
    global _stack_file
    rundir = _rundir()
    if rundir is None:
        return
    pid = os.getpid()
    if _stack_file is not None:
        _stack_file.close()
    _stack_file = open(os.path.join(rundir, f"stack-{pid}.txt"), "w", encoding="utf-8")
    faulthandler.register(STACK_SIGNAL, file=_stack_file, all_threads=True, chain=False)
    info = {"pid": pid, "name": name, "role": role, "started": time.time()}
    info["main_thread"] = threading.main_thread().ident
    info.update(_describe(func) if func is not None else {"target": None, "where": None})
    _write(f"proc-{pid}.json", info)


def _record_exception(exc: BaseException) -> None:
    if isinstance(exc, SystemExit) and exc.code in (None, 0):
        return
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    _write(f"exc-{os.getpid()}.json", {"pid": os.getpid(), "traceback": text})


def _patch_process() -> None:
    from multiprocessing import process

    original = process.BaseProcess._bootstrap  # type: ignore[attr-defined]
    if getattr(original, "_kata_patched", False):
        return

    def _bootstrap(self: Any, *args: Any, **kwargs: Any) -> Any:
        from pytest_katas import schedule

        target = getattr(self, "_target", None)
        register(self.name, target or type(self).run)
        if (
            getattr(target, "__name__", "") != "_run_server"
        ):  # a Manager's server is not learner code
            schedule.install_from_env(self.name)
        run = self.run

        def watched_run() -> None:
            try:
                run()
            except BaseException as exc:
                _record_exception(exc)
                raise

        self.run = watched_run
        return original(self, *args, **kwargs)

    _bootstrap._kata_patched = True  # type: ignore[attr-defined]
    process.BaseProcess._bootstrap = _bootstrap  # type: ignore[attr-defined]

    original_start = process.BaseProcess.start

    def start(self: Any) -> None:
        # Noted by the parent too: a child killed before it boots (a Pool terminated at
        # once under spawn) still counts as started.
        original_start(self)
        target = getattr(self, "_target", None)
        info = {"pid": self.pid, "name": self.name, "role": "child", "started": time.time()}
        info.update(_describe(target) if target is not None else {"target": None, "where": None})
        _write(f"started-{self.pid}.json", info)

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
            if seen is None and code is not None:
                _write(f"exit-{self.pid}.json", {"pid": self.pid, "exitcode": code})
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
        _write(f"ended-{self.pid}.json", {"pid": self.pid, "signal": sig})
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
    rundir = _rundir()
    if rundir is None or not isinstance(exc, BaseException):
        return
    cause = exc.__cause__
    remote = str(cause) if cause is not None else ""
    text = remote or "".join(traceback.format_exception_only(type(exc), exc))
    stamp = f"{os.getpid()}-{time.monotonic_ns()}"
    _write(f"poolexc-{stamp}.json", {"pid": os.getpid(), "traceback": text.strip()})


def _patch_threads() -> None:
    """Note where each thread was started, so a leaked thread can say where it came from."""
    original = threading.Thread.start
    if getattr(original, "_kata_patched", False):
        return

    def start(self: threading.Thread) -> None:
        stack = traceback.extract_stack()[:-1]
        self._kata_site = learner_site(traceback.StackSummary.from_list(stack)) or (  # type: ignore[attr-defined]
            f"{stack[-1].filename}:{stack[-1].lineno}" if stack else None
        )
        original(self)

    start._kata_patched = True  # type: ignore[attr-defined]
    threading.Thread.start = start  # type: ignore[method-assign]


def install() -> None:
    """Make this process a well-behaved citizen of a kata test. Safe to call twice."""
    global _installed_pid
    if _installed_pid == os.getpid():
        return
    _installed_pid = os.getpid()
    modules = json.loads(os.environ.get(ENV_MODULES, "{}"))
    if modules and not any(isinstance(f, _TargetFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _TargetFinder(modules))
    _patch_process()
    _patch_exit_codes()
    _patch_deliberate_signals()
    _patch_pool_failures()
    _patch_threads()
    from pytest_katas import schedule

    schedule.install_ipc_noise()
