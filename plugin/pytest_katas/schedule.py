"""Seeded schedule noise: forced thread switches inside learner code, and jitter around IPC.

Races hide because the window between a read and its write is a few bytecodes wide. Noise
widens it, and only where the learner's code runs:

- threads: at random bytecode instructions of learner code objects, the running thread
  sleeps for 0 s, handing the GIL to another thread (``sys.monitoring`` on 3.12+, opcode
  tracing on 3.10 and 3.11; code outside the learner's file runs untraced);
- processes: around Pipe send/recv, Manager proxy calls, Lock acquire/release, Queue
  put/get and socket send/recv, a process sometimes pauses for a moment.

The scheduler is randomized, not PCT: PCT needs to choose which thread runs next, and the
OS does that for real threads and processes. Random preemption points, seeded, are what we
can control, and they are enough (see bench/). One seed drives every decision: each thread
and process derives its own generator from (seed, run, its name), so a replay makes the same
choices, though the OS may still interleave differently.
"""

from __future__ import annotations

import contextlib
import dataclasses
import dis
import importlib
import os
import random
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from typing import Any, Final

from pytest_katas import channel
from pytest_katas.channel import RunDir, RunState

__all__ = [
    "Jitter",
    "install_from_env",
    "jitter",
    "learner_codes",
    "noise",
    "unwatch_instructions",
    "watch_instructions",
]

# Thread noise is sparse, so that correct code stays fast: each run picks ONE instruction in
# each learner function as its preemption point, and only that point ever yields. A race
# window a few instructions wide holds the point in a fair share of runs, and runs are many.
THREAD_P: Final = 0.003  # chance of a forced switch each time a thread passes the point
# 3.10 and 3.11 have no sys.monitoring: opcode tracing is dear, so only a share of learner
# calls is traced at all, and a traced pass yields more often to make up for it.
FRAME_P: Final = 0.03
TRACED_THREAD_P: Final = 0.15


class Jitter:
    """This process's IPC jitter: off until a stress run turns it on."""

    def __init__(self) -> None:
        self.rng: random.Random | None = None

    def start(self, seed: int, run: int, who: str) -> None:
        self.rng = random.Random(f"{seed}:{run}:{who}")

    def stop(self) -> None:
        self.rng = None

    def __call__(self, chance: float, longest: float) -> None:
        rng = self.rng
        if rng is not None and rng.random() < chance:
            time.sleep(rng.random() * longest)


jitter = Jitter()


def install_from_env(who: str | None = None) -> None:
    """In a child: follow the stress run that is on, if any (its seed is in the rundir)."""
    rundir = RunDir.current()
    if rundir is None:
        return
    state = rundir.read_state()
    if state.noise:
        jitter.start(state.seed, state.run, who or str(os.getpid()))
    else:
        jitter.stop()


_OFFSETS: dict[int, tuple[types.CodeType, list[int]]] = {}


def _offsets(code: types.CodeType) -> list[int]:
    """The instruction offsets of ``code``, worked out once (dis is slow)."""
    cached = _OFFSETS.get(id(code))
    if cached is None or cached[0] is not code:
        cached = _OFFSETS[id(code)] = (code, [i.offset for i in dis.get_instructions(code)])
    return cached[1]


def learner_codes() -> list[types.CodeType]:
    """Every code object of the learner's module: functions, methods, nested ones."""
    names = channel.learner_modules()
    found: dict[int, types.CodeType] = {}

    def add(code: types.CodeType) -> None:
        if id(code) in found:
            return
        found[id(code)] = code
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                add(const)

    def visit(value: Any, depth: int) -> None:
        func = getattr(value, "__func__", value)
        for candidate in (func, getattr(value, "fget", None), getattr(value, "fset", None)):
            code = getattr(candidate, "__code__", None)
            if isinstance(code, types.CodeType):
                add(code)
        if isinstance(value, type) and depth < 3:
            for member in vars(value).values():
                visit(member, depth + 1)

    for name in names:
        with contextlib.suppress(Exception):  # a broken file is reported by the test itself
            importlib.import_module(name)
        module = sys.modules.get(name)
        if module is not None:
            for value in list(vars(module).values()):
                visit(value, 0)
    return list(found.values())


