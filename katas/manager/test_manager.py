"""Tests for the manager kata. Each test checks one clause of the contract in manager.py
(the clauses are numbered in README.md, "The contract")."""

from __future__ import annotations

import os
from collections import Counter

import pytest

from pytest_katas import (
    any_start_method,
    children,
    fail_as,
    fresh_start_method,
    observed,
    start_method,
)

# What spawn and forkserver change is what a child inherits: a spawned child, or a
# forkserver's, imports the learner's module anew. The tests that check it run under the
# start method chosen (test_count_down_workers_share_one_lock_made_by_count_down under
# spawn too when that is fork); count_down and tally are each run whole under it once more
# (a worker that needs a global the parent set fails there); and so is the check of each
# worker's own write (a spawned worker of a count_down that does not join may not have
# started yet when it returns). The others' verdicts do not depend on it: @any_start_method
# starts their processes with fork, three times cheaper.


def _servers() -> list:
    """The Manager server processes started so far (infrastructure, not workers)."""
    return children(role="manager")


def _alive(started) -> list:
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


# -- what the trace shows ----------------------------------------------------------------


def _seen(kata):
    """The trace so far, or None when --kata-trace=off turned it off."""
    try:
        return observed(kata)
    except pytest.skip.Exception:
        return None


def _proxy_key(obj: str) -> str | None:
    """The key of a Manager proxy access (``m3@1a2b['count']`` -> ``'count'``), else None.
    ``update()`` writes every key at once: its key is ``'*'``."""
    if not obj.startswith("m") or not obj.endswith("]") or "[" not in obj:
        return None
    return obj[obj.index("[") + 1 : -1]


def _proxy_writes(seen, pid: int | None = None, key: str | None = None) -> list:
    """Writes through a Manager dict proxy (by ``pid``; to ``key`` or by update())."""
    found = []
    for event in seen.events("write", pid=pid):
        where = _proxy_key(event.obj)
        if where is not None and (key is None or where in (repr(key), "'*'")):
            found.append(event)
    return found


def _proxy_touches(seen, key: str) -> list:
    return [
        e
        for op in ("read", "write")
        for e in seen.events(op)
        if _proxy_key(e.obj) in (repr(key), "'*'")
    ]


_COPY = (
    "a plain dict is not shared between processes: each worker changes its own copy, and "
    "count_down's copy never changes. Keep the count in manager.dict() and hand that proxy "
    "to the workers"
)


def _count_problem(kata, start: int, workers: int, got: object) -> tuple[str, str] | None:
    """(class, what was seen) when count_down's result is not ``start - workers``.
    The trace says why, when it can: a worker left running, no update through the
    Manager at all (a copy, every update lost, every run: not a race), or lost updates."""
    expected = start - workers
    _an_int(got)
    if got == expected:
        return None
    if got < expected:
        return "wrong", (
            f"{workers} processes each subtracting 1 once from {start} should leave "
            f"{expected}; the count went down to {got}: some worker subtracted more than once"
        )
    missing = f"the count should end at {expected}; it ended at {got}"
    left = _alive(children())
    if left:
        return "leak", (
            f"{missing}, and count_down() returned while {len(left)} of its {workers} "
            "worker(s) had not been joined: until join() returns a worker may not have "
            "subtracted yet. join() every process you started before you read the count"
        )
    seen = _seen(kata)
    if seen is not None and seen.history.events:
        workers_pids = {p.pid for p in seen.children()}
        wrote = [e for e in _proxy_writes(seen, key="count") if e.pid in workers_pids]
        if not wrote:
            return "wrong", (
                f"{missing}: not one subtraction reached it, and no worker wrote 'count' "
                f"through a Manager dict. {_COPY[0].upper()}{_COPY[1:]}"
            )
    return "race", (
        f"{workers} processes each subtracted 1 from {start}, so {missing}: "
        f"{got - expected} subtraction(s) were lost. `d['count'] -= 1` on a Manager proxy is "
        "a read, then a separate write: two workers can read the same value unless ONE "
        "shared Lock is held from the read to the write"
    )


