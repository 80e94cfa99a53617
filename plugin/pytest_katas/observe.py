"""What a kata test can ask about what the learner's code did: the processes it started,
and the whole trace of its pipes, locks and processes."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, final

from pytest_katas import channel
from pytest_katas.channel import LEARNER_ROLES, RunDir

if TYPE_CHECKING:
    from pytest_katas.history import EndCopy, Event, History, PipeInfo, ProcessView, Site

__all__ = ["ChildProcess", "Observed", "children", "observed"]


@final
@dataclasses.dataclass(frozen=True)
class ChildProcess:
    pid: int
    name: str
    target: str | None
    role: str  # "worker" (a Process the learner started), "pool" or "manager"


def children(role: str | None = None) -> list[ChildProcess]:
    """Every multiprocessing child started so far in this test, in start order.

    By default only the processes that run learner code: the learner's own processes and
    a Pool's workers. A Manager's server process is infrastructure: ask for it with
    ``role="manager"``; ``role="any"`` gives every child.
    """
    rundir = RunDir.current()
    if rundir is None:
        raise RuntimeError("children() works only inside a kata test (one using `kata`)")
    wanted = LEARNER_ROLES if role is None else None if role == "any" else (role,)
    found = [
        (info.started, ChildProcess(pid, info.name, info.target, info.role))
        for pid, info in rundir.processes().items()
        if info.role != "test" and (wanted is None or info.role in wanted)
    ]
    return [child for _, child in sorted(found, key=lambda pair: pair[0])]


@final
class Observed:
    """The trace of this test so far, for checking how the learner's code did its work.

    ``history`` holds everything (see :class:`pytest_katas.history.History`); the methods
    answer the questions kata tests ask most, in the learner's terms.
    """

    def __init__(self, history: History, relpath: Any) -> None:
        self.history = history
        self.relpath = relpath

    def test_process(self) -> ProcessView:
        found = self.history.test_process()
        assert found is not None, "the test process is always traced"
        return found

    def children(self) -> list[ProcessView]:
        """The processes that ran learner code (no Manager server), in start order."""
        return sorted(self.history.learner_processes(), key=lambda p: p.pid)

    def pipes(self) -> list[PipeInfo]:
        """Every pipe the learner's code made, in the order they were made."""
        return list(self.history.pipes.values())

    def events(self, op: str, pid: int | None = None) -> list[Event]:
        """The events ``op`` (``send``, ``recv``, ``close``...) of one process, or of all."""
        return self.history.of((op,), pid)

    def received(self, pid: int) -> list[Event]:
        """Receives on learner pipes by ``pid`` that got a message (not EOF, not an error)."""
        return [e for e in self.history.of(("recv",), pid) if not e.extra[2]]

    def line(self, site: Site | None) -> str:
        return f"line {site.line}" if site is not None else "a line outside your file"

    def name(self, pid: int) -> str:
        return self.history.label(pid)

    def story(self, copy: EndCopy) -> str:
        """``test process (made it at line 29, never closed)``."""
        proc = self.history.processes.get(copy.pid)
        how = f"{copy.how} it"
        if copy.how == "inherited" and proc is not None and proc.started_at is not None:
            how += f" when it was started at line {proc.started_at.line}"
        elif copy.at is not None:
            how += f" at line {copy.at.line}"
        closed = f"closed it at line {copy.closed_at.line}" if copy.closed_at else "never closed it"
        return f"{self.name(copy.pid)} ({how}, {closed})"

    def open_write_copies(self, read_end: str, at: int) -> list[EndCopy]:
        """Copies of the write end that feeds ``read_end`` still open at time ``at``."""
        pipe = self.history.end_pipe.get(read_end)
        if pipe is None:
            return []
        return self.history.open_copies(pipe.peer(read_end), at)


def observed(kata: Any) -> Observed:
    """What the learner's code has done so far in this test (pass the ``kata`` fixture)."""
    from pytest_katas import trace
    from pytest_katas.history import History

    rundir = RunDir.current()
    if rundir is None:
        raise RuntimeError("observed() works only inside a kata test (one using `kata`)")
    if not rundir.read_state().trace:
        import pytest

        pytest.skip("this check reads the trace, which --kata-trace=off turned off")
    trace.flush()
    from pytest_katas import remote

    learner = remote.active()
    if learner is not None:  # the learner's threads run in its own process
        learner.flush()
    return Observed(History.read(rundir, channel.learner_files()), kata.kata.relpath)
