"""Tracing the learner's own objects: reads and writes of the attributes of the classes in
the learner's module, through their ``__getattribute__`` and ``__setattr__``."""

from __future__ import annotations

import sys
import types
from typing import Any, Final

from pytest_katas import control, trace
from pytest_katas.wrapping import small

__all__ = ["instrument"]


# -- the learner's own objects -------------------------------------------------------------

_SYNC_MODULES: Final = frozenset(
    {"threading", "_thread", "socket", "queue", "selectors", "pytest_katas.hooks_sync"}
    | {f"multiprocessing.{m}" for m in ("synchronize", "connection", "queues", "managers")}
    | {"multiprocessing.pool", "multiprocessing.process", "multiprocessing.context"}
)
_not_data: dict[tuple[type, str], bool] = {}  # (class, name) -> a method or property?
_sync_types: dict[type, bool] = {}
_sync_attrs: dict[tuple[type, str], bool] = {}  # attributes seen holding a lock, a thread...


def _is_sync(value: Any) -> bool:
    """Locks, threads, sockets, queues, pipes: what the learner's objects hold, not data."""
    kind = type(value)
    known = _sync_types.get(kind)
    if known is None:
        known = _sync_types[kind] = (kind.__module__ in _SYNC_MODULES) or callable(value)
    return known


def _class_level(cls: type, name: str) -> bool:
    """Whether ``name`` is found on the class as anything but a slot: a method, a
    property, a class constant. Reads of those are not the data races live in."""
    key = (cls, name)
    found = _not_data.get(key)
    if found is None:
        found = False
        for klass in cls.__mro__:
            if name in klass.__dict__:
                found = not isinstance(klass.__dict__[name], types.MemberDescriptorType)
                break
        _not_data[key] = found
    return found


def _location(obj: Any, name: str) -> str:
    return f"{type(obj).__qualname__}@{id(obj):x}g{trace.generation}.{name}"


def _instrument_class(cls: type) -> None:
    if "_kata_traced" in cls.__dict__:
        return
    get: Any = cls.__getattribute__
    set_: Any = cls.__setattr__
    files = trace._files
    base = trace.SITE_BASE

    def __getattribute__(self: Any, name: str) -> Any:
        if control._active is not None and name[:2] != "__":
            return _controlled_read(self, name)
        value = get(self, name)
        if trace._rec is not None and trace._rec.on and name[:2] != "__":
            frame = sys._getframe(1)
            index = files.get(frame.f_code.co_filename)
            if index is not None and not _class_level(type(self), name) and not _is_sync(value):
                where = index * base + frame.f_lineno
                trace.access("read", _location(self, name), small(value), where)
        return value

    def _controlled_read(self: Any, name: str) -> Any:
        """A read under the scheduler: a point just before it, if it is the learner's
        read of data (a lock or a method is not where a race lives)."""
        frame = sys._getframe(2)
        index = files.get(frame.f_code.co_filename)
        ctl = control.running() if index is not None else None
        cls = type(self)
        if ctl is None or _class_level(cls, name) or _sync_attrs.get((cls, name)):
            value = get(self, name)
        else:
            where = index * base + frame.f_lineno  # type: ignore[operator]
            ctl[0].point(ctl[1], "read", _location(self, name), where)
            value = get(self, name)
            ctl[0].note(small(value))
        if index is not None:
            if _class_level(cls, name) or _is_sync(value):
                _sync_attrs[(cls, name)] = True
            elif trace._rec is not None and trace._rec.on:
                where = index * base + frame.f_lineno
                trace.access("read", _location(self, name), small(value), where)
        return value

    def __setattr__(self: Any, name: str, value: Any) -> None:
        if control._active is not None and name[:2] != "__":
            frame = sys._getframe(1)
            index = files.get(frame.f_code.co_filename)
            ctl = control.running() if index is not None else None
            if ctl is not None:
                if _is_sync(value) or _class_level(type(self), name):
                    _sync_attrs[(type(self), name)] = True
                else:
                    where = index * base + frame.f_lineno  # type: ignore[operator]
                    ctl[0].point(ctl[1], "write", _location(self, name), where, small(value))
        set_(self, name, value)
        if trace._rec is not None and trace._rec.on and name[:2] != "__":
            frame = sys._getframe(1)
            index = files.get(frame.f_code.co_filename)
            if index is not None and not _class_level(type(self), name) and not _is_sync(value):
                where = index * base + frame.f_lineno
                trace.access("write", _location(self, name), small(value), where)

    type.__setattr__(cls, "__getattribute__", __getattribute__)
    type.__setattr__(cls, "__setattr__", __setattr__)
    type.__setattr__(cls, "_kata_traced", True)


def instrument(module: types.ModuleType) -> None:
    """Trace reads and writes of the attributes of the learner's own classes."""
    for value in list(vars(module).values()):
        if isinstance(value, type) and value.__module__ == module.__name__:
            try:
                _instrument_class(value)
            except TypeError:  # a class that refuses new methods: untraced, not broken
                continue
