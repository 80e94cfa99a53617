"""What the trace proves about a test, in the learner's words: the races it found and the
limits it hit, each as a failure class, a one-line headline and a short detail."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Final, final

from pytest_katas import races, tables, trace, waits
from pytest_katas.channel import RunDir
from pytest_katas.history import Event, History, Site, decode_site
from pytest_katas.messages import N_, _
from pytest_katas.verdict import Kind, Outcome

__all__ = ["Finding", "apply", "audit", "deadlock_finding", "race_finding"]

# What a proven race does not explain: the learner's file does not load, a stub, a guard.
_NOT_A_SYMPTOM: Final = (Kind.TODO, Kind.BROKEN, Kind.CAP)


@final
@dataclasses.dataclass(frozen=True)
class Finding:
    kind: Kind
    message: str
    details: str
    stopped: bool = False  # the plugin stopped the code: what the test saw then is ours


def _lock_namer(history: History) -> Callable[[str], str]:
    def name(lock: str) -> str:
        kind, made = history.locks.get(lock, ("lock", None))
        if lock.startswith("m"):
            return _("the Manager lock")
        if made is not None:
            return _("the {kind} of line {line}").format(kind=kind, line=made.line)
        return _("a {kind}").format(kind=kind)

    return name


def _held(history: History, side: races.Access) -> str:
    if not side.locks:
        return _("no lock")
    return _and(sorted({_lock_namer(history)(lock) for lock in side.locks}))


def _and(names: list[str]) -> str:
    """``a and b and c``, in the learner's language."""
    return _(" and ").join(names)


def _who_held(
    history: History, a: str, first: races.Access, b: str, second: races.Access, span: str
) -> str:
    """Which locks each side held, and when: the clause after "Nothing orders the two:"."""
    for who, side in ((a, first), (b, second)):
        if side.locks or side.read is None or not (side.at_read or side.at_write):
            continue
        name = _lock_namer(history)
        both = side.at_read & side.at_write
        if both:
            held = _and(sorted({name(lock) for lock in both}))
            return _(
                "{who} held {held} at its read and again at its write, but let go in between"
            ).format(who=who, held=held)
        if side.at_read:
            held = _and(sorted({name(lock) for lock in side.at_read}))
            return _("{who} held {held} when it read, but no longer when it wrote").format(
                who=who, held=held
            )
        held = _and(sorted({name(lock) for lock in side.at_write}))
        return _("{who} held {held} when it wrote, but not when it read").format(who=who, held=held)
    if not first.locks and not second.locks:
        return _("neither held a lock {span}").format(span=span)
    mine, theirs = _held(history, first), _held(history, second)
    if mine == theirs:  # the same line made both: a lock made per call or per process
        return _(
            "each held {lock} {span}, but not the same one: each had a lock of its own"
        ).format(lock=mine, span=span)
    return _("{a} held {mine} and {b} held {theirs} {span}").format(
        a=a, mine=mine, b=b, theirs=theirs, span=span
    )


def race_finding(history: History, race: races.Race, relpath: Callable[[str], str]) -> Finding:
    first, second = race.first, race.second
    a = history.actor(*first.write.actor).label
    b = history.actor(*second.write.actor).label
    where = second.write.site
    line = _(" (line {line})").format(line=where.line) if where is not None else ""
    table = tables.interleaving(history, race.events, relpath, _lock_namer(history))
    spans = {"recv": _("around recv()"), "send": _("around send()")}
    span = spans.get(race.kind, _("across the whole update"))
    held = _who_held(history, a, first, b, second, span)
    if race.kind == "recv":
        pipe = history.end_pipe.get(race.location)
        made = (
            _(" (the pipe made at line {line})").format(line=pipe.made_at.line)
            if pipe and pipe.made_at
            else ""
        )
        message = _(
            "{a} and {b} both call recv() on the same pipe end{made} with no lock held by "
            "both: two readers inside recv() at once take parts of each other's messages"
        ).format(a=a, b=b, made=made)
        fix = _(
            "Take the shared Lock around every recv() on that end, so one reader at a time "
            "reads a whole message."
        )
    elif race.kind == "send":
        size = max(e.extra for e in race.events if isinstance(e.extra, int))
        message = _(
            "{a} and {b} both call send() on the same pipe end with no lock held by both, "
            "and a message of {size:,} bytes is more than a pipe writes in one piece "
            "({pipe_buf} bytes): their bytes can interleave"
        ).format(a=a, b=b, size=size, pipe_buf=races.PIPE_BUF)
        fix = _("Take one shared Lock around every send() on that end.")
    else:
        name = tables.location_name(second.write)
        message = _(
            "{a} and {b} both change {name}{line} with no one lock held by both from the "
            "read to the write: the other's write can land in between, and an update is lost"
        ).format(a=a, b=b, name=name, line=line)
        if race.happened:
            message += _(" (it happened in this run)")
        else:
            table = _(
                "In this run the two did not overlap:\n{table}\nbut nothing stops {b}'s "
                "write from landing between {a}'s read and its write, and then one of the "
                "two updates is lost."
            ).format(table=table, a=a, b=b)
        fix = _(
            "Hold ONE lock, shared by every thread and process that changes it, from the read "
            "to the write: a lock made per call or per process, or released in between, "
            "protects nothing."
        )
    details = _(
        "{table}\n\nNothing orders the two: {held}, and neither "
        "waited for the other (no join, event, barrier, queue or pipe message between "
        "them). {fix}"
    ).format(table=table, held=held, fix=fix)
    return Finding(Kind.RACE, message, details)


