"""What a kata test can ask about the processes its learner code started."""

from __future__ import annotations

import dataclasses
from typing import final

from pytest_katas.channel import LEARNER_ROLES, RunDir

__all__ = ["ChildProcess", "children"]


@final
@dataclasses.dataclass(frozen=True)
class ChildProcess:
    pid: int
    name: str
    target: str | None
    role: str  # "worker" (a Process the learner started), "pool" or "manager"


def children(role: str | None = None) -> list[ChildProcess]:
    """Every multiprocessing child started so far in this test, in start order.

    By default only the processes that run learner code: the learner's own processes and
    a Pool's workers. A Manager's server process is infrastructure: ask for it with
    ``role="manager"``; ``role="any"`` gives every child.
    """
    rundir = RunDir.current()
    if rundir is None:
        raise RuntimeError("children() works only inside a kata test (one using `kata`)")
    wanted = LEARNER_ROLES if role is None else None if role == "any" else (role,)
    found = [
        (info.started, ChildProcess(pid, info.name, info.target, info.role))
        for pid, info in rundir.processes().items()
        if info.role != "test" and (wanted is None or info.role in wanted)
    ]
    return [child for _, child in sorted(found, key=lambda pair: pair[0])]
