"""Concurrency Katas' pytest plugin: runs kata tests the way a concurrency expert would."""

from __future__ import annotations

from pytest_katas.gate import Gate
from pytest_katas.observe import ChildProcess, Observed, children, observed
from pytest_katas.remote import learner_side
from pytest_katas.verdict import KataFailure, Kind, fail_as
from pytest_katas.waits import patience

__all__ = [
    "ChildProcess",
    "Gate",
    "KataFailure",
    "Kind",
    "Observed",
    "__version__",
    "children",
    "fail_as",
    "learner_side",
    "observed",
    "patience",
]

__version__ = "0.1.0"