def audit(rundir: RunDir, files: tuple[str, ...], relpath: Callable[[str], str]) -> Finding | None:
    """The first thing the trace shows to be wrong so far, whatever the outcome was."""
    trace.flush()
    history = History.read(rundir, files)
    stuck = self_deadlock(history, files, relpath)
    if stuck is not None:
        return stuck
    if history.capped:
        who = ", ".join(history.label(pid) for pid in history.capped)
        return Finding(
            Kind.CAP,
            _(
                "{who} made more than {cap:,} observed calls in one test, so its trace "
                "stopped there"
            ).format(who=who, cap=trace.EVENT_CAP),
            _("Is a loop sending, locking or reading far more often than the task needs?"),
        )
    found = races.find_races(history, limit=1)
    if found:
        return race_finding(history, found[0], relpath)
    return short_send(history)


def self_deadlock(
    history: History, files: tuple[str, ...], relpath: Callable[[str], str]
) -> Finding | None:
    """A thread that asked again for a Lock it held by a `with`, with no timeout: it would
    have waited for itself for ever, so the plugin stopped it there (``relock``)."""
    event = next((e for e in history.events if e.op == "relock"), None)
    if event is None:
        return None
    holder, took, asker = event.extra
    first = _at(decode_site(took, files), relpath)
    again = _at(event.site, relpath)
    inside = _(", in {function}()").format(function=asker) if asker != holder else ""
    return Finding(
        Kind.HANG,
        _(
            "{function}() re-acquires a Lock this thread already holds: it took it at "
            "{first} and asks for it again at {again}{inside}, so it waits for itself for ever"
        ).format(function=holder, first=first, again=again, inside=inside),
        _(
            "A Lock is not reentrant: even the thread that holds it must wait until it is "
            "released, and here that thread is the one waiting. While you hold the lock, use "
            "only what does not take it again, or make it an RLock, which its holder may take "
            "again. The plugin stopped the thread at once instead of letting the test run to "
            "its deadline."
        ),
        stopped=True,
    )


def _at(site: Site | None, relpath: Callable[[str], str]) -> str:
    if site is None:
        return _("a line outside your files")
    source = site.source().split("  #", 1)[0].strip()
    return f"{site.where(relpath)} (`{source}`)" if source else site.where(relpath)


def short_send(history: History) -> Finding | None:
    """A socket send() that sent only part of its data, and nothing sent the rest."""
    pending: dict[tuple[int, int, str], Event] = {}
    for event in history.events:
        if event.op not in ("ssend", "srecv", "sendall", "shutdown", "sclose"):
            continue
        key = (event.pid, event.thread, event.obj)
        if key in pending and event.op != "ssend":
            break
        pending.pop(key, None)
        if event.op == "ssend" and event.extra[1] < event.extra[0]:
            pending[key] = event
    if not pending:
        return None
    event = min(pending.values(), key=lambda e: e.order)
    asked, sent = event.extra
    who = history.actor(*event.actor).label
    at = _(" at line {line}").format(line=event.site.line) if event.site is not None else ""
    source = f" (`{event.site.source()}`)" if event.site is not None else ""
    return Finding(
        Kind.LOST,
        _(
            "{who} treated a short send() as done: send(){at}{source} sent {sent:,} of "
            "{asked:,} bytes, and the other {rest:,} were never sent"
        ).format(who=who, at=at, source=source, sent=sent, asked=asked, rest=asked - sent),
        _(
            "send() may send only part of what it is given, and returns how much it sent (the "
            "tests make that happen on purpose, as a busy network does). Loop until every byte "
            "is sent, or call sendall(), which does that loop for you."
        ),
    )


