"""MUTANT: crawl's worker lets urlopen's HTTPError escape, to be formatted in the parent; it holds the open response and cannot be pickled back.

expect: wrong
clause: C11
"""

from __future__ import annotations

import multiprocessing
import urllib.error
import urllib.request
from multiprocessing.pool import Pool

TIMEOUT = 2.0


def _square(number: int) -> int:
    return number * number


def _finish(pool: Pool) -> None:
    pool.close()
    pool.join()


def squares(numbers: list[int], processes: int = 4) -> list[int]:
    pool = multiprocessing.Pool(processes)
    try:
        return pool.map(_square, numbers)
    finally:
        _finish(pool)


def gather(func, args: list, processes: int = 4) -> tuple[dict, dict]:
    results: dict = {}
    errors: dict = {}
    pool = multiprocessing.Pool(processes)
    try:
        handles = [
            pool.apply_async(
                func,
                (arg,),
                callback=lambda value, arg=arg: results.__setitem__(arg, value),
                error_callback=lambda exc, arg=arg: errors.__setitem__(
                    arg, f"{type(exc).__name__}: {exc}"
                ),
            )
            for arg in args
        ]
        for handle in handles:
            handle.wait()  # the callback has run before wait() returns
    finally:
        _finish(pool)
    return results, errors


def _fetch(url: str) -> int:
    """Raises on any failure; the parent turns the exception into a message."""
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        body = response.read()
        if response.status != 200:
            raise urllib.error.URLError(f"HTTP status {response.status}")
        return len(body)


def crawl(urls: list[str], processes: int = 4) -> tuple[dict[str, int], dict[str, str]]:
    pages: dict[str, int] = {}
    errors: dict[str, str] = {}
    pool = multiprocessing.Pool(processes)
    try:
        handles = {url: pool.apply_async(_fetch, (url,)) for url in urls}
        for url, handle in handles.items():
            try:
                pages[url] = handle.get()
            except Exception as exc:  # noqa: BLE001 - whatever urlopen raised in the worker
                errors[url] = f"{type(exc).__name__}: {exc}"
    finally:
        _finish(pool)
    return pages, errors
