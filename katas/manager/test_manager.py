"""Tests for the manager kata. Each test checks one clause of the contract in manager.py."""

from __future__ import annotations

import os
from collections import Counter

import pytest

from pytest_katas import children, fail_as


def _servers() -> list:
    """The Manager server processes started so far (infrastructure, not workers)."""
    return children(role="manager")


def _not_joined(started) -> list:
    """Children that still exist: running, or exited but never waited for (zombies)."""
    left = []
    for child in started:
        try:
            os.kill(child.pid, 0)
        except ProcessLookupError:
            continue
        left.append(child)
    return left


def _fail_if(problem: str | None, kind: str) -> None:
    if problem is not None:
        raise fail_as(kind, problem)


def _check_count(start: int, workers: int, got: object) -> None:
    # Too high: updates lost or workers unfinished, both a matter of timing. Too low: wrong.
    _fail_if(_count_problem(start, workers, got), "race" if got > start - workers else "wrong")


def _an_int(got: object) -> object:
    if not isinstance(got, int) or isinstance(got, bool):
        raise fail_as("wrong", f"count_down() must return the final count as an int, not {got!r}")
    return got


def _a_dict(got: object) -> object:
    if not isinstance(got, dict):
        raise fail_as(
            "wrong",
            f"tally() must return a plain dict, not a {type(got).__name__}: a Manager proxy "
            "is only a handle on the manager's copy, and it stops working when the manager "
            "shuts down. Copy it with dict(...) before you leave the Manager's with block",
        )
    return got


def _count_problem(start: int, workers: int, got: object) -> str | None:
    expected = start - workers
    _an_int(got)
    if got == expected:
        return None
    if got > expected:
        return (
            f"{workers} processes each subtracted 1 from {start}, so the count should end "
            f"at {expected}; it ended at {got}: {got - expected} subtraction(s) are missing. "
            "Either updates were lost (`d['count'] -= 1` on a Manager proxy is a read, then "
            "a separate write: two workers can read the same value unless ONE shared Lock "
            "is held around both), or the count was read before every worker had finished "
            "(join them all first)"
        )
    return (
        f"{workers} processes each subtracting 1 once from {start} should leave {expected}; "
        f"the count went down to {got}: some worker subtracted more than once"
    )


def _tally_problem(words: list[str], got: object) -> str | None:
    _a_dict(got)
    want = Counter(words)
    if got == want:
        return None
    low = {w: (got.get(w, 0), n) for w, n in want.items() if got.get(w, 0) < n}
    high = {w: (got.get(w, 0), n) for w, n in want.items() if got.get(w, 0) > n}
    extra = sorted(set(got) - set(want), key=repr)
    if low:
        shown = ", ".join(f"{w!r} {have} of {n}" for w, (have, n) in list(low.items())[:4])
        return (
            f"words went uncounted ({shown}). If the totals differ from run to run, updates "
            "were lost: `d[w] = d.get(w, 0) + 1` is a read and then a write, and both must "
            "happen under the same Lock, with no release in between. If they never differ, "
            "some words were never given to any worker"
        )
    if high:
        shown = ", ".join(f"{w!r} {have} of {n}" for w, (have, n) in list(high.items())[:4])
        return f"words were counted too often ({shown}): is a word given to two workers?"
    return f"tally() returned keys that are not among the words: {extra[:5]!r}"


# -- task 1: count_down ----------------------------------------------------------------


def test_count_down_returns_start_minus_workers(kata):
    _check_count(10, 3, kata.count_down(start=10, workers=3))


def test_count_down_with_no_workers_returns_start(kata):
    got = _an_int(kata.count_down(start=5, workers=0))
    if got != 5:
        raise fail_as(
            "wrong", f"with no workers nothing subtracts: count_down(5, 0) must be 5, not {got}"
        )