def apply(outcome: Outcome, finding: Finding) -> None:
    """What the trace proves beats what the outcome suggests: a race behind a wrong count,
    a crash or a hang is its cause, and a race behind a right answer is still a bug."""
    if outcome.status == "passed":
        outcome.status = "failed"
    elif outcome.kind in _NOT_A_SYMPTOM:
        return
    elif finding.kind == Kind.CAP:  # the trace stopped short: the test's own verdict stands
        also = _("Also: {message}").format(message=finding.message)
        outcome.details = f"{outcome.details}\n\n{also}".strip("\n")
        return
    elif not finding.stopped:
        # The symptom only: the test's own guess at the cause is superseded by the finding.
        symptom = outcome.message.split(": ", 1)[0]
        seen = f"{outcome.kind.name}: {symptom}" if outcome.kind else symptom
        saw = _("What the test saw: {what}").format(what=seen)
        details = f"{finding.details}\n\n{saw}"
        finding = dataclasses.replace(finding, details=details)
    outcome.kind, outcome.message, outcome.details = finding.kind, finding.message, finding.details
    outcome.seed = None
    outcome.traced = True


def _lock_holder(history: History, lock: str) -> tuple[tuple[int, int], Site | None] | None:
    """Who holds ``lock`` now, and where they took it, from its acquires and releases."""
    held: dict[tuple[int, int], list[Site | None]] = {}
    for event in history.events:
        if event.obj != lock:
            continue
        if event.op == "acq":
            held.setdefault(event.actor, []).append(event.site)
        elif event.op == "rel" and held.get(event.actor):
            held[event.actor].pop()
    for actor, sites in held.items():
        if sites:
            return actor, sites[0]
    return None


def _lock_cycle(history: History, dead: waits.Deadlock) -> str | None:
    """``A holds ... and waits for ..., which B holds ...``: a cycle of lock waits."""
    waiting = {
        (w.pid, history.thread_of(w.pid, w.ident)): w for w in dead.waiters if w.op == "acquire"
    }
    holds: dict[tuple[int, int], tuple[tuple[int, int], Site | None]] = {}
    for actor, waiter in waiting.items():
        holder = _lock_holder(history, waiter.obj)
        if holder is not None:
            holds[actor] = holder
    for start in holds:
        path, actor = [start], holds[start][0]
        while actor in holds and actor not in path:
            path.append(actor)
            actor = holds[actor][0]
        if actor != start or len(path) < 2:
            continue
        parts = []
        for me, other in zip(path, path[1:] + path[:1], strict=True):
            wait = waiting[me].site
            took = holds[other][1]
            parts.append(
                _("{me} waits at {where} for the lock {other} took at {when}").format(
                    me=history.actor(*me).label,
                    where=_("line {line}").format(line=wait.line) if wait else _("a lock"),
                    other=history.actor(*other).label,
                    when=_("line {line}").format(line=took.line) if took else _("some point"),
                )
            )
        return _(
            "{cycle}: each holds what the other needs, a deadlock. Take locks in one fixed "
            "order everywhere, with `with`"
        ).format(cycle=_("; ").join(parts))
    return None


# How a process came to hold a pipe end: (with no line known, with its line).
_HOW: Final = {
    "made": (N_("made it"), N_("made it at line {line}")),
    "inherited": (N_("inherited it"), N_("inherited it at line {line}")),
    "received": (N_("received it"), N_("received it at line {line}")),
}


def _copy_of(history: History, end: str, pid: int) -> str:
    """How process ``pid`` came to hold ``end``: made it, inherited it, was passed it."""
    for copy in history.copies.get(end, []):
        if copy.pid != pid:
            continue
        proc = history.processes.get(pid)
        if copy.how == "inherited" and proc is not None and proc.started_at is not None:
            started = _("inherited it when it was started at line {line}")
            return started.format(line=proc.started_at.line)
        if copy.how in _HOW and copy.at is not None:
            return _(_HOW[copy.how][1]).format(line=copy.at.line)
        if copy.how in _HOW:
            return _(_HOW[copy.how][0])
        line = f" at line {copy.at.line}" if copy.at is not None else ""
        return f"{copy.how} it{line}"
    return _("holds it")


def _write_end(history: History, end: str) -> str:
    if end.startswith("p") and end.endswith("r"):
        return end[:-1] + "w"
    pipe = history.end_pipe.get(end)
    return pipe.peer(end) if pipe is not None else end


# What a pickled copy of a plain value looks like in the trace (wrapping.small); anything else
# shown as ``<type>`` is an object of its own, the usual shape of a sentinel.
_DATA_TYPES: Final = frozenset(
    {"str", "bytes", "bytearray", "list", "tuple", "dict", "set", "frozenset", "complex"}
)


