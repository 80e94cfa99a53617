"""Kata 4: threads. A counter that many threads can share, and a harness that pounds on it.

Read README.md first. Fill in the class and the function below, then run:

    pytest katas/threads

Threads share everything in the process: the same objects, the same attributes. That is
what makes them cheap to start, and what makes a shared count easy to get wrong.
"""

from __future__ import annotations

import threading  # noqa: F401 - you will need it


class Counter:
    """A count, starting at 0, that many threads may add to at the same time.

    - ``Counter()`` starts at 0, with a count of its own: other Counters never change it.
    - ``increment(by=1)`` adds ``by``. It may be called from many threads at once, and no
      call may ever be lost: after N calls in total, from any threads, ``value`` has risen
      by the sum of their ``by``.
    - ``value`` is a read-only property: ``counter.value`` gives the count, and
      ``counter.value = 5`` raises ``AttributeError``.
    """

    def __init__(self) -> None:
        raise NotImplementedError

    def increment(self, by: int = 1) -> None:
        """Add ``by`` to the count. Safe to call from many threads at once."""
        raise NotImplementedError

    @property
    def value(self) -> int:
        """The current count (read-only)."""
        raise NotImplementedError


def hammer(counter, threads: int = 8, per_thread: int = 10_000) -> int:
    """Have ``threads`` threads each call ``counter.increment()`` ``per_thread`` times.

    - Start exactly ``threads`` ``threading.Thread`` objects. Each calls
      ``counter.increment()`` (no argument) ``per_thread`` times.
    - Release them together: no thread may call ``increment()`` before every one of
      them has been started. Something must make each thread wait for that: a
      ``threading.Barrier`` does (so do an Event set after the last ``start()``, or a
      Condition); a ``time.sleep()`` does not, it only makes it likely.
    - Join every thread, then return ``counter.value``. When ``hammer()`` returns, none
      of its threads is still running.
    - ``counter`` is any object with an ``increment()`` method and a ``value``
      attribute, not only a ``Counter``.
    """
    raise NotImplementedError
