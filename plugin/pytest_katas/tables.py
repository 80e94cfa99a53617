"""Interleaving tables: the few events that matter, one column per process or thread, in
the order they happened (in the spirit of Lincheck's traces)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Final

from pytest_katas.history import Event, History

__all__ = ["describe", "interleaving", "location_name", "recent"]

_WIDTH: Final = 40
_COLUMNS: Final = 4
_ROWS: Final = 16

_ATTR: Final = re.compile(r"^(?P<cls>[\w.<>]+)@[0-9a-f]+(?:g\d+)?\.(?P<attr>\w+)$")
_KEY: Final = re.compile(r"^m[0-9a-f]+@[0-9a-f]+\[(?P<key>.*)\]$")
_REF: Final = re.compile(r"^m[0-9a-f]+@[0-9a-f]+$")


def location_name(event: Event) -> str:
    """What an access touched, as the learner would write it."""
    match = _ATTR.match(event.obj)
    if match:
        return f"{match['cls'].rsplit('.', 1)[-1]}.{match['attr']}"
    match = _KEY.match(event.obj)
    if match:
        typeid = event.extra[0] if isinstance(event.extra, list) and event.extra else "proxy"
        key = match["key"]
        return f"the Manager {typeid}'s value" if key == "'value'" else f"{typeid}[{key}]"
    return event.obj


def _value(event: Event) -> Any:
    extra = event.extra
    return extra[2] if isinstance(extra, list) and len(extra) == 3 else extra


def describe(event: Event, lock_name: Callable[[str], str] = str) -> str:
    """One event in a few words: ``read Counter._value = 41``."""
    op = event.op
    if op in ("read", "write"):
        return f"{op:<5} {location_name(event)} = {_value(event)!r}"
    if op == "recv":
        size, _, error = event.extra
        if error == "EOF":
            return "recv() -> EOFError"
        return f"recv() -> {size:,} bytes" if not error else f"recv() -> {error}"
    if op == "reading":
        return "recv() begins"
    if op == "send":
        return f"send() {event.extra} bytes"
    if op == "got":
        return f"recv() -> {event.extra!r}"
    if op == "pend":
        return "ended"
    if op in ("put", "get"):
        return f"queue {op}()"
    if op == "sendall":
        return f"sendall() {event.extra} bytes"
    if op == "sclose":
        return "close() the socket"
    if op == "garbled":
        return f"recv() -> {event.extra}"
    if op in ("acq", "rel"):
        return f"{'acquire' if op == 'acq' else 'release'} {lock_name(event.obj)}"
    if op == "close":
        return "close()"
    if op == "ssend":
        asked, sent = event.extra
        return f"send() {sent} of {asked} bytes"
    if op == "srecv":
        return f"recv() -> {event.extra[1]} bytes"
    return op


def interleaving(
    history: History,
    events: Sequence[Event],
    relpath: Callable[[str], str],
    lock_name: Callable[[str], str] = str,
) -> str:
    """A table of ``events``: a column per thread, a row per event, lines at the end."""
    actors: list[tuple[int, int]] = []
    for event in events:
        if event.actor not in actors:
            actors.append(event.actor)
    actors = actors[:_COLUMNS]
    shown = [e for e in events if e.actor in actors][:_ROWS]
    cells = []
    for event in shown:
        text = describe(event, lock_name)
        if event.site is not None:
            text += f"  (line {event.site.line})"
        cells.append((actors.index(event.actor), text))
    width = min(max([len(t) for _, t in cells] + [12]), _WIDTH)
    heads = [history.actor(*actor).label for actor in actors]
    width = max(width, *(len(h) for h in heads))
    lines = ["  " + " | ".join(f"{h:<{width}}" for h in heads).rstrip()]
    lines.append("  " + "-+-".join("-" * width for _ in heads))
    for column, text in cells:
        row = [""] * len(actors)
        row[column] = text if len(text) <= width else text[: width - 3] + "..."
        lines.append("  " + " | ".join(f"{c:<{width}}" for c in row).rstrip())
    files = {e.site.file for e in shown if e.site is not None}
    if len(files) == 1:
        lines.append(f"  (lines of {relpath(next(iter(files)))})")
    return "\n".join(lines)


# What moved items, and what ended: the events a LOST or HANG verdict is read from.
_FLOW: Final = frozenset(
    {"got", "send", "close", "garbled", "put", "get", "ssend", "srecv", "sendall", "sclose"}
)


def recent(history: History, relpath: Callable[[str], str], each: int = 3) -> str | None:
    """How each thread's share of the work ended: its last few items moved, pipes closed,
    and its end, all threads together in the order it happened."""
    last: dict[tuple[int, int], list[Event]] = {}
    for event in history.events:
        learner = event.pid in history.processes and history.processes[event.pid].learner
        if (event.op in _FLOW and event.site is not None) or (event.op == "pend" and learner):
            last.setdefault(event.actor, []).append(event)
    shown = sorted((e for events in last.values() for e in events[-each:]), key=lambda e: e.order)
    if all(e.op == "pend" for e in shown):
        return None  # nothing moved: the ends alone tell nothing
    return interleaving(history, shown, relpath)


# -- the controlled scheduler's own record of a run ----------------------------------------

_STEP_VERBS: Final = {
    "acq": "acquire",
    "rel": "release",
    "start": "start",
    "join": "join",
    "wait": "wait on",
    "set": "set",
    "notify": "notify",
    "sleep": "sleep",
    "put": "put on",
    "get": "get from",
    "is_alive": "is_alive() of",
}


def _step_text(op: str, obj: str, value: Any, labels: Sequence[str]) -> str:
    match = _ATTR.match(obj)
    if match and op in ("read", "write"):
        name = f"{match['cls'].rsplit('.', 1)[-1]}.{match['attr']}"
        return f"{op:<5} {name} {'->' if op == 'read' else '='} {value!r}"
    if _REF.match(obj):  # a call on a Manager proxy as a whole: dict(shared), keys()
        return f"{op}() on the Manager's object"
    match = _KEY.match(obj)
    if match:
        shown = f" {'->' if op == 'read' else '='} {value!r}" if op in ("read", "write") else ""
        return f"{op:<5} [{match['key']}]{shown}"
    if op in ("acq", "rel"):
        return f"{_STEP_VERBS[op]} the lock"
    verb = _STEP_VERBS.get(op, op)
    if obj.startswith("#") and obj[1:].isdigit():
        return f"{verb} {labels[int(obj[1:])]}"
    if op in ("wait", "set", "notify", "put", "get", "acquire", "release"):
        return f"{verb} the {obj}"
    return f"{verb} {obj}".rstrip()


def steps_table(
    steps: Sequence[Any],
    labels: Sequence[str],
    line_of: Callable[[int], tuple[str, int] | None],
) -> str:
    """The steps of a controlled run that ran learner code, one column per task, in the
    exact order they ran; ``line_of(site)`` gives (file, line) of a step's learner line."""
    rows = [s for s in steps if s.site >= 0]
    if not rows:
        rows = list(steps)
    if len(rows) > _ROWS:
        rows = rows[_window(rows) :][:_ROWS]
    tasks: list[int] = []
    for step in rows:
        if step.task not in tasks:
            tasks.append(step.task)
    tasks = sorted(tasks)[:_COLUMNS]
    cells, files = [], set()
    for step in rows:
        if step.task not in tasks:
            continue
        text = _step_text(step.op, step.obj, step.value, labels)
        where = line_of(step.site) if step.site >= 0 else None
        if where is not None:
            files.add(where[0])
            text += f"  (line {where[1]})"
        cells.append((tasks.index(step.task), text))
    heads = [labels[t] for t in tasks]
    width = min(max([len(t) for _, t in cells] + [len(h) for h in heads] + [12]), _WIDTH)
    lines = ["  " + " | ".join(f"{h:<{width}}" for h in heads).rstrip()]
    lines.append("  " + "-+-".join("-" * width for _ in heads))
    for column, text in cells:
        row = [""] * len(tasks)
        row[column] = text if len(text) <= width else text[: width - 3] + "..."
        lines.append("  " + " | ".join(f"{c:<{width}}" for c in row).rstrip())
    if len(files) == 1:
        lines.append(f"  (lines of {next(iter(files))})")
    return "\n".join(lines)


def _window(rows: Sequence[Any]) -> int:
    """Where to start showing a long run: a few steps before the first preemption (a task
    stopped while it could have gone on), else before the first switch that left a task in
    the middle of its work (it runs again later)."""
    for i, row in enumerate(rows):
        if getattr(row, "preempted", False):
            return max(0, i - 3)
    for i in range(1, len(rows)):
        before, now = rows[i - 1].task, rows[i].task
        if before != now and any(r.task == before for r in rows[i:]):
            return max(0, i - 4)
    return max(0, len(rows) - _ROWS)
