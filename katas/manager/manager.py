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

    - Make a ``multiprocessing.Manager()`` and put ``{"count": start}`` in one of its dicts.
    - Start ``workers`` processes. Each one subtracts 1 from ``d["count"]``, once.
    - Wait for every one of them (join), then return the final count: ``start - workers``,
      every time, however the processes interleave.
    - Beware: ``d["count"] -= 1`` on a Manager dict is two separate requests to the
      manager, a read and then a write. Another process can slip in between.
    - Leave nothing running: shut the manager down when you are done (``with`` does it).
    """
    raise NotImplementedError


def tally(words: list[str], workers: int = 4) -> dict[str, int]:
    """Count how often each word occurs, with ``workers`` processes and one shared dict.

    - Make ONE Manager dict and share it between ``workers`` worker processes.
    - Split the words between the workers so that each word is handed to exactly one of
      them (``workers`` may not divide ``len(words)``, and may exceed it).
    - The workers add their counts into the shared dict; no update may be lost.
    - Join every worker, then return a plain ``dict`` (not the Manager's proxy) equal to
      ``collections.Counter(words)``. ``tally([])`` is ``{}``.
    """
    raise NotImplementedError
