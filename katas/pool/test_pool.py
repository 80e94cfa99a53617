"""Tests for the pool kata. Each test checks one clause of the contract in pool.py."""

from __future__ import annotations

import copy
import math
import operator
import re
import shutil
import time
import urllib.error
import urllib.request

import pytest

from pytest_katas import Gate, any_start_method, children, fail_as, observed, patience

# What spawn and forkserver change is what a worker inherits: it imports the learner's
# module anew, so a global the parent set at run time is unset there. squares, gather and
# crawl are each run whole under the start method chosen once (the tests without a
# decorator); the others' verdicts do not depend on it: @any_start_method starts their
# pools with fork, three times cheaper.


def _describe(func, arg) -> str:
    """What gather() must record for func(arg), computed here so it fits any Python."""
    try:
        func(arg)
    except Exception as exc:  # noqa: BLE001 - any failure is the point
        return f"{type(exc).__name__}: {exc}"
    raise AssertionError(f"{func.__name__}({arg!r}) was expected to fail")


def _fetch_here(url: str) -> str:
    """What crawl() must record for a url that fails, fetched here in the test process."""
    try:
        with urllib.request.urlopen(url, timeout=5):
            pass
    except urllib.error.HTTPError as exc:
        exc.close()
        return f"{type(exc).__name__}: {exc}"
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    raise AssertionError(f"{url} was expected to fail")


def _check_message(what: str, got: str, expected: str) -> None:
    """A message must be exactly ``f"{type(exc).__name__}: {exc}"``."""
    if got == expected:
        return
    kind, _, text = expected.partition(": ")
    if got == text:
        raise fail_as(
            "wrong",
            f"the message for {what} is {got!r}: that is str(exc) alone. The contract asks "
            f'for the exception\'s type first, f"{{type(exc).__name__}}: {{exc}}": {expected!r}',
        )
    raise fail_as(
        "wrong",
        f'the message for {what} must be f"{{type(exc).__name__}}: {{exc}}" of the '
        f"exception, {expected!r}; got {got!r}",
    )


def _pools_opened_by(kata, call):
    """Run call(); return (its value, the pools it made: the calls made on each, in order)."""
    before = len(observed(kata).events("pool"))
    value = call()
    pools: list[list] = []
    current: dict[str, list] = {}
    for event in observed(kata).events("pool")[before:]:
        if event.extra == "open" or event.obj not in current:
            current[event.obj] = []
            pools.append(current[event.obj])
        if event.extra != "open":
            current[event.obj].append(event)
    return value, pools


def _check_closed_and_joined(kata, what: str, pools: list[list]) -> None:
    """Every pool the call made was closed, then joined, before the call returned. (A call
    that made no Pool at all is the business of the tests of the workers.)"""
    seen = observed(kata)
    for events in pools:
        names = [e.extra for e in events]
        closed = names.index("close") if "close" in names else None
        if closed is not None and "join" in names[closed:]:
            continue
        if "terminate" in names:
            end = events[names.index("terminate")]
            how = ""
            if end.site is not None and end.site.source().startswith("with "):
                how = ", as a `with Pool(...)` block does on the way out"
            did = (
                "closed its pool but never joined it: it ended the pool"
                if closed is not None
                else "ended its pool"
            )
            raise fail_as(
                "contract",
                f"{what} {did} with terminate() ({seen.line(end.site)}{how}), "
                "not with close() then join(): terminate() stops the workers at once, "
                "whatever they are doing. The contract: close the pool, then join it, "
                "before returning",
            )
        if closed is not None:
            raise fail_as(
                "leak",
                f"{what} closed its pool ({seen.line(events[closed].site)}) but never joined "
                "it: it returned without waiting for the pool's workers to exit. join() after "
                "close() waits until every task is done and every worker has exited",
            )
        raise fail_as(
            "leak",
            f"{what} returned with its pool still running: it was never closed nor joined. "
            "Call close(), then join(), before returning",
        )


def _most_workers_alive_at_once(kata) -> int:
    """How many worker processes (not a Manager's server) were alive at the same moment."""
    roles = {child.name: child.role for child in children("any")}
    alive: set[str] = set()
    most = 0
    for event in observed(kata).history.events:
        if event.op == "pstart" and roles.get(event.extra) != "manager":
            alive.add(event.obj)
            most = max(most, len(alive))
        elif event.op in ("pend", "pjoin"):
            alive.discard(event.obj)
    return most


