"""Running one kata test in its sandbox under a deadline and caps, and turning what went wrong
outside an assertion (a hang, a crash, a fork bomb, a flood of output) into a verdict."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import select
import shlex
import sys
import time
import warnings
from typing import TYPE_CHECKING, Final, final

import psutil
import pytest

from pytest_katas import (
    channel,
    crashes,
    findings,
    privilege,
    procs,
    races,
    sandbox,
    stacks,
    tables,
    waits,
)
from pytest_katas.history import History
from pytest_katas.messages import N_, _
from pytest_katas.verdict import Kind, Outcome
from pytest_katas.watchdog import Watchdog

if TYPE_CHECKING:
    from pytest_katas.box import TestGroup

__all__ = ["Limits", "supervise"]

_TICK = 0.02
CRASH_GRACE = 2.0
_CAP_EVERY = 0.05
AUDIT_GRACE = 10.0  # seconds for the audit and leak check once the test body returned


@final
@dataclasses.dataclass(frozen=True)
class Limits:
    timeout: float
    max_processes: int
    max_memory: int  # bytes, resident, summed over the test's processes
    max_output: int  # bytes written to stdout and stderr by all of them
    grace: float = 0.5
    by_pytest_timeout: bool = False  # the deadline is pytest-timeout's (it came first)


@final
class _Watch:
    """The supervisor's view of one running sandbox."""

    def __init__(
        self,
        pid: int,
        spec: sandbox.SandboxSpec,
        limits: Limits,
        group: TestGroup | None = None,
    ) -> None:
        self.pid = pid
        self.group = group
        self.learner = privilege.learner()
        self.spec = spec
        self.limits = limits
        self.started = time.monotonic()
        self.output = 0
        self.status: int | None = None
        self.seen: set[int] = {pid}
        self.reaped: dict[int, int] = {}
        self.first_sample: dict[int, stacks.ProcessStack] = {}
        self.first_sample_at = 0.0
        self.members: list[int] = [pid]
        # A test body that runs apart only waits for the learner process: it cannot wake it.
        oracle = (pid,) if spec.apart else ()
        self.deadlocks = (
            waits.DeadlockWatch(spec.rundir, spec.files, oracle) if spec.tracing else None
        )
        # The deadline in force: limits.timeout, stretched once when it passes on a busy machine.
        self.deadline = limits.timeout
        self.busy_load = 0.0

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def poll_exit(self) -> bool:
        if self.status is None:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.status = status
                self.reaped[self.pid] = procs.from_wait_status(status)
        return self.status is not None

    def forward(self, fds: dict[int, int], timeout: float) -> None:
        """Copy the test's output to ours, counting it against the cap."""
        if not fds:
            time.sleep(timeout)
            return
        ready, _writable, _errors = select.select(list(fds), [], [], timeout)
        for fd in ready:
            data = os.read(fd, 65536)
            if not data:
                del fds[fd]
                continue
            room = self.limits.max_output - self.output
            self.output += len(data)
            if room > 0:
                os.write(fds[fd], data[:room])

    def check_caps(self) -> Outcome | None:
        limits = self.limits
        if self.group is not None and self.group.hit_pid_limit():  # first: one small read
            return _cap(
                _(
                    "the code tried to start more than {limit} processes and threads, and the "
                    "kernel refused"
                ).format(limit=privilege.TASKS_MAX),
                _(_FORK_BOMB),
            )
        members = procs.group_members(self.pid)
        if self.group is not None:  # a process that left the group is still in the cgroup
            members = sorted(set(members) | set(self.group.members()))
        elif self.learner is not None:
            members = sorted(set(members) | set(privilege.members(self.learner)))
        self.members = members
        self.seen.update(members)
        if len(members) > limits.max_processes:
            return _cap(
                _("more than {limit} processes ran at once (kata_max_processes = {limit})").format(
                    limit=limits.max_processes
                ),
                _(_FORK_BOMB),
            )
        if self.output > limits.max_output:
            return _cap(
                _("the code wrote more than {size} of output (kata_max_output = {size})").format(
                    size=_size(limits.max_output)
                ),
                _("Is something printing in an endless loop? Print less, or not in the loop."),
            )
        rss = 0
        for pid in members:
            with contextlib.suppress(psutil.Error):
                rss += psutil.Process(pid).memory_info().rss
        if rss > limits.max_memory:
            return _cap(
                _(
                    "the test's processes used {size} of memory, over the {limit} cap "
                    "(kata_max_memory)"
                ).format(size=_size(rss), limit=_size(limits.max_memory)),
                _("Is a list or a queue growing without end?"),
            )
        return None


