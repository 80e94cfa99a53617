"""VARIANT: every worker does one task and is replaced (maxtasksperchild=1), so more workers are started than `processes`, never more alive at once; crawl uses Pool.map inside `with`, then close() and join().

expect: pass
"""

from __future__ import annotations

import functools
import multiprocessing
import urllib.error
import urllib.request

TIMEOUT = 2.0


def _square(number: int) -> int:
    return number * number


def squares(numbers: list[int], processes: int = 4) -> list[int]:
    # A few chunks per worker: each chunk is one task, done by a fresh worker.
    chunksize = max(1, -(-len(numbers) // (2 * processes)))
    with multiprocessing.Pool(processes, maxtasksperchild=1) as pool:
        squared = pool.map(_square, numbers, chunksize=chunksize)
        pool.close()
        pool.join()
    return squared


def gather(func, args: list, processes: int = 4) -> tuple[dict, dict]:
    results: dict = {}
    errors: dict = {}

    def ok(arg, value):
        results[arg] = value

    def failed(arg, exc):
        errors[arg] = f"{type(exc).__name__}: {exc}"

    with multiprocessing.Pool(processes) as pool:
        for arg in args:
            pool.apply_async(
                func,
                (arg,),
                callback=functools.partial(ok, arg),
                error_callback=functools.partial(failed, arg),
            )
        pool.close()
        pool.join()
    return results, errors


def _fetch(url: str) -> tuple[bool, int | str]:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            if response.status != 200:
                return False, f"HTTP status {response.status}"
            return True, len(response.read())
    except urllib.error.HTTPError as exc:
        exc.close()
        return False, f"{type(exc).__name__}: {exc}"
    except OSError as exc:
        return False, f"{type(exc).__name__}: {exc}"


def crawl(urls: list[str], processes: int = 4) -> tuple[dict[str, int], dict[str, str]]:
    with multiprocessing.Pool(processes, maxtasksperchild=1) as pool:
        outcomes = pool.map(_fetch, urls, chunksize=1)
        pool.close()
        pool.join()
    pages = {url: value for url, (ok, value) in zip(urls, outcomes, strict=True) if ok}
    errors = {url: value for url, (ok, value) in zip(urls, outcomes, strict=True) if not ok}
    return pages, errors
