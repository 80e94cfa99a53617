"""Which start method a kata test's processes use, for tests whose verdict depends on it and
for those whose verdict does not.

What spawn and forkserver change is what a child inherits: a spawned child is a fresh
interpreter, and a forkserver's child is a fork of one spawned once. Both import the
learner's module anew, so a module-level lock or dict is a different object there, and
a global the parent set at run time is unset. A test of that runs under the start method
the learner chose, and under :func:`fresh_start_method` when that one is fork.

Every other test's verdict is the same whatever the method, and fork is three times
cheaper: a spawned interpreter, or a forkserver's child, imports the learner's module and
the plugin again where a forked one inherits them. :func:`any_start_method` runs such a
test's processes with fork. The start method set here reaches learner code whether the
test body runs beside it or apart (it is part of each call's context, :mod:`.remote`).
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
from collections.abc import Callable, Iterator
from typing import ParamSpec, TypeVar

__all__ = ["any_start_method", "fresh_start_method", "start_method"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def fresh_start_method() -> str | None:
    """A start method whose children inherit nothing: None if the one in use is such, else
    spawn (else forkserver)."""
    if multiprocessing.get_start_method() in ("spawn", "forkserver"):
        return None
    methods = multiprocessing.get_all_start_methods()
    return next((m for m in ("spawn", "forkserver") if m in methods), None)


def _cheapest() -> str | None:
    """fork, unless it is in use already or this platform lacks it."""
    if multiprocessing.get_start_method() == "fork":
        return None
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else None


@contextlib.contextmanager
def start_method(method: str | None) -> Iterator[None]:
    """Start learner processes with ``method`` for the block (None: leave it as it is)."""
    before = multiprocessing.get_start_method()
    if method is None or method == before:
        yield
        return
    multiprocessing.set_start_method(method, force=True)
    try:
        yield
    finally:
        multiprocessing.set_start_method(before, force=True)


def any_start_method(test: Callable[_P, _R]) -> Callable[_P, _R]:
    """Mark a kata test whose verdict does not depend on how a child is started: its
    processes start with fork, the cheapest, whatever start method was chosen."""

    @functools.wraps(test)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with start_method(_cheapest()):
            return test(*args, **kwargs)

    return run
