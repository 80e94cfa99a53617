"""MUTANT: crawl's fetch guards urlopen() but not read(), and passes no error_callback, so a page that stalls after its headers is lost.

expect: lost
clause: C9
"""

from __future__ import annotations

import functools
import multiprocessing
import urllib.error
import urllib.request

TIMEOUT = 2.0  # seconds one fetch may take before crawl() gives up on that page


def _square(number: int) -> int:
    # Module level, so a worker started by spawn or forkserver can find it by name.
    return number * number


def squares(numbers: list[int], processes: int = 4) -> list[int]:
    # The with-block terminates the pool if anything goes wrong; on the good path close()
    # says "no more tasks" and join() waits until every worker has exited.
    with multiprocessing.Pool(processes) as pool:
        squared = pool.map(_square, numbers)  # blocks; results come back in input order
        pool.close()
        pool.join()
    return squared


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _record_result(results: dict, arg, value) -> None:
    results[arg] = value


def _record_error(errors: dict, arg, exc: BaseException) -> None:
    errors[arg] = _describe(exc)


def gather(func, args: list, processes: int = 4) -> tuple[dict, dict]:
    results: dict = {}
    errors: dict = {}
    with multiprocessing.Pool(processes) as pool:
        for arg in args:
            # apply_async returns at once, so every task is queued before any finishes.
            # Both callbacks run here, in the pool's result thread: they may touch our dicts.
            # Without error_callback a failed task would vanish without a trace.
            pool.apply_async(
                func,
                (arg,),
                callback=functools.partial(_record_result, results, arg),
                error_callback=functools.partial(_record_error, errors, arg),
            )
        pool.close()
        pool.join()  # returns after the last task AND its callback have run
    return results, errors


def _fetch(url: str) -> tuple[str, int | None, str | None]:
    """Runs in a worker: (url, body length, None) for a 200, else (url, None, why)."""
    try:
        response = urllib.request.urlopen(url, timeout=TIMEOUT)
    except urllib.error.HTTPError as exc:  # 4xx and 5xx: the server did answer
        exc.close()
        return url, None, _describe(exc)
    except OSError as exc:  # refused, timed out before the headers...
        return url, None, _describe(exc)
    with response:
        body = response.read()  # a timeout here escapes the worker
        status = response.status
    if status != 200:
        return url, None, f"HTTP status {status}"
    return url, len(body), None


def crawl(urls: list[str], processes: int = 4) -> tuple[dict[str, int], dict[str, str]]:
    pages: dict[str, int] = {}
    errors: dict[str, str] = {}

    def record(outcome: tuple[str, int | None, str | None]) -> None:
        url, size, problem = outcome
        if problem is None:
            pages[url] = size
        else:
            errors[url] = problem

    with multiprocessing.Pool(processes) as pool:
        for url in urls:
            pool.apply_async(_fetch, (url,), callback=record)  # _fetch never raises, or so it seems
        pool.close()
        pool.join()
    return pages, errors
