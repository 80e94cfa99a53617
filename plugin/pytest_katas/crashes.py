"""How the test's children ended, in the learner's words: which one raised or died, where in
the learner's code, and what the trace says it means."""

from __future__ import annotations

import dataclasses
import linecache
import os
import re
import sysconfig
from collections import Counter
from collections.abc import Callable
from typing import Final, final

from pytest_katas import channel, procs
from pytest_katas.history import History
from pytest_katas.messages import _
from pytest_katas.verdict import Kind, Outcome

__all__ = ["Children", "explain_children"]

_PLUGIN_DIR: Final = os.path.dirname(os.path.abspath(__file__)) + os.sep
_FRAMES: Final = 4  # learner frames shown per traceback
# What unpickling a torn message raises, depending on which bytes a reader got.
_TORN: Final = frozenset(
    {"UnpicklingError", "EOFError", "ValueError", "OverflowError", "UnicodeDecodeError", "KeyError"}
    | {"MemoryError", "IndexError", "TypeError", "AttributeError", "ModuleNotFoundError"}
)


@final
@dataclasses.dataclass(frozen=True)
class Children:
    """How the test's children ended, read before the cleanup kills (and so upsets) them."""

    registry: dict[int, channel.ProcessInfo]
    exits: dict[int, int | None]
    raised: dict[int, channel.Raised]
    on_purpose: dict[int, channel.Ended]
    pool_failures: list[str]

    @classmethod
    def read(cls, rundir: channel.RunDir) -> Children:
        registry = rundir.read(channel.REGISTERED)
        exits = rundir.read(channel.EXITED)
        return cls(
            registry=registry,
            exits={
                pid: procs.exit_status(pid, exits, {})
                for pid, info in registry.items()
                if info.role != "test"
            },
            raised=rundir.read(channel.RAISED),
            on_purpose=rundir.read(channel.ENDED),
            pool_failures=[failure.traceback for failure in rundir.read_all(channel.POOL_FAILED)],
        )


def _in_recv(raised: channel.Raised) -> bool:
    return any(
        file.endswith(f"multiprocessing{os.sep}connection.py") and function == "recv"
        for file, _line, function in raised.frames
    )


def _cause(raised: channel.Raised, pid: int, history: History | None) -> str:
    """What an exception inside recv() means, from what the trace saw."""
    if not _in_recv(raised):
        return ""
    if raised.exc_type == "EOFError" and "Ran out of input" not in raised.message:
        return _(
            " recv() raises EOFError once every copy of the pipe's write end is closed and "
            "the pipe is empty: this reader ran out before a sentinel came for it. Is there "
            "one sentinel per reader?"
        )
    if raised.exc_type not in _TORN:
        return ""
    others = []
    if history is not None:
        mine = {e.obj for e in history.of(("recv", "garbled"), pid)}
        others = sorted(
            {history.label(e.pid) for e in history.of(("recv",)) if e.obj in mine and e.pid != pid}
        )
    if others:
        return _(
            " recv() got bytes that were not one whole message: {others} read the same pipe "
            "end too, and two readers inside recv() at once each take part of the other's "
            "message."
        ).format(others=_(", ").join(others))
    return _(" recv() got bytes that were not one whole message: was the message torn?")


def _traceback(raised: channel.Raised, relpath: Callable[[str], str], files: set[str]) -> str:
    """The learner's frames of a child's traceback (outermost first), and where it was raised."""
    frames = [f for f in raised.frames if not f[0].startswith(_PLUGIN_DIR)]
    mine = [f for f in frames if f[0] in files][-_FRAMES:]
    if frames and frames[-1] not in mine:
        mine.append(frames[-1])  # where it was raised, in the library
    lines = []
    for file, line, function in mine:
        mark = ">>" if file in files else "  "
        shown = relpath(file) if file in files else _library_path(file)
        lines.append(f"  {mark} {shown}:{line} in {function}")
        source = linecache.getline(file, line).strip()
        if source and file in files:
            lines.append(f"  {mark}     {source}")
    return "\n".join(lines)


_STDLIB: Final = sysconfig.get_paths()["stdlib"] + os.sep


def _library_path(file: str) -> str:
    """``multiprocessing/connection.py`` for a file of the standard library."""
    return file.removeprefix(_STDLIB)


