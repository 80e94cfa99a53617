"""MUTANT: squares and crawl return from inside `with Pool(...)`: the with-block terminates the pool, never closed nor joined (the contract asks for close() then join()).

expect: contract
clause: C3
"""

from __future__ import annotations

import multiprocessing
import urllib.request

TIMEOUT = 2.0


def _square(number: int) -> int:
    return number**2


def squares(numbers: list[int], processes: int = 4) -> list[int]:
    with multiprocessing.Pool(processes=processes) as pool:
        return pool.map(_square, numbers)  # map has returned: terminate() kills idle workers


def gather(func, args: list, processes: int = 4) -> tuple[dict, dict]:
    results: dict = {}
    errors: dict = {}

    def make_callbacks(arg):
        def ok(value):
            results[arg] = value

        def failed(exc):
            errors[arg] = f"{type(exc).__name__}: {exc}"

        return ok, failed

    with multiprocessing.Pool(processes=processes) as pool:
        for arg in args:
            ok, failed = make_callbacks(arg)
            pool.apply_async(func, (arg,), callback=ok, error_callback=failed)
        pool.close()
        pool.join()
    return results, errors


def _fetch(url: str):
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            if response.status == 200:
                return True, len(response.read())
            return False, f"HTTP status {response.status}"
    except Exception as exc:  # noqa: BLE001 - every failure is reported, none raised
        return False, f"{type(exc).__name__}: {exc}"


def crawl(urls: list[str], processes: int = 4) -> tuple[dict[str, int], dict[str, str]]:
    with multiprocessing.Pool(processes=processes) as pool:
        outcomes = pool.map(_fetch, urls, chunksize=1)
    pages = {url: value for url, (ok, value) in zip(urls, outcomes, strict=True) if ok}
    errors = {url: value for url, (ok, value) in zip(urls, outcomes, strict=True) if not ok}
    return pages, errors
