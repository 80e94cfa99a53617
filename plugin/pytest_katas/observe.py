"""What a kata test can ask about the processes its learner code started."""

from __future__ import annotations

import dataclasses
import os
from typing import final

from pytest_katas import procs
from pytest_katas.boot import ENV_RUNDIR

__all__ = ["ChildProcess", "children"]


@final
@dataclasses.dataclass(frozen=True)
class ChildProcess:
    pid: int
    name: str
    target: str | None


def children() -> list[ChildProcess]:
    """Every multiprocessing child started so far in this test, in start order."""
    rundir = os.environ.get(ENV_RUNDIR)
    if rundir is None:
        raise RuntimeError("children() works only inside a kata test (one using `kata`)")
    seen = procs.read_registry(rundir, "started") | procs.read_registry(rundir, "proc")
    found = [
        (info["started"], ChildProcess(pid, info["name"], info.get("target")))
        for pid, info in seen.items()
        if info["role"] == "child"
    ]
    return [child for _, child in sorted(found, key=lambda pair: pair[0])]
