"""The hooks on every IPC and synchronisation call of a kata test's processes.

Each wrapper does up to three jobs: it records the call in the trace (:mod:`.trace`), says
in the status table when the calling thread waits, and adds schedule noise
(:mod:`.schedule`) while a stress run has it on. Only what the learner made is traced as the
learner's: pipes, locks and sockets made by learner code, and attributes of the learner's own
classes; the stdlib's own pipes and locks only report when they make a thread wait. The hooks
live by what they watch: :mod:`.hooks_ipc` (pipes, queues, Manager proxies),
:mod:`.hooks_sync` (locks, events, threads), :mod:`.hooks_net` (sockets) and
:mod:`.hooks_objects` (the learner's own objects); this module has processes and pools.
"""

from __future__ import annotations

import os
from typing import Any

from pytest_katas import control, coordinate, hooks_ipc, hooks_net, hooks_sync, trace
from pytest_katas.wrapping import install_wrapper, new_id, patched

__all__ = ["install", "process_began", "process_ending"]


# -- processes and pools --------------------------------------------------------------------


def _patch_processes() -> None:
    from multiprocessing import process

    cls = process.BaseProcess
    if patched(cls, "join"):
        return
    start, join = cls.start, cls.join

    def start_(self: Any) -> None:
        self._kata_token = new_id("p")
        trace.record("pstart", self._kata_token, self.name)
        self._kata_role = _role(self)  # start() forgets the target: keep what it was
        if not coordinate.active() or self._kata_role != "worker":
            start(self)  # a Manager's server or a Pool's worker is not scheduled
            return
        coordinate.point("start", "#?", trace.site())
        with control.away():  # a spawned child takes a while: not a thread gone astray
            start(self)
        coordinate.spawned(self.pid, self.name)

    def process_join_(self: Any, timeout: float | None = None) -> None:
        if coordinate.active() and getattr(self, "_kata_role", None) == "worker":
            # Granted only once the child is done with its steps: a join never waits here
            # for a child that waits for us.
            coordinate.point("join", str(self.pid), trace.site(), join=self.pid)
        with trace.waiting("join", self.name, timeout is not None, trace.site()):
            join(self, timeout)
        if self.exitcode is not None:
            trace.record("pjoin", getattr(self, "_kata_token", ""), [self.pid, self.exitcode])

    install_wrapper(cls, "start", start_)
    install_wrapper(cls, "join", process_join_)


def _role(process: Any) -> str:
    from pytest_katas.boot import role_of

    return role_of(getattr(process, "_target", None))


def process_began(process: Any, role: str) -> None:
    """First words of a multiprocessing child (from its bootstrap)."""
    trace.record("pbegin", getattr(process, "_kata_token", ""), [process.name, role])
    if role == "manager":
        trace.silence()
    if role == "worker":
        coordinate.connect_child(process.name)


def process_ending(process: Any) -> None:
    trace.record("pend", getattr(process, "_kata_token", ""), os.getpid())
    coordinate.done()
    trace.flush()


_POOL_CALLS = (
    "__init__",  # recorded as "open": a pool the learner made
    "close",
    "join",
    "terminate",
    "map",
    "map_async",
    "imap",
    "imap_unordered",
    "starmap",
    "starmap_async",
    "apply",
    "apply_async",
)


def _patch_pool() -> None:
    from multiprocessing import pool

    cls = pool.Pool
    if patched(cls, "close"):
        return
    for name in _POOL_CALLS:
        original = getattr(cls, name)

        def pool_call_(
            self: Any, *args: Any, _original: Any = original, _name: str = name, **kwargs: Any
        ) -> Any:
            where = trace.site()
            if where >= 0:  # the learner's own call, not the pool's inside another one
                trace.record("pool", f"{id(self):x}", _POOL_EVENTS.get(_name, _name), where)
                # A Pool's workers and threads go their own way: no schedule of ours holds.
                coordinate.give_up("a multiprocessing.Pool's own processes and threads")
                control.give_up("a multiprocessing.Pool's own processes and threads")
            if _name in ("join", "apply"):  # both wait for the pool's workers
                with trace.waiting(_name, "pool", False, where):
                    return _original(self, *args, **kwargs)
            return _original(self, *args, **kwargs)

        install_wrapper(cls, name, pool_call_)


# How a pool call is named in the trace, where the method's own name would not say it.
_POOL_EVENTS = {"__init__": "open"}

_fork_hooked = False


def install() -> None:
    """Put the hooks in place in this process (a forked child inherits them). Safe to call
    twice; call :func:`.trace.install` first."""
    global _fork_hooked
    hooks_ipc.install()
    hooks_sync.install()
    hooks_net.install()
    _patch_processes()
    _patch_pool()
    if not _fork_hooked:
        os.register_at_fork(after_in_child=hooks_ipc.note_inherited_ends)
        _fork_hooked = True