_FORK_BOMB: Final = N_(
    "Is a process starting processes in a loop (a fork bomb)? Start a fixed number of "
    "workers, or use a Pool."
)


def _cap(message: str, hint: str) -> Outcome:
    stopped = _("The test was stopped there.")
    return Outcome("failed", Kind.CAP, message, f"{hint}\n{stopped}")


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    value = n / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _fork_sandbox(
    item: pytest.Function, spec: sandbox.SandboxSpec, group: TestGroup | None
) -> tuple[int, int, int]:
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    nonce_r, nonce_w = os.pipe()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "multi-threaded, use of fork()"
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the sandbox; its coverage is its behaviour
        for fd in (out_r, err_r, nonce_w):
            os.close(fd)
        spec.nonce_fd = nonce_r
        if _watchdog is not None:
            _watchdog.forget()
        os.setpgid(0, 0)
        if spec.apart:  # the learner process joins the group and drops to the learner
            sandbox.run_sandbox(item, spec, out_w, err_w, group)
        _enter_learner_side(spec, group)
        sandbox.run_sandbox(item, spec, out_w, err_w)
    for fd in (out_w, err_w, nonce_r):
        os.close(fd)
    # Made after the fork: the sandbox, and any process forked from it, never holds it in
    # memory; the sandbox reads it from the pipe only when it writes the result.
    spec.nonce = secrets.token_hex(16)
    os.write(nonce_w, spec.nonce.encode("ascii"))
    os.close(nonce_w)
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)
    return pid, out_r, err_r


def _enter_learner_side(spec: sandbox.SandboxSpec, group: TestGroup | None) -> None:
    """In the forked test process, while grading: join the test's cgroup, then become the
    learner's user. If either fails the process ends: running learner code as root is
    never the fallback."""
    who = privilege.learner()
    if who is None:
        return
    try:
        if group is not None:
            group.add(os.getpid())
        privilege.become(who, spec.rundir)
    except OSError as exc:  # pragma: no cover - the box was set up for this
        os.write(2, f"katas: could not drop privileges for the test: {exc}\n".encode())
        os._exit(os.EX_NOPERM)


_watchdog: Watchdog | None = None


def close_watchdog() -> None:
    global _watchdog
    if _watchdog is not None:
        _watchdog.close()
        _watchdog = None


def supervise(item: pytest.Function, spec: sandbox.SandboxSpec, limits: Limits) -> Outcome:
    """Run ``item`` in a fresh sandbox and say how it went. Leaves no process behind."""
    global _watchdog
    if _watchdog is None:
        _watchdog = Watchdog()
    group = privilege.test_group(limits.max_memory)
    with procs.subreaper():
        pid, out_r, err_r = _fork_sandbox(item, spec, group)
        _watchdog.guard(pid)
        watch = _Watch(pid, spec, limits, group)
        fds = {out_r: 1, err_r: 2}
        outcome: Outcome | None = None
        try:
            outcome = _watch(watch, fds)
            children = crashes.Children.read(spec.rundir)
        finally:
            if group is not None and outcome is not None and outcome.kind == Kind.CAP:
                group.kill_all()  # a storm starves a polite TERM-and-wait: freeze, kill
            procs.terminate_group(pid, limits.grace)
            if watch.learner is not None:  # setsid() or a double fork does not escape this
                watch.seen.update(privilege.sweep(watch.learner, group))
            watch.poll_exit()
            procs.reap(watch.seen | set(spec.rundir.read(channel.REGISTERED)), watch.reaped)
            _drain(watch, fds)
            for fd in (out_r, err_r):
                os.close(fd)
            _watchdog.release(pid)
            if group is not None:
                group.remove()
    try:
        _conclude(outcome, children, spec)
    finally:
        spec.rundir.remove()
    return outcome