def _check_count(kata, start: int, workers: int, got: object) -> None:
    found = _count_problem(kata, start, workers, got)
    if found is not None:
        raise fail_as(*found)


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


def _tally_copy_problem(kata, words: list[str], got: dict) -> str | None:
    """Every count missing and no worker wrote through a Manager dict: a plain dict."""
    seen = _seen(kata)
    if not words or seen is None or not seen.history.events:
        return None
    pids = {p.pid for p in seen.children()}
    if any(e.pid in pids for e in _proxy_writes(seen)):
        return None
    busy = [e for op in ("acq", "read", "call") for e in seen.events(op) if e.pid in pids]
    if not busy:
        return None  # the workers did nothing at all: were they given no words?
    return (
        f"tally() returned {got!r} for {len(words)} word(s): the workers were busy, but not "
        "one of them wrote to a Manager dict. A plain dict is not shared between processes: "
        "each worker counted into its own copy. Count into manager.dict() and hand that "
        "proxy to the workers"
    )


def _check_tally(kata, words: list[str], got: object) -> None:
    problem = _tally_problem(words, got)
    if problem is not None:
        _fail_if(_tally_copy_problem(kata, words, got), "wrong")
        raise fail_as("lost", problem)


def _guarded(seen, pid: int, key: str) -> list[tuple[object, set[str]]]:
    """Each write of ``key`` by ``pid``, with the locks held from the read before it
    (if any) to the write: acquired before the read, not released in between."""
    held: dict[str, list[int]] = {}  # lock -> when each still-held acquire happened
    read_at: int | None = None
    found = []
    for event in seen.history.processes[pid].events:
        if event.op == "acq":
            held.setdefault(event.obj, []).append(event.order)
        elif event.op == "rel" and held.get(event.obj):
            held[event.obj].pop()
        elif event.op == "read" and _proxy_key(event.obj) == repr(key):
            read_at = event.order
        elif event.op == "write" and _proxy_key(event.obj) in (repr(key), "'*'"):
            since = event.order if read_at is None else read_at
            locks = {lock for lock, times in held.items() if times and times[0] < since}
            found.append((event, locks))
            read_at = None
    return found


def _lock_made(seen, lock: str):
    """The event that made ``lock`` (a multiprocessing lock), or None (a Manager's)."""
    return next((e for e in seen.events("lock") if e.obj == lock), None)


# -- task 1: count_down ----------------------------------------------------------------


@any_start_method
def test_count_down_shuts_its_manager_down(kata):
    kata.count_down(start=3, workers=0)
    running = _alive(_servers())
    if running:
        names = ", ".join(f"pid {c.pid}" for c in running)
        raise fail_as(
            "leak",
            f"count_down() returned with its Manager's server process still running ({names}). "
            "Shut the manager down before you return: `with multiprocessing.Manager() as "
            "manager:` does it, even when something goes wrong",
        )


@any_start_method
def test_count_down_with_no_workers_returns_start(kata):
    got = _an_int(kata.count_down(start=5, workers=0))
    if got != 5:
        raise fail_as(
            "wrong", f"with no workers nothing subtracts: count_down(5, 0) must be 5, not {got}"
        )


@any_start_method
def test_count_down_joins_every_worker_before_returning(kata):
    kata.count_down(start=4, workers=1)
    left = _alive(children())
    if left:
        names = ", ".join(f"{c.name} (pid {c.pid})" for c in left)
        raise fail_as(
            "leak",
            f"count_down() returned while {len(left)} worker(s) had not been joined: "
            f"{names}. Until join() returns, a worker may not have subtracted yet, so the "
            "count is not final; join() every process you started before you read it",
        )


