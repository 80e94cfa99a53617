"""What the trace proves about a test, in the learner's words: the races it found and the
limits it hit, each as a failure class, a one-line headline and a short detail."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Final, final

from pytest_katas import races, tables, trace
from pytest_katas.channel import RunDir
from pytest_katas.history import History
from pytest_katas.verdict import Kind, Outcome

__all__ = ["Finding", "apply", "audit", "race_finding"]

# What a proven race does not explain: the learner's file does not load, a stub, a guard.
_NOT_A_SYMPTOM: Final = (Kind.TODO, Kind.BROKEN, Kind.CAP)


@final
@dataclasses.dataclass(frozen=True)
class Finding:
    kind: Kind
    message: str
    details: str


def _lock_namer(history: History) -> Callable[[str], str]:
    def name(lock: str) -> str:
        kind, made = history.locks.get(lock, ("lock", None))
        if lock.startswith("m"):
            return "the Manager lock"
        return f"the {kind} of line {made.line}" if made is not None else f"a {kind}"

    return name


def _held(history: History, side: races.Access) -> str:
    if not side.locks:
        return "no lock"
    return " and ".join(_lock_namer(history)(lock) for lock in sorted(side.locks))


def race_finding(history: History, race: races.Race, relpath: Callable[[str], str]) -> Finding:
    first, second = race.first, race.second
    a = history.actor(*first.write.actor).label
    b = history.actor(*second.write.actor).label
    where = second.write.site
    line = f" (line {where.line})" if where is not None else ""
    table = tables.interleaving(history, race.events, relpath, _lock_namer(history))
    held = (
        f"{a} held {_held(history, first)} and {b} held {_held(history, second)}"
        if first.locks or second.locks
        else "neither held a lock"
    )
    span = (
        "around recv()"
        if race.kind == "recv"
        else "around send()"
        if race.kind == "send"
        else ("across the whole update")
    )
    if race.kind == "recv":
        pipe = history.end_pipe.get(race.location)
        made = f" (the pipe made at line {pipe.made_at.line})" if pipe and pipe.made_at else ""
        message = (
            f"{a} and {b} both call recv() on the same pipe end{made} with no lock held by "
            "both: two readers inside recv() at once take parts of each other's messages"
        )
        fix = "Take the shared Lock around every recv() on that end, so one reader at a time "
        fix += "reads a whole message."
    elif race.kind == "send":
        size = max(e.extra for e in race.events if isinstance(e.extra, int))
        message = (
            f"{a} and {b} both call send() on the same pipe end with no lock held by both, "
            f"and a message of {size:,} bytes is more than a pipe writes in one piece "
            f"({races.PIPE_BUF} bytes): their bytes can interleave"
        )
        fix = "Take one shared Lock around every send() on that end."
    else:
        name = tables.location_name(second.write)
        message = (
            f"{a} and {b} both change {name}{line} with no lock held from the read to the "
            "write: the other's write can land in between, and an update is lost"
        )
        if race.happened:
            message += " (it happened in this run)"
        fix = (
            "Hold ONE lock, shared by every thread and process that changes it, from the read "
            "to the write: a lock made per call or per process, or released in between, "
            "protects nothing."
        )
    details = (
        f"{table}\n\nNothing orders the two: {held} {span}, and neither "
        f"waited for the other (no join, event, barrier, queue or pipe message between "
        f"them). {fix}"
    )
    return Finding(Kind.RACE, message, details)


def audit(rundir: RunDir, files: tuple[str, ...], relpath: Callable[[str], str]) -> Finding | None:
    """The first thing the trace shows to be wrong so far, whatever the outcome was."""
    trace.flush()
    history = History.read(rundir, files)
    if history.capped:
        who = ", ".join(history.label(pid) for pid in history.capped)
        return Finding(
            Kind.CAP,
            f"{who} made more than {trace.EVENT_CAP:,} observed calls in one test, so its "
            "trace stopped there",
            "Is a loop sending, locking or reading far more often than the task needs?",
        )
    found = races.find_races(history, limit=1)
    return race_finding(history, found[0], relpath) if found else None


def apply(outcome: Outcome, finding: Finding) -> None:
    """What the trace proves beats what the outcome suggests: a race behind a wrong count,
    a crash or a hang is its cause, and a race behind a right answer is still a bug."""
    if outcome.status == "passed":
        outcome.status = "failed"
    elif outcome.kind in _NOT_A_SYMPTOM:
        return
    else:
        seen = f"{outcome.kind.name}: {outcome.message}" if outcome.kind else outcome.message
        details = f"{finding.details}\n\nWhat the test saw: {seen}"
        finding = dataclasses.replace(finding, details=details)
    outcome.kind, outcome.message, outcome.details = finding.kind, finding.message, finding.details
    outcome.seed = None
    outcome.traced = True
