"""Points at the learner's stores that no hook sees, for the controlled scheduler.

The scheduler switches threads only at points (:mod:`.control`), and the hooks make a
point of every read and write of a learner object's attribute. A shared count kept
elsewhere would slip through: ``self._box[0] += 1`` reads the attribute (a point) and then
reads and writes an item of a list with no point in between, so no schedule could stop a
thread between its read of the item and its write, and a lost update there would never
show. So, while a controlled run is on, the learner's own code gets a point just before
each instruction that stores into shared state the hooks cannot see: an item or a slice
(``x[k] = v``, ``del x[k]``, ``x[k] += v``), a module global, a variable of an enclosing
function. Stores to local variables are the thread's own; stores to attributes already
have their point (the hook of the learner's class).

Only code objects of the learner's files that hold such a store are watched:
``sys.monitoring`` on 3.12+ (every other instruction switched off after its first pass),
opcode tracing of those functions' frames on 3.10 and 3.11.
"""

from __future__ import annotations

import contextlib
import dis
import sys
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any, Final

from pytest_katas import channel, control, schedule, trace

__all__ = ["watching"]

_STORES: Final = frozenset(
    {"STORE_SUBSCR", "DELETE_SUBSCR", "STORE_SLICE", "STORE_GLOBAL", "DELETE_GLOBAL"}
    | {"STORE_DEREF", "DELETE_DEREF"}
)


_FOUND: dict[int, tuple[types.CodeType, dict[int, tuple[str, int]]]] = {}


def _stores(code: types.CodeType) -> dict[int, tuple[str, int]]:
    """``offset -> (what is stored, line)`` for each store of ``code`` the hooks miss,
    worked out once per code object (dis is slow)."""
    cached = _FOUND.get(id(code))
    if cached is None or cached[0] is not code:
        cached = _FOUND[id(code)] = (code, _find_stores(code))
    return cached[1]


def _find_stores(code: types.CodeType) -> dict[int, tuple[str, int]]:
    found: dict[int, tuple[str, int]] = {}
    line = code.co_firstlineno
    for ins in dis.get_instructions(code):
        if ins.starts_line is not None and not isinstance(ins.starts_line, bool):
            line = ins.starts_line
        elif getattr(ins, "line_number", None) is not None:  # 3.13: starts_line is a bool
            line = ins.line_number  # type: ignore[attr-defined,unused-ignore]
        if ins.opname in _STORES and not (
            ins.opname.endswith("DEREF") and ins.argval in code.co_cellvars
        ):  # a function's stores to its own cells set up what its closures see; the
            # shared writes are an inner function's stores to the variables it closes over
            if ins.opname.endswith("SUBSCR") or ins.opname == "STORE_SLICE":
                what = "an item"
            elif ins.opname.endswith("GLOBAL"):
                what = f"global {ins.argval}"
            else:
                what = f"{ins.argval} (of an enclosing function)"
            found[ins.offset] = (what, line)
    return found


_CODES: dict[tuple[int, ...], list[types.CodeType]] = {}


def _watched() -> list[types.CodeType]:
    """The learner's code objects that hold such a store: found once per loaded module
    (a search runs hundreds of schedules, each in a controlled run of its own)."""
    key = tuple(id(sys.modules.get(name)) for name in channel.learner_modules())
    codes = _CODES.get(key) if None not in key else None
    if codes is None:
        codes = [c for c in schedule.learner_codes() if _stores(c)]
        if None not in key:
            _CODES.clear()
            _CODES[key] = codes
    return codes


class _Points:
    def __init__(self, codes: list[types.CodeType]) -> None:
        self.codes = codes
        self.stores = {id(c): _stores(c) for c in codes}  # (the codes stay alive: _CODES)
        self.tool: int | None = None
        self.before: tuple[Any, Any] = (None, None)  # the trace functions we replaced

    def _point(self, code: types.CodeType, offset: int) -> bool:
        """A point before the store at ``offset``, if it is one and this thread is under
        control. Whether it was a store."""
        found = self.stores.get(id(code), {}).get(offset)
        if found is None:
            return False
        ctl = control.running()
        index = trace._files.get(code.co_filename)
        if ctl is not None and index is not None:
            what, line = found
            ctl[0].point(ctl[1], "store", what, index * trace.SITE_BASE + line)
        return True

    def _instruction(self, code: types.CodeType, offset: int) -> Any:
        """3.12+: sys.monitoring's callback; every other instruction is switched off."""
        if self._point(code, offset):
            return None
        return sys.monitoring.DISABLE  # type: ignore[attr-defined,unused-ignore]

    def _call(self, frame: types.FrameType, event: str, arg: Any) -> Callable[..., Any] | None:
        """3.10 and 3.11: trace the opcodes of the functions that hold a store, only."""
        if id(frame.f_code) not in self.stores:
            return None
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        return self._opcode

    def _opcode(self, frame: types.FrameType, event: str, arg: Any) -> Callable[..., Any]:
        if event == "opcode":
            self._point(frame.f_code, frame.f_lasti)
        return self._opcode

    def start(self) -> None:
        if sys.version_info >= (3, 12):
            self.tool = schedule.watch_instructions(
                self.codes, self._instruction, "pytest-katas stores"
            )
        else:
            self.before = (sys.gettrace(), threading.gettrace())
            sys.settrace(self._call)
            threading.settrace(self._call)

    def stop(self) -> None:
        if sys.version_info >= (3, 12):
            schedule.unwatch_instructions(self.tool, self.codes)
            self.tool = None
        else:
            sys.settrace(self.before[0])
            threading.settrace(self.before[1])  # type: ignore[arg-type,unused-ignore]


def watching() -> contextlib.AbstractContextManager[None]:
    """Points before the learner's unhooked stores, for the controlled run in the body."""
    codes = _watched()
    return _watching(codes) if codes else contextlib.nullcontext()


@contextlib.contextmanager
def _watching(codes: list[types.CodeType]) -> Iterator[None]:
    points = _Points(codes)
    points.start()
    try:
        yield
    finally:
        points.stop()
