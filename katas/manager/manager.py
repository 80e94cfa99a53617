"""Kata 2: sharing a dict between processes through a Manager, and why it still needs a Lock.

Read README.md first. Fill in the two functions below, then run:

    pytest katas/manager

Every worker must be a ``multiprocessing.Process``, and the data they share must live in a
dict made by ``multiprocessing.Manager()``. Define the functions your processes run at module
level, so that they can be started under fork, spawn and forkserver alike.
"""

from __future__ import annotations

import multiprocessing  # noqa: F401 - you will need it


def count_down(start: int = 100, workers: int = 50) -> int:
    """Let ``workers`` processes each take 1 from a shared count, and return what is left.

    - C1: Make ONE ``multiprocessing.Manager()`` and keep the count in one of its dicts,
      ``{"count": start}``.
    - C2: Start ``workers`` processes (by default 50, on a count of 100). Each one subtracts
      1 from ``d["count"]`` itself, once, through that dict: the workers do the updating,
      not count_down.
    - C3: Hold ONE lock from each worker's read of ``d["count"]`` to its write: make it in
      count_down (``multiprocessing.Lock()`` or ``manager.Lock()``) and hand it to every
      worker. ``d["count"] -= 1`` on a Manager dict is two separate requests to the
      manager, a read and then a write; another process can slip in between. A lock made
      at module level is no good: under spawn and forkserver each child imports the module
      again and gets a lock of its own.
    - C4: Wait for every worker (join), then return the final count: ``start - workers``,
      every time, however the processes interleave.
    - C5: Leave nothing running: shut the manager down when you are done (``with`` does it).
    """
    raise NotImplementedError


def tally(words: list[str], workers: int = 4) -> dict[str, int]:
    """Count how often each word occurs, with ``workers`` processes and one shared dict.

    - C6: Make ONE Manager dict and share it between ``workers`` worker processes; the
      workers add their counts into it themselves.
    - C7: Split the words between the workers so that each word is handed to exactly one
      of them (``workers`` may not divide ``len(words)``, and may exceed it).
    - C8: No update may be lost: a read and the write after it happen under one shared
      lock.
    - C9: Join every worker, then return a plain ``dict`` (not the Manager's proxy) equal to
      ``collections.Counter(words)``. ``tally([])`` is ``{}``.
    """
    raise NotImplementedError
