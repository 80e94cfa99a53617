"""Races found in the trace, whatever the schedule did: lost updates that were possible, not
only those that happened.

Python runs one bytecode at a time, so a lone read or a lone write of shared data is safe.
What breaks is a read-modify-write (``self.n += 1``, ``d["count"] -= 1``, one ``recv()`` of a
pipe that several processes read): another thread's write can land between its read and
its write. Two such accesses race when both hold:

- neither happens before the other: no start, join, event, barrier, queue or pipe message
  orders them (vector clocks over the whole trace, every process and thread);
- no single lock is held by both, and held by the read-modify-write from its read to its
  write (the same acquisition: a lock released in between protects nothing).

Locks are deliberately not counted as ordering: that two threads happened to take a lock
one after the other in this run does not order the accesses they make outside it.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from typing import Final, final

from pytest_katas.history import Event, History

__all__ = ["Access", "Race", "find_races"]

PIPE_BUF: Final = 4096
_HEADER: Final = 4  # a Connection's length prefix


@final
@dataclasses.dataclass(frozen=True)
class Access:
    """One side of a race: a write, or a read-modify-write from ``read`` to ``write``."""

    write: Event
    read: Event | None
    locks: frozenset[str]  # held across the whole access
    at_read: frozenset[str] = frozenset()  # held when it read
    at_write: frozenset[str] = frozenset()  # held when it wrote


@final
@dataclasses.dataclass(frozen=True)
class Race:
    kind: str  # "data" (attribute or proxy key), "recv" (readers of one end), "send"
    location: str
    first: Access  # the earlier to finish
    second: Access
    happened: bool  # the second's write really landed inside the first's read and write

    @property
    def events(self) -> list[Event]:
        found = {
            e.order: e
            for side in (self.first, self.second)
            for e in (side.read, side.write)
            if e is not None
        }
        return [found[i] for i in sorted(found)]


@dataclasses.dataclass
class _Write:
    clock: int
    held: frozenset[str]
    access: Access
    big: bool = False


@dataclasses.dataclass
class _Read:
    event: Event
    vc: dict[tuple[int, int], int]
    acquisitions: frozenset[tuple[str, int]]


class _Clocks:
    """Vector clocks, one per thread, advanced in the order the events happened."""

    def __init__(self, history: History) -> None:
        self.history = history
        self.vc: dict[tuple[int, int], dict[tuple[int, int], int]] = {}
        self.started: dict[str, dict[tuple[int, int], int]] = {}
        self.ended: dict[str, dict[tuple[int, int], int]] = {}
        self.signals: dict[str, dict[tuple[int, int], int]] = {}
        self.fifos: dict[str, deque[dict[tuple[int, int], int]]] = {}

    def of(self, actor: tuple[int, int]) -> dict[tuple[int, int], int]:
        clock = self.vc.get(actor)
        if clock is None:
            clock = self.vc[actor] = {}
        return clock

    @staticmethod
    def join(into: dict[tuple[int, int], int], other: dict[tuple[int, int], int] | None) -> None:
        if other:
            for key, value in other.items():
                if into.get(key, 0) < value:
                    into[key] = value

    def channel(self, end: str, sending: bool) -> str:
        """Where a message sent on ``end`` waits, and where a receive on ``end`` looks."""
        if end.startswith("p"):
            return end[:-1]  # p<inode>r and p<inode>w are one pipe
        pipe = self.history.end_pipe.get(end)
        return f"to:{pipe.peer(end) if sending and pipe else end}"

    def step(self, event: Event) -> dict[tuple[int, int], int]:
        actor = event.actor
        clock = self.of(actor)
        clock[actor] = clock.get(actor, 0) + 1
        op, obj = event.op, event.obj
        if op in ("pstart", "tstart"):
            self.started[obj] = dict(clock)
        elif op in ("pbegin", "tbegin"):
            self.join(clock, self.started.get(obj))
        elif op in ("pend", "tend"):
            self.ended[obj] = dict(clock)
        elif op in ("pjoin", "tjoin"):
            self.join(clock, self.ended.get(obj))
        elif op == "hb+":
            self.join(self.signals.setdefault(obj, {}), clock)
        elif op == "hb-":
            self.join(clock, self.signals.get(obj))
        elif op in ("send", "put"):
            key = self.channel(obj, True) if op == "send" else obj
            self.fifos.setdefault(key, deque()).append(dict(clock))
        elif op in ("recv", "get") and not (op == "recv" and event.extra[2]):
            key = self.channel(obj, False) if op == "recv" else obj
            waiting = self.fifos.get(key)
            if waiting:
                self.join(clock, waiting.popleft())
        return clock


def _big(event: Event) -> bool:
    return event.op == "send" and isinstance(event.extra, int) and event.extra + _HEADER > PIPE_BUF


def _location(event: Event) -> tuple[str, str] | None:
    """(kind, location) for an access that takes part in races, else None."""
    if event.site is None:
        return None  # the stdlib's or the test's own doing
    if event.op in ("read", "write"):
        return "data", event.obj
    if event.op == "reading":  # a recv() begins: two readers inside recv() at once collide
        return "recv", event.obj
    if event.op == "send":
        return "send", event.obj
    return None


def find_races(history: History, limit: int = 3) -> list[Race]:
    """At most ``limit`` races, one per location, in the order they were first possible."""
    clocks = _Clocks(history)
    held: dict[tuple[int, int], dict[str, list[int]]] = {}  # actor -> lock -> acquisitions
    reads: dict[tuple[tuple[int, int], str], _Read] = {}
    writes: dict[str, dict[tuple[int, int], _Write]] = {}
    rmws: dict[str, dict[tuple[int, int], tuple[_Read, _Write]]] = {}
    found: dict[str, Race] = {}
    for event in history.events:
        clock = clocks.step(event)
        actor = event.actor
        mine = held.setdefault(actor, {})
        if event.op == "acq":
            mine.setdefault(event.obj, []).append(event.order)
            continue
        if event.op == "rel":
            taken = mine.get(event.obj)
            if taken:
                taken.pop()
                if not taken:
                    del mine[event.obj]
            continue
        where = _location(event)
        if where is None:
            continue
        kind, location = where
        acquisitions = frozenset((lock, stack[0]) for lock, stack in mine.items() if stack)
        if event.op == "read":
            reads[(actor, location)] = _Read(event, dict(clock), acquisitions)
            continue
        locks = frozenset(lock for lock, _ in acquisitions)
        read = reads.pop((actor, location), None) if kind == "data" else None
        if kind != "data":  # one recv() (or send()) reads and writes the stream at once
            read = _Read(event, dict(clock), acquisitions)
        across = (
            frozenset(lock for lock, first in read.acquisitions & acquisitions)
            if read is not None
            else locks
        )
        at_read = frozenset(lock for lock, _ in read.acquisitions) if read is not None else locks
        access = Access(
            event,
            read.event if read is not None and kind == "data" else None,
            across,
            at_read,
            locks,
        )
        write = _Write(clock[actor], locks, access, _big(event))
        known = found.get(location)
        if known is None or not known.happened:  # a lost update seen beats a possible one
            race = _check(kind, location, actor, clock, read, write, writes, rmws)
            if race is not None and (known is None or race.happened):
                found[location] = race
                if len(found) >= limit and all(r.happened for r in found.values()):
                    break
        writes.setdefault(location, {})[actor] = write
        if read is not None:
            rmws.setdefault(location, {})[actor] = (read, write)
    return sorted(found.values(), key=lambda race: race.second.write.order)


def _check(
    kind: str,
    location: str,
    actor: tuple[int, int],
    clock: dict[tuple[int, int], int],
    read: _Read | None,
    write: _Write,
    writes: dict[str, dict[tuple[int, int], _Write]],
    rmws: dict[str, dict[tuple[int, int], tuple[_Read, _Write]]],
) -> Race | None:
    """A race of this access with another thread's, preferring a lost update that really
    happened over one that only could have."""
    possible = None
    # This read-modify-write against each other thread's last write here: did (or could)
    # that write land between our read and our write?
    if read is not None:
        for other, their in writes.get(location, {}).items():
            if other == actor or their.clock <= read.vc.get(other, 0):
                continue
            if kind == "send" and not (write.big or their.big):
                continue
            if not write.access.locks & their.held:
                happened = read.event.ts < their.access.write.ts < write.access.write.ts
                race = Race(kind, location, their.access, write.access, happened)
                if happened:
                    return race
                possible = possible or race
    # This write against each other thread's last read-modify-write here: could it have
    # landed between that one's read and its write?
    for other, (_, their_write) in rmws.get(location, {}).items():
        if other == actor or their_write.clock <= clock.get(other, 0):
            continue
        if kind == "send" and not (write.big or their_write.big):
            continue
        if not their_write.access.locks & write.held:
            possible = possible or Race(kind, location, their_write.access, write.access, False)
    return possible
