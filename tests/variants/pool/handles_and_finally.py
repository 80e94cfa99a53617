"""VARIANT: no `with`: try/finally closes and joins; gather keeps the AsyncResult handles and crawl reads them with get().

expect: pass
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


class FetchError(Exception):
    """A failure that pickles: just its message. (An HTTPError holds the open response.)"""


def _fetch(url: str) -> int:
    """Raises FetchError on any failure; the parent records its message."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            body = response.read()
            status = response.status
    except OSError as exc:
        raise FetchError(f"{type(exc).__name__}: {exc}") from None
    if status != 200:
        raise FetchError(f"HTTP status {status}")
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
            except FetchError as exc:
                errors[url] = str(exc)
    finally:
        _finish(pool)
    return pages, errors
