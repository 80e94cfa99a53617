"""Kata 3: process pools. Pool.map, apply_async with callbacks, and a small web crawler.

Read README.md first. Fill in the three functions below, then run:

    pytest katas/pool

Do the work in a ``multiprocessing.Pool`` of ``processes`` workers: never more of them alive
at once (a pool may replace a worker, as with ``maxtasksperchild``). The functions your
workers run must be defined at module level, so that workers started by fork, spawn and
forkserver alike can find them. Every pool you open must be closed, then joined, before
your function returns, whether its tasks succeeded or failed.
"""

from __future__ import annotations

import multiprocessing  # noqa: F401 - you will need it
import urllib.error  # noqa: F401 - you will need it
import urllib.request  # noqa: F401 - you will need it

TIMEOUT = 2.0  # seconds one fetch may take: pass it to urlopen(..., timeout=TIMEOUT)


def squares(numbers: list[int], processes: int = 4) -> list[int]:
    """Square every number in a pool of ``processes`` workers, with ``Pool.map``.

    - Return the squares in the same order as ``numbers``.
    - Close and join the pool before returning.
    """
    raise NotImplementedError


def gather(func, args: list, processes: int = 4) -> tuple[dict, dict]:
    """Run ``func(arg)`` for every arg in a pool of ``processes`` workers, all at once.

    - Submit every task with ``Pool.apply_async``, so that the tasks run concurrently.
    - A callback (it runs in this process) records each result; an error callback records
      each failure as ``f"{type(exc).__name__}: {exc}"``.
    - Return ``(results, errors)``: ``{arg: value}`` and ``{arg: message}`` of this call's
      args, each keyed by the very arg passed in, only once every task has finished.
      Every arg appears in exactly one of the two dicts.
    - ``func`` is a module-level function (e.g. ``math.sqrt``); args are hashable.
    - Close and join the pool before returning.
    """
    raise NotImplementedError


def crawl(urls: list[str], processes: int = 4) -> tuple[dict[str, int], dict[str, str]]:
    """Fetch every url with ``urllib.request`` in a pool of ``processes`` workers.

    - Pages are fetched concurrently, by the pool's workers (not in this process).
    - Give every fetch ``timeout=TIMEOUT``.
    - Return ``(pages, errors)``. ``pages`` maps each url that answered HTTP 200 to the
      length of its body: the bytes read (not characters, not a header). ``errors`` maps
      every other url (HTTP errors such as 404 or 500, refused connections, timeouts) to a
      message: ``f"{type(exc).__name__}: {exc}"`` of the exception urllib raised (for a
      status other than 200 that urllib raises nothing for, such as 204, any message).
    - Every url appears in exactly one of the two dicts.
    - Close and join the pool before returning.
    """
    raise NotImplementedError