def _conclude(outcome: Outcome, children: crashes.Children, spec: sandbox.SandboxSpec) -> None:
    """Add what the children and the trace tell to a finished test's verdict, and how to
    run it again."""
    if outcome.status != "failed":
        return
    _explain(outcome, children, spec)
    replayed = any(label in outcome.details for label in ("Replay", _("Replay:")))
    if not replayed and outcome.kind not in (Kind.TODO, Kind.BROKEN):
        replay = _("Replay: {command}").format(command=shlex.join(spec.replay))
        outcome.details = f"{outcome.details}\n\n{replay}".strip("\n")


def _explain(outcome: Outcome, children: crashes.Children, spec: sandbox.SandboxSpec) -> None:
    relpath = spec.target.kata.relpath
    if outcome.traced:
        return
    history = History.read(spec.rundir, spec.files)
    crashes.explain_children(outcome, children, relpath, set(spec.files), history)
    found = races.find_races(history, limit=1) if spec.tracing else []
    if found:
        findings.apply(outcome, findings.race_finding(history, found[0], relpath))
    elif outcome.kind in (Kind.LOST, Kind.HANG) and spec.tracing:
        table = tables.recent(history, relpath)
        if table is not None:  # what happened first, then where everyone ended up
            moved = _("What moved last, in order:")
            outcome.details = f"{moved}\n{table}\n\n{outcome.details}"


def _watch(watch: _Watch, fds: dict[int, int]) -> Outcome:
    last_caps = 0.0
    timeout = watch.limits.timeout
    sample_at, stop_at, crashed, audited = timeout / 2, timeout, False, False
    while not watch.poll_exit():
        watch.forward(fds, _TICK)
        if watch.elapsed - last_caps >= _CAP_EVERY:
            last_caps = watch.elapsed
            capped = watch.check_caps()
            if capped is not None:
                return capped
            dead = watch.deadlocks.check(watch.members) if watch.deadlocks is not None else None
            if dead is not None:
                return _deadlocked(watch, dead)
            if not audited and watch.spec.rundir.body_done():
                audited = True
                stop_at = max(stop_at, watch.elapsed + AUDIT_GRACE)
                sample_at = stop_at - AUDIT_GRACE / 2
            if not crashed and watch.spec.rundir.has(channel.RAISED):
                # A child died of an exception. If the test is stuck because of it, say so
                # in CRASH_GRACE seconds rather than at the deadline.
                crashed = True
                stop_at = min(stop_at, watch.elapsed + CRASH_GRACE)
                sample_at = min(sample_at, watch.elapsed + CRASH_GRACE / 2)
        if not watch.first_sample and watch.elapsed >= sample_at:
            watch.first_sample = _sample(watch)
            watch.first_sample_at = time.monotonic()
        if watch.elapsed >= stop_at:
            factor = waits.stretch() if stop_at == watch.deadline == timeout else 1.0
            if factor > 1:
                # The deadline passed on a busy machine: give the test its share of the time
                # the other work took, once, before calling it a hang. Whether it is still
                # moving (SLOW) or stuck (HANG) is then judged over that extra time alone.
                watch.busy_load, watch.deadline = waits.load(), timeout * factor
                stop_at = watch.deadline
                sample_at = watch.elapsed + (stop_at - watch.elapsed) / 2
                watch.first_sample = {}
                continue
            return _hang(watch)
    _drain(watch, fds)
    return _finished(watch)


def _drain(watch: _Watch, fds: dict[int, int]) -> None:
    deadline = time.monotonic() + 0.2
    while fds and time.monotonic() < deadline:
        before = watch.output
        watch.forward(fds, 0.01)
        if watch.output == before:
            break


def _sample(watch: _Watch) -> dict[int, stacks.ProcessStack]:
    alive = set(procs.group_members(watch.pid))
    return procs.sample_stacks(watch.spec.rundir, alive)


def _finished(watch: _Watch) -> Outcome:
    result = watch.spec.rundir.read_result()
    if result is not None:
        if type(result.nonce) is not str or result.nonce != watch.spec.nonce:
            return _forged(N_("it does not carry the proof that the test process wrote it"))
        form = N_("it is not in the form the test process writes")
        if type(result.outcome) is not dict:
            return _forged(form)
        try:
            return _checked(Outcome.from_json(result.outcome))
        except (TypeError, ValueError, KeyError, AttributeError):
            return _forged(form)
    how = procs.describe_exit(watch.reaped.get(watch.pid))
    return Outcome(
        "failed",
        Kind.CRASH,
        _("the test process was {how} while running the test").format(how=how),
        _(
            "The process that runs the test function (and calls your code) died without a "
            "Python exception: os.abort(), a signal, os._exit() or a crash in C code. Its "
            "output, if any, is under 'Captured stdout/stderr'."
        ),
    )


