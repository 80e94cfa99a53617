"""What every hook module shares: ids that are the same in every process of a test,
installing a wrapper once, and the test of whether learner code made an object."""

from __future__ import annotations

import _thread
import itertools
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, Final

from pytest_katas import trace

__all__ = [
    "MP_DIR",
    "from_learner",
    "install_wrapper",
    "installed",
    "new_id",
    "patched",
    "small",
    "start_own_thread",
]

MP_DIR: Final = os.path.dirname(threading.__file__) + os.sep + "multiprocessing" + os.sep
_ids = itertools.count(1)


def new_id(prefix: str) -> str:
    """An id no other object of this test has, in any process: the pid and a counter."""
    return f"{prefix}{os.getpid()}.{next(_ids)}"


def start_own_thread(target: Callable[[], object]) -> None:
    """Run ``target`` in a thread of the plugin's own (the scheduler's watch, the process
    coordinator), started below :mod:`threading` so that no hook sees it and no count of
    learner threads includes it. Like a ``threading.Thread``, it takes up the thread trace
    hook, but only coverage's (when coverage measures the plugin): never the schedule
    noise's, which must see learner threads only."""
    hook = threading.gettrace()
    owner = getattr(hook, "__self__", None)
    measured = hook if type(owner).__module__.startswith("coverage.") else None

    def run() -> None:
        if measured is not None:
            sys.settrace(measured)
        target()

    _thread.start_new_thread(run, ())


def patched(owner: Any, name: str) -> bool:
    return getattr(getattr(owner, name, None), "_kata_hook", False)


_installed: list[tuple[Any, str]] = []


def install_wrapper(owner: Any, name: str, wrapper: Callable[..., Any]) -> None:
    wrapper._kata_hook = True  # type: ignore[attr-defined]
    setattr(owner, name, wrapper)
    _installed.append((owner, name))


def installed() -> list[tuple[Any, str]]:
    """Every (owner, name) a wrapper was installed on in this process."""
    return list(_installed)


def from_learner(skip: int) -> bool:
    """Whether the frame ``skip`` levels up (0 is this function) runs learner code."""
    try:
        frame = sys._getframe(skip)
    except ValueError:
        return False
    return frame.f_code.co_filename in trace._files


def small(value: Any) -> Any:
    """A value small enough to show in an interleaving table, else its type."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str) and len(value) <= 24:
        return value
    return f"<{type(value).__name__}>"
