"""Concurrency Katas' pytest plugin: runs kata tests the way a concurrency expert would.

What kata tests use is imported on first use: every child process of learner code that
spawn or forkserver starts imports this package first (to boot the trace), and should pay
only for what it needs there.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_katas.gate import Gate
    from pytest_katas.observe import ChildProcess, Observed, children, observed
    from pytest_katas.remote import learner_side
    from pytest_katas.starts import any_start_method, fresh_start_method, start_method
    from pytest_katas.verdict import KataFailure, Kind, fail_as
    from pytest_katas.waits import patience

__all__ = [
    "ChildProcess",
    "Gate",
    "KataFailure",
    "Kind",
    "Observed",
    "__version__",
    "any_start_method",
    "children",
    "fail_as",
    "fresh_start_method",
    "learner_side",
    "observed",
    "patience",
    "start_method",
]

__version__ = "0.1.0"

# Each public name, and the module that defines it.
_HOMES = {
    "ChildProcess": "observe",
    "any_start_method": "starts",
    "Gate": "gate",
    "KataFailure": "verdict",
    "Kind": "verdict",
    "Observed": "observe",
    "children": "observe",
    "fail_as": "verdict",
    "fresh_start_method": "starts",
    "learner_side": "remote",
    "observed": "observe",
    "patience": "waits",
    "start_method": "starts",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'pytest_katas' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"pytest_katas.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