_FIELDS: Final = {"message": str, "details": str, "duration": float, "traced": bool}


def _checked(outcome: Outcome) -> Outcome:
    """The result as the sandbox writes it, field by field, of exactly the right types."""
    if outcome.status not in ("passed", "failed", "skipped"):
        raise ValueError(outcome.status)
    if outcome.status == "failed" and outcome.kind is None:
        raise ValueError("a failure without a class")
    for name, kind in _FIELDS.items():
        value = getattr(outcome, name)
        if type(value) is not kind and not (kind is float and type(value) is int):
            raise TypeError(name)
    if outcome.seed is not None and type(outcome.seed) is not int:
        raise TypeError("seed")
    if type(outcome.explored) is not list or any(type(e) is not str for e in outcome.explored):
        raise TypeError("explored")
    return outcome


def _forged(why: str) -> Outcome:
    return Outcome(
        "failed",
        Kind.TAMPERED,
        _("the test's result file was not written by the plugin: {why}").format(why=_(why)),
        _(
            "Something in the test's processes wrote a result of its own. The test's verdict "
            "cannot be trusted, so it fails."
        ),
    )


def _hang(watch: _Watch) -> Outcome:
    spec = watch.spec
    second = _sample(watch)
    exits = spec.rundir.read(channel.EXITED)
    for pid, proc in second.items():
        before = watch.first_sample.get(pid)
        if proc.alive and before is not None and _same_place(before, proc):
            proc.blocked_since = time.monotonic() - watch.first_sample_at
        if not proc.alive:
            proc.exit_note = procs.describe_exit(procs.exit_status(pid, exits, watch.reaped))
    ordered = sorted(second.values(), key=lambda p: (p.role == "test", not p.alive, p.pid))
    files = {str(spec.target.path)}
    relpath = spec.target.kata.relpath
    moving = any(
        p.alive and watch.first_sample.get(p.pid) is not None and p.blocked_since is None
        for p in ordered
    )
    kind = Kind.SLOW if moving else Kind.HANG
    hint = (
        _(
            "the code was still working when the deadline passed: is it doing far more work "
            "than it needs, or waiting with sleep()?"
        )
        if moving
        else stacks.diagnose(ordered)
    )
    timeout = watch.limits.timeout
    if watch.elapsed < timeout:
        headline = _("the test was still stuck {seconds:g} s after a child process crashed")
        headline = headline.format(seconds=CRASH_GRACE)
    elif moving:
        headline = _("the test was still running after {seconds:g} s").format(seconds=timeout)
    else:
        headline = _("the test did not finish after {seconds:g} s").format(seconds=timeout)
    details = (
        _("Every process of the test, and where it was (>> marks your code):")
        + "\n"
        + stacks.render(ordered, files, relpath)
        + "\n\n"
        + (
            _(
                "The deadline was pytest-timeout's (--timeout, or its timeout marker), which "
                "came before the kata's. It was {seconds:g} s."
            )
            if watch.limits.by_pytest_timeout
            else _(
                "The deadline is set by kata_timeout (marker or ini), --kata-timeout, or the "
                "kata's kata.toml. It was {seconds:g} s."
            )
        ).format(seconds=timeout)
    )
    if watch.deadline > timeout:
        details += " " + _(
            "The machine was busy ({load:.1f} tasks per core), so the test was given "
            "{stretched:.1f} s in all."
        ).format(load=watch.busy_load, stretched=watch.deadline)
    return Outcome(
        "failed", kind, _("{headline}: {hint}").format(headline=headline, hint=hint), details
    )


def _deadlocked(watch: _Watch, dead: waits.Deadlock) -> Outcome:
    spec = watch.spec
    history = History.read(spec.rundir, spec.files)
    found = findings.deadlock_finding(history, dead, spec.target.kata.relpath)
    return Outcome("failed", found.kind, found.message, found.details)


def _same_place(a: stacks.ProcessStack, b: stacks.ProcessStack) -> bool:
    return a.main is not None and b.main is not None and a.main.frames == b.main.frames