_REMOTE_FRAME: Final = re.compile(
    r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>.*)$'
)
_ADDRESS: Final = re.compile(r" at 0x[0-9a-f]+")


def _pool_failure(text: str, relpath: Callable[[str], str], files: set[str]) -> str:
    """A Pool task's traceback, as the worker sent it (text), cut like a child's: the
    learner's frames, where it was raised, and the exception."""
    frames: list[tuple[str, int, str]] = []
    last = -1
    lines = text.splitlines()
    for index, line in enumerate(lines):
        frame = _REMOTE_FRAME.match(line)
        if frame is not None:
            frames.append((frame["file"], int(frame["line"]), frame["func"]))
            last = index
    # What follows the last frame and its source lines is the exception itself.
    tail = [
        line
        for line in lines[last + 1 :]
        if line.strip() and not line.startswith(" ") and line.strip() != '"""'
    ]
    if not frames:
        return _ADDRESS.sub("", text.strip())
    fake = channel.Raised(pid=0, traceback=text, frames=tuple(frames))
    return (_traceback(fake, relpath, files) + "\n  " + "\n  ".join(tail)).rstrip()


def _raised_where(raised: channel.Raised, relpath: Callable[[str], str], files: set[str]) -> str:
    mine = [f for f in raised.frames if f[0] in files]
    if not mine:
        return ""
    file, line, _function = mine[-1]
    source = linecache.getline(file, line).strip()
    return _(" at {where}").format(where=f"{relpath(file)}:{line}") + (
        f" (`{source}`)" if source else ""
    )


def explain_children(
    outcome: Outcome,
    children: Children,
    relpath: Callable[[str], str],
    files: set[str],
    history: History | None = None,
) -> None:
    """Name every child that raised or died, and call the failure a crash if one did."""
    notes: list[str] = []
    crashed: list[str] = []
    alike: dict[tuple[str, str], list[str]] = {}  # (exception, traceback) -> the others
    for pid, code in children.exits.items():
        info = children.registry[pid]
        if info.where:
            label = _("child process {name} (pid {pid}, target {target} at {where})")
        else:
            label = _("child process {name} (pid {pid}, target {target})")
        label = label.format(
            name=repr(info.name),
            pid=pid,
            target=info.target,
            where=relpath(info.where) if info.where else "",
        )
        raised = children.raised.get(pid)
        if raised is not None:
            what = f"{raised.exc_type}: {raised.message}" if raised.message else raised.exc_type
            headline = _("{label} raised {what}").format(label=label, what=what)
            headline += _raised_where(raised, relpath, files)
            cause = _cause(raised, pid, history)
            headline += f".{cause}" if cause else ""
            crashed.append(headline)
            shown = _traceback(raised, relpath, files)
            key = (raised.exc_type, shown)
            if key in alike:  # the same crash at the same line: one traceback is enough
                alike[key].append(info.name)
                continue
            alike[key] = []
            notes.append(_("{label} raised {what}:").format(label=label, what=what) + f"\n{shown}")
        elif code not in (None, 0) and pid not in children.on_purpose:
            notes.append(f"{label} {procs.describe_exit(code)}")
            crashed.append(notes[-1])
    for (exc_type, _shown), others in alike.items():
        if others:
            notes.append(
                _("{others} raised {exc_type} at the same place too").format(
                    others=_(", ").join(others), exc_type=exc_type
                )
            )
    tasks = Counter(_pool_failure(text, relpath, files) for text in children.pool_failures)
    notes.extend(
        (
            (
                _("a task raised in a Pool worker ({count} tasks alike):")
                if n > 1
                else _("a task raised in a Pool worker:")
            ).format(count=n)
            + f"\n{text}"
        )
        for text, n in tasks.items()
    )
    if outcome.status != "failed" or not notes:
        return
    outcome.details = (outcome.details + "\n\n" + "\n\n".join(notes)).strip("\n")
    if crashed and outcome.kind in (Kind.WRONG, Kind.LOST, Kind.HANG, Kind.CRASH, Kind.SLOW):
        prefix = "" if outcome.kind == Kind.CRASH else f"; {outcome.message}"
        outcome.message = f"{crashed[0]}{prefix}"
        outcome.kind = Kind.CRASH