def _check_workers(kata, what: str, processes: int) -> None:
    """The work was done in a multiprocessing.Pool of at most ``processes`` workers."""
    if not any(e.extra == "open" for e in observed(kata).events("pool")):
        raise fail_as(
            "contract",
            f"{what} made no multiprocessing.Pool: the contract asks for the work to be done "
            "in a multiprocessing.Pool (not a concurrent.futures executor, not processes of "
            "your own)",
        )
    if not children():
        raise fail_as(
            "contract",
            f"{what} started no worker process: the work must be done by the pool's workers",
        )
    most = _most_workers_alive_at_once(kata)
    if most > processes:
        raise fail_as(
            "contract",
            f"{what} had {most} worker processes alive at the same time; the contract "
            f"allows {processes}: a Pool(processes) of that many workers",
        )


def _check_each_arg_once(args: list, results: dict, errors: dict, what: str = "arg") -> None:
    both = set(results) & set(errors)
    if both:
        raise fail_as("lost", f"{what}(s) in both dicts, counted twice: {sorted(map(repr, both))}")
    missing = [arg for arg in args if arg not in results and arg not in errors]
    extra = [key for key in (*results, *errors) if key not in args]
    if missing and extra:
        raise fail_as(
            "wrong",
            f"{len(missing)} of {len(args)} {what}(s) are in neither dict, and there are "
            f"{len(extra)} key(s) that were never passed in, e.g. {extra[0]!r}: each outcome "
            f"must be recorded under the very {what} that was submitted (a copy of it, such as "
            "one that went to a worker and came back, is a different object)",
        )
    if missing:
        raise fail_as(
            "lost",
            f"{len(missing)} of {len(args)} {what}(s) are in neither dict, e.g. "
            f"{', '.join(map(repr, missing[:4]))}: every task must end in one of them before "
            "the function returns, its value through the callback or its failure through "
            "the error_callback",
        )
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


@any_start_method
def test_squares_closes_and_joins_its_pool(kata):
    _, pools = _pools_opened_by(kata, lambda: kata.squares([1, 2, 3], processes=2))
    _check_closed_and_joined(kata, "squares([1, 2, 3])", pools)


def test_squares_returns_each_square_in_input_order(kata):
    numbers = [7, -3, 0, 12, 5, -11, 2, 9, 1, 30, -8, 4, *range(500, 100, -2)]
    _check_squares(numbers, kata.squares(numbers, processes=2))
    # The right order can come by luck; only Pool.map promises it every time.
    used = {e.extra for e in observed(kata).events("pool")} - {"open", "close", "join", "terminate"}
    if used and not used & {"map", "map_async"}:
        raise fail_as(
            "contract",
            f"squares() gave the pool its work with {', '.join(sorted(used))}, not Pool.map: "
            "the squares came back in order this time, but only map promises the input "
            "order whatever order the workers finish in",
        )


@any_start_method
def test_squares_of_an_empty_list_is_an_empty_list(kata):
    assert kata.squares([], processes=2) == [], "no numbers, no squares"


@any_start_method
def test_squares_works_in_a_pool_of_worker_processes(kata):
    _check_squares(list(range(20)), kata.squares(list(range(20)), processes=2))
    _check_workers(kata, "squares(..., processes=2)", 2)


# -- task 2: gather ----------------------------------------------------------------------


@any_start_method
def test_gather_closes_and_joins_its_pool(kata):
    # Once when every task succeeds, once when some fail: the pool is closed and joined
    # on every path.
    _, pools = _pools_opened_by(kata, lambda: kata.gather(abs, [-3, 2, -1], processes=2))
    _check_closed_and_joined(kata, "gather(abs, [-3, 2, -1])", pools)
    _, pools = _pools_opened_by(kata, lambda: kata.gather(int, ["1", "x", "2"], processes=2))
    _check_closed_and_joined(kata, 'gather(int, ["1", "x", "2"]), where int("x") fails,', pools)


def test_gather_records_every_result_under_its_arg(kata):
    args = [0, 1, 4, 9, 16, 2.25, 100]
    results, errors = kata.gather(math.sqrt, args, processes=2)
    assert errors == {}, f"no task failed, but errors is {errors!r}"
    _check_each_arg_once(args, results, errors)
    assert results == {arg: math.sqrt(arg) for arg in args}, (
        f"results must map each arg to math.sqrt(arg); got {results!r}"
    )
    # A second call, with args that are equal only to themselves (as a copy of one is not).
    tokens = [object() for _ in range(4)]
    again, errors = kata.gather(operator.truth, [*tokens, 5], processes=2)
    left_over = [key for key in (*again, *errors) if key in args]
    if left_over:
        raise fail_as(
            "wrong",
            f"the second call of gather() returned keys of the first call: "
            f"{sorted(map(repr, left_over))}. Each call returns the results and errors of "
            "its own args only: start with empty dicts every time",
        )
    _check_each_arg_once([*tokens, 5], again, errors)
    assert not errors and all(again[key] is True for key in (*tokens, 5)), (
        f"operator.truth of each arg is True; got {again!r}, errors {errors!r}"
    )