class _ThreadNoise:
    """Forced GIL hand-offs at random bytecodes of learner code, in every thread."""

    def __init__(self, seed: int, run: int) -> None:
        self.seed, self.run = seed, run
        self.chance = THREAD_P if sys.version_info >= (3, 12) else TRACED_THREAD_P
        self.rngs: dict[int, random.Random] = {}  # per thread, by ident: a cheap lookup
        self.codes = learner_codes()
        self.files = {code.co_filename for code in self.codes}
        picker = random.Random(f"{seed}:{run}:points")
        self.points = {
            id(code): picker.choice(offsets) for code in self.codes if (offsets := _offsets(code))
        }
        self.tool: int | None = None
        self.active = True

    def _rng(self) -> random.Random:
        ident = threading.get_ident()
        rng = self.rngs.get(ident)
        if rng is None:
            name = threading.current_thread().name
            rng = self.rngs[ident] = random.Random(f"{self.seed}:{self.run}:{name}")
        return rng

    def _maybe_switch(self) -> None:
        if self._rng().random() < self.chance:
            time.sleep(0)

    def _point(self, code: types.CodeType, offset: int) -> Any:
        """sys.monitoring's INSTRUCTION callback: the point may yield; others switch off."""
        if self.points.get(id(code)) != offset:
            return sys.monitoring.DISABLE  # type: ignore[attr-defined,unused-ignore]
        self._maybe_switch()
        return None

    def start(self) -> None:
        if not self.codes:
            return
        if sys.version_info >= (3, 12):
            self._start_monitoring()
        else:
            sys.settrace(self._global_trace)
            threading.settrace(self._global_trace)

    def stop(self) -> None:
        self.active = False
        if sys.version_info >= (3, 12):
            self._stop_monitoring()
        else:
            sys.settrace(None)
            threading.settrace(None)  # type: ignore[arg-type,unused-ignore]

    def _global_trace(
        self, frame: types.FrameType, event: str, arg: Any
    ) -> Callable[..., Any] | None:
        if not self.active or frame.f_code.co_filename not in self.files:
            return None  # threads started during the run trace on after it: stay cheap
        if self._rng().random() >= FRAME_P:
            return None
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        return self._local_trace

    def _local_trace(
        self, frame: types.FrameType, event: str, arg: Any
    ) -> Callable[..., Any] | None:
        if not self.active:
            return None
        if event == "opcode" and frame.f_lasti == self.points.get(id(frame.f_code)):
            self._maybe_switch()
        return self._local_trace

    def _start_monitoring(self) -> None:
        self.tool = watch_instructions(self.codes, self._point, "pytest-katas")

    def _stop_monitoring(self) -> None:
        unwatch_instructions(self.tool, self.codes)
        self.tool = None


def watch_instructions(
    codes: list[types.CodeType], callback: Callable[[types.CodeType, int], Any], name: str
) -> int | None:
    """3.12+: call ``callback(code, offset)`` before each instruction of ``codes`` (until
    it returns DISABLE for that one) with a free ``sys.monitoring`` tool; which, or None."""
    monitoring = sys.monitoring  # type: ignore[attr-defined,unused-ignore]
    tool = next((t for t in (4, 3, 2) if monitoring.get_tool(t) is None), None)
    if tool is None:
        return None
    monitoring.use_tool_id(tool, name)
    event = monitoring.events.INSTRUCTION
    monitoring.register_callback(tool, event, callback)
    monitoring.restart_events()  # what the last run disabled is watched again
    for code in codes:
        monitoring.set_local_events(tool, code, event)
    return tool


def unwatch_instructions(tool: int | None, codes: list[types.CodeType]) -> None:
    """Undo :func:`watch_instructions`."""
    if tool is None:
        return
    monitoring = sys.monitoring  # type: ignore[attr-defined,unused-ignore]
    for code in codes:
        monitoring.set_local_events(tool, code, 0)
    monitoring.register_callback(tool, monitoring.events.INSTRUCTION, None)
    monitoring.free_tool_id(tool)


_noise: tuple[int, int] | None = None


def current_noise() -> tuple[int, int] | None:
    """The (seed, run) of the stress run under noise in this process, if one is on."""
    return _noise


@contextlib.contextmanager
def noise(seed: int, run: int) -> Iterator[None]:
    """Turn every kind of noise on for one stress run, in this process and new children."""
    global _noise
    rundir = RunDir.current()
    before = rundir.read_state() if rundir is not None else RunState()
    if rundir is not None:
        rundir.write_state(dataclasses.replace(before, noise=True, seed=seed, run=run))
    jitter.start(seed, run, "test process")
    threads = _ThreadNoise(seed, run)
    threads.start()
    _noise = (seed, run)
    try:
        yield
    finally:
        _noise = None
        threads.stop()
        jitter.stop()
        if rundir is not None:
            rundir.write_state(dataclasses.replace(before, noise=False))
