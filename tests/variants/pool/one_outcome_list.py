"""VARIANT: callbacks append (arg, ok, value) to one list, split into the two dicts after join; crawl fetches with imap_unordered.

expect: pass
"""

from __future__ import annotations

import multiprocessing
import urllib.error
import urllib.request

TIMEOUT = 2.0


def _square(number: int) -> int:
    return number * number


def squares(numbers: list[int], processes: int = 4) -> list[int]:
    pool = multiprocessing.Pool(processes)
    squared = pool.map(_square, numbers, chunksize=4)
    pool.close()
    pool.join()
    return squared


def gather(func, args: list, processes: int = 4) -> tuple[dict, dict]:
    outcomes: list = []  # list.append is atomic; only the result thread appends anyway
    pool = multiprocessing.Pool(processes)
    for arg in args:
        pool.apply_async(
            func,
            [arg],
            callback=lambda value, arg=arg: outcomes.append((arg, True, value)),
            error_callback=lambda exc, arg=arg: outcomes.append(
                (arg, False, f"{type(exc).__name__}: {exc}")
            ),
        )
    pool.close()
    pool.join()
    results = {arg: value for arg, ok, value in outcomes if ok}
    errors = {arg: value for arg, ok, value in outcomes if not ok}
    return results, errors


def _fetch(url: str) -> tuple[str, bool, object]:
    try:
        response = urllib.request.urlopen(url, timeout=TIMEOUT)
    except urllib.error.HTTPError as exc:
        message = f"HTTPError: {exc}"
        exc.close()
        return url, False, message
    except (urllib.error.URLError, TimeoutError) as exc:
        return url, False, f"{type(exc).__name__}: {exc}"
    try:
        size = len(response.read())
    except TimeoutError as exc:
        return url, False, f"TimeoutError: {exc}"
    finally:
        response.close()
    if response.status != 200:
        return url, False, f"HTTP status {response.status}"
    return url, True, size


def crawl(urls: list[str], processes: int = 4) -> tuple[dict[str, int], dict[str, str]]:
    pages: dict[str, int] = {}
    errors: dict[str, str] = {}
    pool = multiprocessing.Pool(processes)
    try:
        for url, ok, value in pool.imap_unordered(_fetch, urls):
            (pages if ok else errors)[url] = value
    finally:
        pool.close()
        pool.join()
    return pages, errors