@any_start_method
def test_gather_records_each_failure_as_its_type_and_message(kata):
    args = ["12", "x", "-7", "", "3.5", "0"]
    results, errors = kata.gather(int, args, processes=2)
    failing = ("x", "", "3.5")
    unheard = [arg for arg in failing if arg not in errors and arg not in results]
    if unheard:
        raise fail_as(
            "lost",
            f"int() raised for {', '.join(map(repr, unheard))}, yet neither dict has it: a "
            "task that raises never reaches the callback, only the error_callback",
        )
    for arg in failing:
        assert arg in errors, f"int({arg!r}) raised, so {arg!r} belongs in errors; got {errors!r}"
        _check_message(f"int({arg!r})", errors[arg], _describe(int, arg))
    assert set(errors) == set(failing), f"only the args int() fails on; errors is {errors!r}"


@any_start_method
def test_gather_puts_every_arg_in_exactly_one_dict(kata):
    args = [4, -1, 9, -4, 0, -0.5, 2.25, -9]
    results, errors = kata.gather(math.sqrt, args, processes=2)
    _check_each_arg_once(args, results, errors)
    assert set(errors) == {-1, -4, -0.5, -9}, f"the negative args fail; errors is {errors!r}"


@any_start_method
def test_gather_returns_only_after_every_task_has_finished(kata):
    # time.sleep returns None after the pause, and a negative pause raises ValueError.
    args = [0.2, 0.1, -1, 0.3, 0.0]
    results, errors = kata.gather(time.sleep, args, processes=2)
    _check_each_arg_once(args, results, errors)
    assert results == {0.2: None, 0.1: None, 0.3: None, 0.0: None}, f"got {results!r}"
    assert errors == {-1: _describe(time.sleep, -1)}, f"got {errors!r}"


@pytest.mark.kata_stress_budget(1.0)
@any_start_method
def test_gather_never_returns_before_the_last_callback_has_run(kata, kata_stress):
    args = [str(n) for n in range(12)] + ["x", "y"]

    def scenario():
        results, errors = kata.gather(int, args, processes=2)
        return len(results), len(errors)

    def check(outcome):
        if outcome != (12, 2):
            return (
                f"expected 12 results and 2 errors, got {outcome[0]} and {outcome[1]}: "
                "gather() returned before every task had ended in one of its dicts"
            )
        return None

    kata_stress.run(scenario, check, kind="lost", min_runs=2, max_runs=4)


@pytest.mark.kata_timeout(20)
@any_start_method
def test_gather_runs_its_tasks_at_the_same_time(kata):
    # Three handles on ONE gate, a barrier for processes: each task waits there until all
    # three are waiting. Run one at a time, the first task gives up and breaks it: at once
    # if the code that hands out the tasks waits in Pool.apply() for it to end (then the
    # others cannot come), else after 2 s (longer on a busy machine).
    gate = Gate(3, timeout=patience(2.0), in_vain_while=("apply",))
    handles = [copy.copy(gate) for _ in range(3)]
    try:
        results, errors = kata.gather(operator.methodcaller("wait"), handles, processes=3)
    finally:
        shutil.rmtree(gate.folder, ignore_errors=True)
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
    used = {e.extra for e in observed(kata).events("pool")}
    if "apply_async" not in used:
        raise fail_as(
            "contract",
            "the tasks ran at the same time, but not through Pool.apply_async: the contract "
            "asks for a multiprocessing.Pool, every task submitted with apply_async and its "
            "callbacks",
        )


# -- task 3: crawl -----------------------------------------------------------------------


@any_start_method
def test_crawl_closes_and_joins_its_pool(kata, site):
    ok, missing = site.url("/bytes/7"), site.url("/missing")
    _, pools = _pools_opened_by(kata, lambda: kata.crawl([ok], 2))
    _check_closed_and_joined(kata, f"crawl([{ok!r}])", pools)
    _, pools = _pools_opened_by(kata, lambda: kata.crawl([ok, missing], 2))
    _check_closed_and_joined(kata, "crawl() of a page and a missing page", pools)