def test_count_down_loses_no_update_under_contention(kata, kata_stress):
    # Twelve workers are plenty once the stress loop widens the gap between read and write;
    # fifty would take seconds per run under spawn.
    # Under the controlled scheduler two workers are enough: it tries their interleavings.
    start, workers = (4, 2) if kata_stress.controlled else (30, 12)
    kata_stress.run(
        lambda: _an_int(kata.count_down(start=start, workers=workers)),
        lambda got: _count_problem(start, workers, got),
        kind="race",
        min_runs=1,
        max_runs=10,
    )


def test_count_down_keeps_the_count_in_a_manager_dict(kata):
    kata.count_down(start=6, workers=2)
    servers = _servers()
    assert len(servers) == 1, (
        f"count_down() must keep the count in a dict made by ONE multiprocessing.Manager(); "
        f"it started {len(servers)} manager server process(es)"
    )


@pytest.mark.kata_timeout(30)  # fifty spawned interpreters take a while on a busy machine
def test_count_down_by_default_starts_fifty_workers_on_a_count_of_a_hundred(kata):
    got = kata.count_down()
    workers = children()
    assert len(workers) == 50, (
        f"count_down() must start workers=50 worker processes by default (besides the "
        f"Manager's server); it started {len(workers)}"
    )
    _check_count(100, 50, got)


def test_count_down_joins_every_worker_before_returning(kata):
    kata.count_down(start=12, workers=6)
    left = _not_joined(children())
    if left:
        names = ", ".join(f"{c.name} (pid {c.pid})" for c in left)
        raise fail_as(
            "leak",
            f"count_down() returned while {len(left)} worker(s) had not been joined: "
            f"{names}. Until join() returns, a worker may not have subtracted yet, so the "
            "count is not final; join() every process you started before you read it",
        )


# -- task 2: tally ---------------------------------------------------------------------


def test_tally_counts_every_word(kata):
    words = ["to", "be", "or", "not", "to", "be"]
    _fail_if(_tally_problem(words, kata.tally(words, workers=2)), "lost")


def test_tally_returns_a_plain_dict(kata):
    words = ["x", "y", "x"]
    got = _a_dict(kata.tally(words, workers=2))
    _fail_if(_tally_problem(words, got), "lost")


def test_tally_of_no_words_is_an_empty_dict(kata):
    got = _a_dict(kata.tally([], workers=3))
    assert got == {}, f"tally([]) must be {{}}, not {got!r}"


def test_tally_with_more_workers_than_words(kata):
    _fail_if(_tally_problem(["solo"], kata.tally(["solo"], workers=4)), "lost")


def test_tally_counts_every_word_when_workers_do_not_divide_them_evenly(kata):
    words = [f"w{n}" for n in range(11)] + ["w0"]  # 12 words: 5 workers get 3, 3, 2, 2, 2
    _fail_if(_tally_problem(words, kata.tally(words, workers=5)), "lost")
    words = [f"v{n}" for n in range(11)]  # 11 words over 3 workers
    _fail_if(_tally_problem(words, kata.tally(words, workers=3)), "lost")


def test_tally_loses_no_update_under_contention(kata, kata_stress):
    # Few distinct words, many of each: the workers keep updating the same keys.
    # Under the controlled scheduler: two workers, one word each, the same word, so that
    # every interleaving of their read-then-write of it is tried.
    words, workers = (["a", "a"], 2) if kata_stress.controlled else (["a", "b"] * 10, 3)

    kata_stress.run(
        lambda: _a_dict(kata.tally(words, workers=workers)),
        lambda got: _tally_problem(words, got),
        kind="race",
        min_runs=2,
    )


def test_tally_uses_one_manager_and_one_process_per_worker(kata):
    kata.tally(["p", "q", "p", "r", "q", "p"], workers=3)
    servers, workers = _servers(), children()
    assert len(servers) == 1, (
        f"tally() must share ONE multiprocessing.Manager() dict between its workers; it "
        f"started {len(servers)} manager server process(es)"
    )
    assert len(workers) == 3, (
        f"tally(workers=3) must start 3 worker processes (besides the Manager's server); "
        f"it started {len(workers)}"
    )
