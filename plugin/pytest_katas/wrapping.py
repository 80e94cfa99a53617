"""What every hook module shares: ids that are the same in every process of a test,
installing a wrapper once, and the test of whether learner code made an object."""

from __future__ import annotations

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
]

MP_DIR: Final = os.path.dirname(threading.__file__) + os.sep + "multiprocessing" + os.sep
_ids = itertools.count(1)


def new_id(prefix: str) -> str:
    """An id no other object of this test has, in any process: the pid and a counter."""
    return f"{prefix}{os.getpid()}.{next(_ids)}"


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