def test_crawl_measures_each_page_in_bytes(kata, site):
    sizes = (0, 1, 1000, 65536)
    chunked = site.url("/chunked/5000")
    urls = [site.url(f"/bytes/{n}") for n in sizes] + [site.url("/zh"), chunked]
    pages, errors = kata.crawl(urls, processes=2)
    zh = len(site.zh_text.encode("utf-8"))
    if pages.get(site.url("/zh")) == len(site.zh_text):
        raise fail_as(
            "wrong",
            f"the Chinese page is {zh} bytes of UTF-8 but was counted as {len(site.zh_text)}: "
            "that is the length of the decoded text. Measure the bytes read()",
        )
    if pages.get(chunked) != 5000:
        seen = (
            f"is in errors as {errors[chunked]!r}"
            if chunked in errors
            else (f"was counted as {pages.get(chunked)!r}")
        )
        raise fail_as(
            "wrong",
            f"{chunked} answered 200 with a body of 5000 bytes, sent in chunks with no "
            f"Content-Length header, but it {seen}. The length of a page is the number of "
            "bytes read() returns",
        )
    assert errors == {}, f"every page answered 200, but errors is {errors!r}"
    expected = {
        **{site.url(f"/bytes/{n}"): n for n in sizes},
        site.url("/zh"): zh,
        chunked: 5000,
    }
    assert pages == expected, f"expected {expected!r}, got {pages!r}"


@any_start_method
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
    _check_message(f"{missing} (404)", errors[missing], _fetch_here(missing))
    _check_message(f"{boom} (500)", errors[boom], _fetch_here(boom))


@any_start_method
def test_crawl_reports_a_refused_connection_as_an_error(kata, site):
    ok = site.url("/bytes/3")
    pages, errors = kata.crawl([site.dead, ok], processes=2)
    _check_each_arg_once([site.dead, ok], pages, errors, what="url")
    assert pages == {ok: 3}, f"got pages {pages!r}"
    _check_message(f"{site.dead} (refused)", errors[site.dead], _fetch_here(site.dead))


@pytest.mark.kata_timeout(8)
@any_start_method
def test_crawl_gives_up_on_a_page_that_never_answers(kata, site):
    # /stall says nothing at all; /stall-body sends its headers and a little of its body,
    # then nothing: urlopen() has returned, and it is read() that must give up.
    stall, halfway, ok = site.url("/stall"), site.url("/stall-body"), site.url("/bytes/5")
    pages, errors = kata.crawl([stall, halfway, ok], processes=3)
    for url, how in ((stall, "never answers"), (halfway, "stops halfway through its body")):
        if url in pages:  # the site gave up first: it answers a stalled fetch after a while
            raise fail_as(
                "hang",
                f"crawl() waited for {url}, a page that {how}, until the site itself gave up "
                f"after {site.stall_limit:g} s: a fetch with no timeout waits for ever. Give "
                "every urlopen() timeout=TIMEOUT, and the page ends in errors as a timeout",
            )
    if halfway not in errors and stall in errors:
        sent, size = site.body_stall
        raise fail_as(
            "lost",
            f"{halfway} answered 200 and sent {sent} of its {size} bytes, then nothing, and it "
            f"is in neither dict, while {stall}, which never answered, is in errors: the fetch "
            "failed after urlopen() returned, and the failure was lost. With a timeout, read() "
            "raises TimeoutError too: catch what read() raises as well as urlopen(), and send "
            f"back its message. errors is {errors!r}",
        )
    _check_each_arg_once([stall, halfway, ok], pages, errors, what="url")
    assert pages == {ok: 5}, f"got pages {pages!r}"
    # Where the wait ran out decides the exception: URLError or TimeoutError.
    for url in (stall, halfway):
        assert re.fullmatch(r"\w+: .*timed out.*", errors[url]), (
            f"expected 'ExceptionType: ... timed out' for {url}, got {errors[url]!r}"
        )


@any_start_method
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
    pages, errors = kata.crawl(urls, processes=2)
    _check_each_arg_once(urls, pages, errors, what="url")
    assert set(pages) == {urls[0], urls[3], urls[5], urls[7]}, f"got pages {pages!r}"


@pytest.mark.kata_timeout(20)
@any_start_method
def test_crawl_fetches_pages_at_the_same_time(kata, site):
    # Each /meet page ends only once all three are being fetched at the same moment.
    # Fetched one at a time, the first gives up waiting for the others after 2 seconds
    # (longer on a busy machine).
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


@any_start_method
def test_crawl_fetches_in_worker_processes(kata, site):
    urls = [site.url(f"/bytes/{n}") for n in range(1, 5)]
    pages, errors = kata.crawl(urls, processes=2)
    assert pages == {url: n for n, url in enumerate(urls, 1)} and not errors, (
        f"got {pages!r}, {errors!r}"
    )
    _check_workers(kata, "crawl(..., processes=2)", 2)