@any_start_method
def test_count_down_keeps_the_count_in_one_manager_dict(kata):
    got = kata.count_down(start=6, workers=1)
    servers = _servers()
    if len(servers) != 1:
        raise fail_as(
            "contract",
            f"count_down() must keep the count in a dict made by ONE multiprocessing.Manager(); "
            f"it started {len(servers)} manager server process(es)",
        )
    seen = _seen(kata)
    if seen is None or _proxy_touches(seen, "count"):
        return
    raise fail_as(
        "wrong" if got != 5 else "contract",
        f"count_down(6, 1) returned {got!r}, and no process read or wrote 'count' through a "
        f"Manager dict: the count was not kept in one. {_COPY[0].upper()}{_COPY[1:]}",
    )


def test_count_down_workers_each_subtract_through_the_manager_dict(kata):
    kata.count_down(start=6, workers=1)
    seen = _seen(kata)
    if seen is None:
        return
    for worker in seen.children():
        if _proxy_writes(seen, worker.pid, "count"):
            continue
        if worker.ended_ts is None or worker.raised:
            # Still at work, or it crashed (a worker not joined finds its Manager shut
            # down): the crash, or that it was not joined, is another test's to say.
            continue
        others = [e for e in _proxy_writes(seen, key="count") if e.pid != worker.pid]
        by = sorted({f"{seen.name(e.pid)} at {seen.line(e.site)}" for e in others})
        who = f"; it was written only by {', '.join(by)}" if by else ""
        read = "read 'count' but never" if seen.events("read", pid=worker.pid) else "never"
        raise fail_as(
            "contract",
            f"{seen.name(worker.pid)} {read} wrote it through the Manager dict{who}. "
            "Each worker must subtract 1 from d['count'] itself: the point is many "
            "processes updating one shared dict",
        )


def test_count_down_workers_share_one_lock_made_by_count_down(kata, kata_stress):
    # Under forkserver (or spawn) a child inherits nothing and imports the module anew: a
    # lock it was not handed is not the one count_down made, whatever the start method.
    # One run, in one fixed schedule: the same trace (and table) every time.
    with start_method(fresh_start_method()):
        count_down = kata.count_down  # imports the module: what it makes now, it made early
        early = _seen(kata)
        made_early = {e.site for e in early.events("lock")} if early is not None else set()
        kata_stress.once(lambda: count_down(start=5, workers=3))
    seen = _seen(kata)
    if seen is None:
        return
    me = seen.test_process().pid
    held: dict[int, set[str]] = {}
    for worker in seen.children():
        for write, locks in _guarded(seen, worker.pid, "count"):
            if not locks:
                raise fail_as(
                    "race",
                    f"{seen.name(worker.pid)} wrote 'count' at {seen.line(write.site)} holding "
                    "no lock from its read to its write: another worker can write in between, "
                    "and one subtraction is lost",
                )
            held[worker.pid] = held.get(worker.pid, locks) & locks
    if len(held) < 2:
        return  # the other tests say what is missing
    shared = set.intersection(*held.values())
    for lock in sorted(shared):
        made = _lock_made(seen, lock)
        if made is None or (made.pid == me and made.site not in made_early):
            return  # a Manager lock, or one count_down made: one lock for everyone
    made = [_lock_made(seen, lock) for locks in held.values() for lock in locks]
    at = sorted({seen.line(e.site) for e in made if e is not None})
    where = f" (made at {', '.join(at)})" if at else ""
    if any(e is not None and e.site in made_early for e in made):
        failure = fail_as(
            "race",
            f"the workers took a Lock made when your module was imported{where}, not one "
            "that count_down made and handed to them. Under spawn and forkserver each child "
            "imports the module again, so a module-level lock is a different lock in every "
            "child and protects nothing (fork hides this: its children inherit the parent's). "
            "Make the Lock in count_down and pass it to each Process",
        )
        failure.traced = True  # what the trace's race report would not say: why
        raise failure
    raise fail_as(
        "race",
        f"the workers did not all hold the same lock around their update{where}: each had a "
        "lock of its own, and a lock protects only against processes that take the SAME lock. "
        "Make ONE Lock in count_down and pass it to every worker",
    )


