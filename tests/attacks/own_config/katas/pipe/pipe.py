"""Kata 1: pipes. One writer and one reader, then one writer and many readers.

Read README.md first. Fill in the two functions below, then run:

    pytest katas/pipe

Everything you start must be a ``multiprocessing.Process`` and every item must travel
through a ``multiprocessing.Pipe``. Define the functions your processes run at module level,
so that they can be started under fork, spawn and forkserver alike.
"""

from __future__ import annotations

import multiprocessing  # noqa: F401 - you will need it


def relay(items: list) -> list:
    """Send every item to ONE child process through a Pipe, and get them all back.

    - Start one child process. Send it each item, in order, through a
      ``multiprocessing.Pipe``.
    - The child receives until the pipe reports end of file (``recv()`` raises
      ``EOFError``). There is no sentinel: only closing every write end makes EOF happen,
      so close the ends each process does not use, in the parent and in the child.
    - The child then hands back everything it received (use a second pipe for that).
      Return it, in the order it was sent.
    - Items are any picklable values, ``None`` and other falsy values included.
    """
    raise NotImplementedError


def fan_out(items: list, consumers: int = 2) -> dict[str, list]:
    """One producer, several consumers, ONE Pipe between them.

    - Start one producer process that sends every item into a single Pipe, then one
      sentinel per consumer.
    - Start ``consumers`` consumer processes that all read from the receiving end of that
      same Pipe. A Pipe is not safe for several readers: they must take turns, under a
      ``multiprocessing.Lock``.
    - Each consumer stops when it receives a sentinel. Items can be 0, "", None or False:
      those are items, not ends, so test for the sentinel itself, not for truthiness.
    - Return a dict with exactly ``consumers`` keys, one per consumer (any names), each
      mapped to the items that consumer received, in the order it received them.
    - Every item arrives exactly once, whatever its value and whatever its size (up to
      1 MiB).
    """
    raise NotImplementedError