def _missed_sentinels(history: History, dead: waits.Deadlock) -> str:
    """What the trace shows when readers kept reading past objects that look like sentinels:
    each arrives as a pickled copy, so a test with ``is`` never matches it. Every reader of the
    pipe end waited on counts, not only the one that waits in recv(): the others may wait for a
    lock it holds. Said as what was seen, since the objects might be items after all."""
    for waiter in dead.waiters:
        if waiter.op != "recv":
            continue
        got = [
            e
            for e in history.events
            if e.op == "got" and e.obj == waiter.obj
            if isinstance(e.extra, str) and e.extra.startswith("<") and e.extra.endswith(">")
            if e.extra[1:-1] not in _DATA_TYPES
        ]
        if got:
            readers = dict.fromkeys(history.actor(*e.actor).label for e in got)
            return _(
                ". {who} had already received {count} object(s) of type {kind} on that pipe "
                "(the last at line {line}) and read on: if they were meant as sentinels, note that "
                "every item arrives as a pickled copy, so `item is SENTINEL` is never true; "
                "check with isinstance() instead"
            ).format(
                who=_(", ").join(readers),
                count=len(got),
                kind=got[-1].extra[1:-1],
                line=got[-1].site.line if got[-1].site is not None else "?",
            )
    return ""


def deadlock_finding(
    history: History, dead: waits.Deadlock, relpath: Callable[[str], str]
) -> Finding:
    """The wait-for picture of a test that can no longer move, and its likeliest cause."""
    label = {w: history.actor(w.pid, history.thread_of(w.pid, w.ident)).label for w in dead.waiters}
    lines: list[str] = []
    causes: list[str] = []
    for waiter in dead.waiters:
        wait = waits.describe_wait(waiter, relpath)
        reason = ""
        if waiter.op in ("recv", "poll") and waiter.obj in dead.holders:
            end = _write_end(history, waiter.obj)
            holders = dead.holders[waiter.obj]
            names = [
                (_("{who} itself ({how})") if pid == waiter.pid else _("{who} ({how})")).format(
                    who=history.label(pid), how=_copy_of(history, end, pid)
                )
                for pid in holders
            ]
            reason = _("the write end is still open in {holders}").format(
                holders=_(", ").join(names)
            )
            others = [n for pid, n in zip(holders, names, strict=True) if pid != waiter.pid]
            also = (
                _(", and in {others}, which wait too").format(others=_(", ").join(others))
                if others
                else ""
            )
            if waiter.pid in holders:
                causes.insert(
                    0,
                    _(
                        "{who} waits forever in {wait}: the pipe's write end is still open in "
                        "{who} itself ({how}, never closed){also}, so end of file never comes "
                        "and nobody is left to send"
                    ).format(
                        who=label[waiter],
                        wait=wait,
                        how=_copy_of(history, end, waiter.pid),
                        also=also,
                    ),
                )
            elif holders:
                causes.append(
                    _(
                        "{who} waits forever in {wait}: nobody left can send on that pipe, and "
                        "its write end stays open in {holders}, which wait too"
                    ).format(who=label[waiter], wait=wait, holders=_(", ").join(names))
                )
        elif waiter.op == "acquire":
            holder = _lock_holder(history, waiter.obj)
            if holder is not None:
                (pid, tid), took = holder
                who = history.actor(pid, tid).label
                at = _(" (taken at line {line})").format(line=took.line) if took is not None else ""
                reason = _("the lock is held by {who}{at}").format(who=who, at=at)
                mine = (waiter.pid, history.thread_of(waiter.pid, waiter.ident)) == (pid, tid)
                if mine and history.locks.get(waiter.obj, ("",))[0] != "RLock":
                    causes.insert(
                        0,
                        _(
                            "{who} waits in {wait} for a Lock it already holds itself{at}: a "
                            "Lock is not reentrant, so it waits for itself for ever"
                        ).format(who=label[waiter], wait=wait, at=at),
                    )
                if not any(
                    w.pid == pid and history.thread_of(w.pid, w.ident) == tid for w in dead.waiters
                ):
                    reason += _(", which has ended without releasing it")
        waits_in = _("{who} waits in {wait}").format(who=label[waiter], wait=wait)
        lines.append(f"  {waits_in}" + (_(": {reason}").format(reason=reason) if reason else ""))
    cycle = _lock_cycle(history, dead)
    if cycle and not causes:
        causes.append(cycle)
    causes = [cause + _missed_sentinels(history, dead) for cause in causes[:1]] + causes[1:]
    first = dead.waiters[0]
    headline = (
        causes[0]
        if causes
        else _("every process of the test waits and none can go on: {who} waits in {wait}").format(
            who=label[first], wait=waits.describe_wait(first, relpath)
        )
    )
    details = (
        _("Who waits for what ({seconds:g} s after the last one stopped):").format(
            seconds=dead.quiet
        )
        + "\n"
        + "\n".join(lines)
        + "\n\n"
        + _(
            "Nothing left running can wake any of them, so the test was stopped at once "
            "instead of at its deadline."
        )
    )
    return Finding(Kind.HANG, headline, details)
