"""Tests for the pool kata. Each test checks one clause of the contract in pool.py."""

from __future__ import annotations

import copy
import gc
import math
import multiprocessing
import operator
import time
import urllib.request
import warnings

import pytest

from pytest_katas import children, fail_as, observed


def _describe(func, arg) -> str:
    """What gather() must record for func(arg), computed here so it fits any Python."""
    try:
        func(arg)
    except Exception as exc:  # noqa: BLE001 - any failure is the point
        return f"{type(exc).__name__}: {exc}"
    raise AssertionError(f"{func.__name__}({arg!r}) was expected to fail")


def _call_and_catch_unclosed_pool(call):
    """Run call(); return (its value, True if it dropped a Pool it never closed)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        value = call()
        gc.collect()  # a dropped Pool warns when it is collected
    unclosed = any("unclosed running multiprocessing pool" in str(w.message) for w in caught)
    return value, unclosed


def _check_each_arg_once(args: list, results: dict, errors: dict, what: str = "arg") -> None:
    both = set(results) & set(errors)
    if both:
        raise fail_as("lost", f"{what}(s) in both dicts, counted twice: {sorted(map(repr, both))}")
    missing = [arg for arg in args if arg not in results and arg not in errors]
    if missing:
        raise fail_as(
            "lost",
            f"{len(missing)} of {len(args)} {what}(s) are in neither dict, e.g. "
            f"{', '.join(map(repr, missing[:4]))}: a task that raises reaches only the "
            "error_callback, and a task still running when you return is not recorded yet",
        )
    extra = (set(results) | set(errors)) - set(args)
    if extra:
        raise fail_as("wrong", f"keys that were never passed in: {sorted(map(repr, extra))}")


def _check_squares(numbers: list[int], got) -> None:
    expected = [n * n for n in numbers]
    if sorted(got or []) == sorted(expected) and got != expected:
        raise fail_as(
            "order",
            f"every square is there but out of order: {got[:12]}... Pool.map keeps the input "
            "order; imap_unordered and callbacks hand results back as workers finish",
        )
    assert got == expected, f"squares({numbers[:12]}...) must be {expected[:12]}..., got {got!r}"


# -- task 1: squares ---------------------------------------------------------------------


def test_squares_returns_each_square_in_input_order(kata):
    numbers = [7, -3, 0, 12, 5, -11, 2, 9, 1, 30, -8, 4, *range(500, 100, -2)]
    _check_squares(numbers, kata.squares(numbers, processes=2))
    # The right order can come by luck; only Pool.map promises it every time.
    used = {e.extra for e in observed(kata).events("pool")} - {"close", "join", "terminate"}
    if used and not used & {"map", "map_async"}:
        raise fail_as(
            "contract",
            f"squares() gave the pool its work with {', '.join(sorted(used))}, not Pool.map: "
            "the squares came back in order this time, but only map promises the input "
            "order whatever order the workers finish in",
        )


def test_squares_of_an_empty_list_is_an_empty_list(kata):
    assert kata.squares([], processes=2) == [], "no numbers, no squares"


def test_squares_works_in_a_pool_of_worker_processes(kata):
    _check_squares(list(range(20)), kata.squares(list(range(20)), processes=3))
    started = children()
    # A pool ended by terminate() may kill a worker before it has even started up, so
    # count at least one worker, and no more than asked for.
    assert 1 <= len(started) <= 3, (
        f"squares(..., processes=3) must square in a Pool(3) of worker processes; "
        f"{len(started)} process(es) were started"
    )


def test_squares_closes_and_joins_its_pool(kata):
    got, unclosed = _call_and_catch_unclosed_pool(lambda: kata.squares([1, 2, 3], processes=2))
    _check_squares([1, 2, 3], got)
    if unclosed:
        raise fail_as(
            "leak",
            "squares() returned with its Pool still running: Python had to clean it up "
            "when the pool was garbage collected. Call close() then join() once the work "
            "is done (or use `with Pool(...)`)",
        )


# -- task 2: gather ----------------------------------------------------------------------


def test_gather_records_every_result_under_its_arg(kata):
    args = [0, 1, 4, 9, 16, 2.25, 100]
    results, errors = kata.gather(math.sqrt, args, processes=3)
    assert errors == {}, f"no task failed, but errors is {errors!r}"
    assert results == {arg: math.sqrt(arg) for arg in args}, (
        f"results must map each arg to math.sqrt(arg); got {results!r}"
    )


def test_gather_records_each_failure_as_its_type_and_message(kata):
    args = ["12", "x", "-7", "", "3.5", "0"]
    results, errors = kata.gather(int, args, processes=3)
    _check_each_arg_once(args, results, errors)
    expected = {arg: _describe(int, arg) for arg in ("x", "", "3.5")}
    assert errors == expected, (
        f"errors must map each failing arg to 'ExceptionType: message'; expected "
        f"{expected!r}, got {errors!r}"
    )
    assert results == {"12": 12, "-7": -7, "0": 0}, f"wrong results: {results!r}"


def test_gather_puts_every_arg_in_exactly_one_dict(kata):
    args = [4, -1, 9, -4, 0, -0.5, 2.25, -9]
    results, errors = kata.gather(math.sqrt, args, processes=2)
    _check_each_arg_once(args, results, errors)
    assert set(errors) == {-1, -4, -0.5, -9}, f"the negative args fail; errors is {errors!r}"


def test_gather_returns_only_after_every_task_has_finished(kata):
    # time.sleep returns None after the pause, and a negative pause raises ValueError.
    args = [0.4, 0.2, -1, 0.6, 0.0]
    results, errors = kata.gather(time.sleep, args, processes=2)
    _check_each_arg_once(args, results, errors)
    assert results == {0.4: None, 0.2: None, 0.6: None, 0.0: None}, f"got {results!r}"
    assert errors == {-1: _describe(time.sleep, -1)}, f"got {errors!r}"


@pytest.mark.kata_stress_budget(1.0)
def test_gather_never_returns_before_the_last_callback_has_run(kata, kata_stress):
    args = [str(n) for n in range(12)] + ["x", "y"]

    def scenario():
        results, errors = kata.gather(int, args, processes=2)
        return len(results), len(errors)

    def check(outcome):
        if outcome != (12, 2):
            return (
                f"expected 12 results and 2 errors, got {outcome[0]} and {outcome[1]}: "
                "gather() returned while callbacks were still running (join() the pool "
                "after close(), before reading the dicts)"
            )
        return None

    kata_stress.run(scenario, check, kind="lost", min_runs=2, max_runs=4)


@pytest.mark.kata_timeout(20)
def test_gather_runs_its_tasks_at_the_same_time(kata):
    with multiprocessing.Manager() as manager:
        # Three handles on ONE barrier: each task waits there until all three are waiting.
        # Run one at a time, the first task gives up after 8 s and breaks the barrier.
        barrier = manager.Barrier(3, timeout=8.0)
        handles = [copy.copy(barrier) for _ in range(3)]
        results, errors = kata.gather(operator.methodcaller("wait"), handles, processes=3)
    _check_each_arg_once(handles, results, errors, what="task")
    if any(message.startswith("BrokenBarrierError") for message in errors.values()):
        raise fail_as(
            "slow",
            "3 tasks that each wait for the other two never met: gather() ran them one "
            "after another. apply() blocks until its task is done; apply_async() only "
            "queues it, so all of them can run at once. "
            f"(errors: {sorted(errors.values())})",
        )
    assert not errors and sorted(results.values()) == [0, 1, 2], (
        f"unexpected results {results!r} and errors {errors!r}"
    )


def test_gather_closes_and_joins_its_pool(kata):
    (results, errors), unclosed = _call_and_catch_unclosed_pool(
        lambda: kata.gather(abs, [-3, 2, -1], processes=2)
    )
    assert (results, errors) == ({-3: 3, 2: 2, -1: 1}, {}), f"got {results!r}, {errors!r}"
    if unclosed:
        raise fail_as(
            "leak",
            "gather() returned with its Pool still running: its workers lived on until "
            "garbage collection killed them. close() the pool, then join() it",
        )


# -- task 3: crawl -----------------------------------------------------------------------


def test_crawl_measures_each_page_in_bytes(kata, site):
    urls = [site.url(f"/bytes/{n}") for n in (0, 1, 1000, 65536)] + [site.url("/zh")]
    pages, errors = kata.crawl(urls, processes=2)
    assert errors == {}, f"every page answered 200, but errors is {errors!r}"
    zh = len(site.zh_text.encode("utf-8"))
    expected = {**{site.url(f"/bytes/{n}"): n for n in (0, 1, 1000, 65536)}, site.url("/zh"): zh}
    if pages.get(site.url("/zh")) == len(site.zh_text):
        raise fail_as(
            "wrong",
            f"the Chinese page is {zh} bytes of UTF-8 but was counted as {len(site.zh_text)}: "
            "that is the length of the decoded text. Measure the bytes read()",
        )
    assert pages == expected, f"expected {expected!r}, got {pages!r}"


def test_crawl_reports_missing_and_broken_pages_as_errors(kata, site):
    ok, missing, boom = site.url("/bytes/10"), site.url("/missing"), site.url("/boom")
    empty = site.url("/empty")  # 204 No Content: urllib raises nothing, yet it is no 200
    pages, errors = kata.crawl([ok, missing, boom, empty], processes=2)
    _check_each_arg_once([ok, missing, boom, empty], pages, errors, what="url")
    if empty in pages:
        raise fail_as(
            "wrong",
            f"{empty} answered 204 No Content, not 200, yet it is in pages: urllib raises "
            "no error for it, so check response.status and put every other status in errors",
        )
    assert pages == {ok: 10}, f"only {ok} answered 200; pages is {pages!r}"
    if any("pickle" in message for message in errors.values()):
        raise fail_as(
            "wrong",
            "an HTTPError raised in a worker could not travel back to this process: it "
            "holds the open response, which cannot be pickled. Catch it in the worker and "
            f"send back its message instead. Got {errors[missing]!r}",
        )
    assert "404" in errors[missing] and "500" in errors[boom], (
        f"an HTTP error's message must carry its status code; got {errors!r}"
    )


def test_crawl_reports_a_refused_connection_as_an_error(kata, site):
    ok = site.url("/bytes/3")
    pages, errors = kata.crawl([site.dead, ok], processes=2)
    _check_each_arg_once([site.dead, ok], pages, errors, what="url")
    assert pages == {ok: 3}, f"got pages {pages!r}"
    assert "refused" in errors[site.dead].lower(), (
        f"nothing listens at {site.dead}; expected a 'Connection refused' message, got "
        f"{errors[site.dead]!r}"
    )


@pytest.mark.kata_timeout(12)
def test_crawl_gives_up_on_a_page_that_never_answers(kata, site):
    stall, ok = site.url("/stall"), site.url("/bytes/5")
    started = time.monotonic()
    pages, errors = kata.crawl([stall, ok], processes=2)
    took = time.monotonic() - started
    _check_each_arg_once([stall, ok], pages, errors, what="url")
    assert pages == {ok: 5}, f"got pages {pages!r}"
    assert "timed out" in errors[stall].lower(), (
        f"expected a 'timed out' message for the page that never answers, got {errors[stall]!r}"
    )
    assert took < 8, f"crawl took {took:.1f} s: pass timeout=TIMEOUT to urlopen"


def test_crawl_puts_every_url_in_exactly_one_dict(kata, site):
    urls = [
        site.url("/bytes/1"),
        site.url("/missing"),
        site.dead,
        site.url("/zh"),
        site.url("/boom"),
        site.url("/bytes/2"),
        site.url("/nope"),
        site.url("/bytes/3"),
    ]
    pages, errors = kata.crawl(urls, processes=4)
    _check_each_arg_once(urls, pages, errors, what="url")
    assert set(pages) == {urls[0], urls[3], urls[5], urls[7]}, f"got pages {pages!r}"


@pytest.mark.kata_timeout(20)
def test_crawl_fetches_pages_at_the_same_time(kata, site):
    # Each /meet page ends only once all three are being fetched at the same moment.
    # Fetched one at a time, the first gives up waiting for the others after 8 seconds.
    urls = [site.url(f"/meet/3/{n}") for n in range(3)]
    pages, errors = kata.crawl(urls, processes=3)
    with urllib.request.urlopen(site.url("/report"), timeout=5) as answer:
        meeting = answer.read().decode()
    if meeting != "met":
        raise fail_as(
            "slow",
            "3 pages that each wait until all three are being fetched never saw each "
            "other: crawl() fetched them one after another. Fetch in the pool with "
            "apply_async (or map), not in this process and not with apply()",
        )
    _check_each_arg_once(urls, pages, errors, what="url")
    assert not errors and set(pages) == set(urls), f"got {pages!r}, {errors!r}"


def test_crawl_fetches_in_worker_processes(kata, site):
    urls = [site.url(f"/bytes/{n}") for n in range(1, 5)]
    pages, errors = kata.crawl(urls, processes=2)
    assert pages == {url: n for n, url in enumerate(urls, 1)} and not errors, (
        f"got {pages!r}, {errors!r}"
    )
    started = children()
    assert 1 <= len(started) <= 2, (
        f"crawl(..., processes=2) must fetch in a Pool(2) of worker processes, not in "
        f"this process; {len(started)} process(es) were started"
    )


def test_crawl_closes_and_joins_its_pool(kata, site):
    url = site.url("/bytes/7")
    (pages, errors), unclosed = _call_and_catch_unclosed_pool(lambda: kata.crawl([url], 2))
    assert (pages, errors) == ({url: 7}, {}), f"got {pages!r}, {errors!r}"
    if unclosed:
        raise fail_as(
            "leak",
            "crawl() returned with its Pool still running. close() it, then join() it",
        )