# One preemption is all a lost update needs (a worker stopped between its read and its
# write); a bound of one proves that in 15 schedules of the reference instead of 24, and
# each schedule starts a Manager and two workers.
@pytest.mark.kata_preemptions(1)
@any_start_method
def test_count_down_loses_no_update_under_contention(kata, kata_stress):
    # Twelve workers are plenty once the stress noise widens the gap between read and write.
    # Under the controlled scheduler two workers are enough: it tries their interleavings.
    start, workers = (4, 2) if kata_stress.controlled else (30, 12)

    def check(got):
        found = _count_problem(kata, start, workers, got)
        if found is not None and found[0] != "race":
            raise fail_as(*found)
        return found[1] if found else None

    kata_stress.run(
        lambda: _an_int(kata.count_down(start=start, workers=workers)),
        check,
        kind="race",
        min_runs=1,
        max_runs=10,
    )


def test_count_down_returns_start_minus_workers(kata):
    _check_count(kata, 10, 3, kata.count_down(start=10, workers=3))


@pytest.mark.kata_timeout(30)  # fifty interpreters take a while on a busy machine
@any_start_method
def test_count_down_by_default_starts_fifty_workers_on_a_count_of_a_hundred(kata):
    got = kata.count_down()
    workers = children()
    if len(workers) != 50:
        raise fail_as(
            "wrong",
            f"count_down() must start workers=50 worker processes by default (besides the "
            f"Manager's server); it started {len(workers)}",
        )
    _check_count(kata, 100, 50, got)


# -- task 2: tally ---------------------------------------------------------------------


@any_start_method
def test_tally_uses_one_manager_and_one_process_per_worker(kata):
    words = ["p", "q", "r", "s", "t", "u"]  # no word twice: no two workers share a key
    got = kata.tally(words, workers=3)
    servers, workers = _servers(), children()
    if len(servers) != 1:
        raise fail_as(
            "contract",
            f"tally() must share ONE multiprocessing.Manager() dict between its workers; it "
            f"started {len(servers)} manager server process(es)",
        )
    if len(workers) != 3:
        raise fail_as(
            "contract",
            f"tally(workers=3) must start 3 worker processes (besides the Manager's server); "
            f"it started {len(workers)}",
        )
    copy = _tally_copy_problem(kata, words, got)
    if copy is not None:
        raise fail_as("wrong" if got != Counter(words) else "contract", copy)


@any_start_method
def test_tally_returns_a_plain_dict(kata):
    words = ["x", "y", "x", "z"]
    _check_tally(kata, words, _a_dict(kata.tally(words, workers=2)))


def test_tally_counts_every_word(kata):
    words = ["to", "be", "or", "not", "to", "be"]
    _check_tally(kata, words, kata.tally(words, workers=2))


@any_start_method
def test_tally_of_no_words_is_an_empty_dict(kata):
    got = _a_dict(kata.tally([], workers=3))
    assert got == {}, f"tally([]) must be {{}}, not {got!r}"


# One preemption is all a lost update needs (a worker stopped between its read and its
# write); a bound of one proves that in 15 schedules of the reference instead of 24, and
# each schedule starts a Manager and two workers.
@pytest.mark.kata_preemptions(1)
@any_start_method
def test_tally_loses_no_update_under_contention(kata, kata_stress):
    # Few distinct words, many of each: the workers keep updating the same keys.
    # Under the controlled scheduler: two workers, one word each, the same word, so that
    # every interleaving of their read-then-write of it is tried.
    words, workers = (["a", "a"], 2) if kata_stress.controlled else (["a", "b", "a"] * 7, 3)

    kata_stress.run(
        lambda: _a_dict(kata.tally(words, workers=workers)),
        lambda got: _tally_problem(words, got),
        kind="race",
        min_runs=2,
    )


@any_start_method
def test_tally_with_more_workers_than_words(kata):
    _check_tally(kata, ["solo"], kata.tally(["solo"], workers=4))


@any_start_method
def test_tally_counts_every_word_when_workers_do_not_divide_them_evenly(kata):
    words = [f"w{n}" for n in range(7)] + ["w0"]  # 8 words: 3 workers get 3, 3, 2
    _check_tally(kata, words, kata.tally(words, workers=3))
