"""Running a scenario again and again within a time budget, jcstress style, until it breaks."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import shlex
import time
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, Final, final

from pytest_katas import (
    channel,
    control,
    coordinate,
    explore,
    remote,
    schedule,
    stores,
    tables,
    trace,
)
from pytest_katas.messages import _
from pytest_katas.verdict import Kind, fail_as

if TYPE_CHECKING:
    from pytest_katas.findings import Finding

__all__ = ["Exploration", "Stress", "StressReport", "test_seed"]

_SHOWN: Final = 8
# A search runs at most this many schedules (a random or PCT one, SAMPLED), and stops at a
# time cap: three stress budgets, or half the test's deadline if that is longer, so that
# a busy machine reaches the same failing schedule as a quiet one. A depth-first search
# that ends before either is a proof within its bound.
MAX_SCHEDULES: Final = 3000
SAMPLED: Final = 50
EXPLORE_BUDGET_FACTOR: Final = 3.0
DEADLINE_SHARE: Final = 0.5


@final
@dataclasses.dataclass(frozen=True)
class Exploration:
    """How stress runs are scheduled: resolved once from the options, per test."""

    scheduler: str = "controlled"  # or "noise"
    strategy: str = "dfs"
    bound: int = explore.DEFAULT_BOUND
    token: str | None = None  # --kata-schedule: replay this one schedule
    deadline: float = 10.0  # the test's timeout, in seconds

    @property
    def controlled(self) -> bool:
        return self.scheduler == "controlled" or self.token is not None


# The trace's verdicts do not depend on the schedule, so the first runs say all it can;
# later runs go untraced, to stay fast and within the trace's cap.
TRACED_RUNS: Final = 2


_summaries: list[str] = []  # what this test's stress runs explored, in the sandbox


def take_summaries() -> list[str]:
    """What the stress runs of the test just run explored (and forget it)."""
    taken = list(_summaries)
    _summaries.clear()
    return taken


def test_seed(session_seed: int, nodeid: str) -> int:
    """Each test's own seed, derived from the run's, so one test replays alone."""
    digest = hashlib.sha256(f"{session_seed}:{nodeid}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


@final
@dataclasses.dataclass
class StressReport:
    runs: int
    seconds: float
    histogram: Counter[str]
    forbidden: dict[str, str]  # outcome -> why it is forbidden

    @property
    def failures(self) -> int:
        return sum(n for key, n in self.histogram.items() if key in self.forbidden)

    def table(self) -> str:
        """Each distinct outcome, how often, and whether it is acceptable."""
        width = max((len(k) for k in self.histogram), default=7)
        width = min(max(width, 7), 60)
        lines = [f"  {'outcome':<{width}}  {'count':>6}  verdict"]
        for key, count in self.histogram.most_common(_SHOWN):
            verdict = "FORBIDDEN" if key in self.forbidden else "acceptable"
            shown = key if len(key) <= width else key[: width - 3] + "..."
            lines.append(f"  {shown:<{width}}  {count:>6}  {verdict}")
        if len(self.histogram) > _SHOWN:
            lines.append(f"  ... and {len(self.histogram) - _SHOWN} more distinct outcomes")
        rate = self.failures / self.runs if self.runs else 0.0
        lines.append(f"  {self.runs} run(s) in {self.seconds:.2f} s; failure rate {rate:.1%}")
        return "\n".join(lines)


@final
class Stress:
    """The ``kata_stress`` fixture: repeat a scenario under schedule noise until it breaks.

    ``scenario()`` runs one trial of learner code and returns its outcome;
    ``check(outcome)`` returns None when the outcome is acceptable, else why it is not.
    The first forbidden outcome fails the test with its class, the outcome histogram,
    the seed, and the command that replays it. ``min_runs`` and ``max_runs`` bound the
    runs under noise; ``max_schedules`` the schedules a controlled search tries (a
    depth-first search cut short by it says so, and proves nothing).
    """

    def __init__(
        self,
        budget: float,
        session_seed: int,
        nodeid: str,
        replay: list[str],
        noisy: bool = True,
        audit: Callable[[], Finding | None] | None = None,
        exploration: Exploration | None = None,
    ) -> None:
        self.exploration = exploration or Exploration(scheduler="noise")
        self.summary: str | None = None  # what the exploration did, for the report
        self.budget = budget
        self.noisy = noisy
        self.session_seed = session_seed
        self.seed = test_seed(session_seed, nodeid)
        self.replay = replay
        self.audit = audit

    @property
    def controlled(self) -> bool:
        """Whether runs are scheduled by the plugin: scenarios may then be small (two
        threads, a few steps each), since every interleaving of them can be tried."""
        return self.exploration.controlled

    def run(
        self,
        scenario: Callable[[], Any],
        check: Callable[[Any], str | None],
        *,
        kind: str | Kind = Kind.RACE,
        budget: float | None = None,
        min_runs: int = 3,
        max_runs: int | None = None,
        max_schedules: int | None = None,
    ) -> StressReport:
        __tracebackhide__ = True
        budget = self.budget if budget is None else budget
        report = StressReport(0, 0.0, Counter(), {})
        started = time.monotonic()
        if self.controlled:
            lost = self._explore(scenario, check, kind, report, budget, max_schedules)
            if lost is None:
                report.seconds = time.monotonic() - started
                _summaries.append(f"{self.summary} in {report.seconds:.2f} s")
                return report
            self.summary = lost  # fall back to noise for the rest of the budget
        try:
            while report.runs < min_runs or time.monotonic() - started < budget:
                if max_runs is not None and report.runs >= max_runs:
                    break
                self._one_run(scenario, check, kind, report, started)
        finally:
            trace.set_tracing(True)
        report.seconds = time.monotonic() - started
        _summaries.append(self._noise_summary(report))
        return report

    def once(self, scenario: Callable[[], Any]) -> Any:
        """Run ``scenario`` one time and return what it returned: under the first schedule
        of the search when the plugin schedules this test, so that the trace it leaves (and
        any interleaving a failure shows from it) is the same in every run, whatever the OS
        does; as the OS schedules it otherwise. Nothing is checked or audited here: the
        test judges the outcome and the trace itself."""
        __tracebackhide__ = True
        if not self.controlled:
            return scenario()
        outcomes: list[Any] = []
        lost = self._explore(
            lambda: outcomes.append(scenario()),
            lambda _: None,
            Kind.RACE,
            StressReport(0, 0.0, Counter(), {}),
            0.0,
            1,
            audited=False,
        )
        if lost is not None:
            _summaries.append(lost)
        return outcomes[0] if outcomes else scenario()

    def _noise_summary(self, report: StressReport) -> str:
        how = "under schedule noise" if self.noisy else "without noise"
        lost = f" ({self.summary})" if self.summary else ""
        return f"{report.runs} run(s) {how} in {report.seconds:.1f} s{lost}"

    def _one_run(
        self,
        scenario: Callable[[], Any],
        check: Callable[[Any], str | None],
        kind: str | Kind,
        report: StressReport,
        started: float,
    ) -> None:
        __tracebackhide__ = True
        traced = report.runs < TRACED_RUNS
        if not traced:
            trace.set_tracing(False)
        trace.next_generation()
        with schedule.noise(self.seed, report.runs) if self.noisy else nullcontext():
            outcome = scenario()
        finding = self.audit() if traced and self.audit is not None else None
        if finding is not None:
            report.runs += 1
            replay = _("Replay: {command}").format(command=shlex.join(self.replay))
            failure = fail_as(finding.kind, f"{finding.message}\n\n{finding.details}\n\n{replay}")
            failure.seed = self.session_seed
            failure.traced = True
            raise failure
        problem = check(outcome)
        key = _key(outcome)
        report.histogram[key] += 1
        report.runs += 1
        if problem is not None:
            report.forbidden[key] = problem
            report.seconds = time.monotonic() - started
            failure = fail_as(kind, self._message(problem, report))
            failure.seed = self.session_seed
            raise failure

    def _message(self, problem: str, report: StressReport) -> str:
        replay = _("Replay: {command}").format(command=shlex.join(self.replay))
        note = f"\n\n{self.summary}" if self.summary else ""
        return (
            f"{problem} (run {report.runs} of a stress test "
            f"{'under schedule noise' if self.noisy else 'without noise'}, "
            f"seed {self.session_seed}){note}\n\nOutcomes seen:\n{report.table()}\n\n"
            f"{replay}"
        )

    # -- the controlled scheduler ------------------------------------------------------

    def _strategy(self, max_schedules: int | None) -> explore.Strategy:
        ex = self.exploration
        if ex.token is not None:
            return explore.Replay(ex.token)
        runs = MAX_SCHEDULES if ex.strategy == "dfs" else SAMPLED
        if max_schedules is not None:  # the scenario's own limit
            runs = min(runs, max_schedules)
        return explore.make(ex.strategy, self.seed, runs, ex.bound)

    def _explore(
        self,
        scenario: Callable[[], Any],
        check: Callable[[Any], str | None],
        kind: str | Kind,
        report: StressReport,
        budget: float,
        max_schedules: int | None,
        audited: bool = True,
    ) -> str | None:
        """Run the scenario under each schedule the strategy gives, until one fails (the
        test fails with that schedule), the strategy is done (at most ``max_schedules``
        schedules), or time is up. Returns None, or why control was lost (the caller then
        goes on with noise). ``audited``: the trace is read for a finding too."""
        __tracebackhide__ = True
        strategy = self._strategy(max_schedules)
        audit = self.audit if audited else None
        started = time.monotonic()
        cap = max(budget * EXPLORE_BUDGET_FACTOR, self.exploration.deadline * DEADLINE_SHARE)
        finding: Finding | None = None
        try:
            while True:
                if report.runs and time.monotonic() - started > cap:
                    break
                plan = strategy.plan(report.runs)
                if plan is None:
                    break
                traced = report.runs < TRACED_RUNS
                trace.set_tracing(traced)
                trace.next_generation()
                outcome: Any = None
                with (
                    coordinate.serving(plan, _learner_pid()) as coordinator,
                    control.controlled(plan) as sched,
                    stores.watching(),
                ):
                    try:
                        outcome = scenario()
                    except control.Deadlocked:
                        _stop_children()
                report.runs += 1
                strategy.finished(plan)
                run = _Run.of(sched, coordinator)
                if run.lost is not None:
                    return (
                        f"The plugin could not schedule this test itself ({run.lost}), so "
                        f"it went on with random schedule noise instead; a pass is less sure."
                    )
                if run.deadlock is not None:
                    self._fail_schedule(Kind.HANG, _deadlock(run), run, plan, strategy, report.runs)
                problem = check(outcome)
                key = _key(outcome)
                report.histogram[key] += 1
                if problem is not None:
                    report.forbidden[key] = problem
                    self._fail_schedule(kind, problem, run, plan, strategy, report.runs)
                if traced and finding is None and audit is not None:
                    finding = audit()
        finally:
            trace.set_tracing(True)
        self.summary = strategy.summary(report.runs)
        if isinstance(strategy, explore.Replay) and strategy.diverged:
            self.summary = strategy.summary(report.runs)
        if finding is not None:  # no schedule showed it, but the trace says it can happen
            replay = _("Replay: {command}").format(command=shlex.join(self.replay))
            failure = fail_as(finding.kind, f"{finding.message}\n\n{finding.details}\n\n{replay}")
            failure.seed = self.session_seed
            failure.traced = True
            raise failure
        return None

    def _fail_schedule(
        self,
        kind: str | Kind,
        problem: str,
        run: _Run,
        plan: explore.Plan,
        strategy: explore.Strategy,
        runs: int,
    ) -> None:
        __tracebackhide__ = True
        token = plan.token()
        table = tables.steps_table(run.log, run.labels, _line_of)
        how = (
            "replayed from --kata-schedule"
            if isinstance(strategy, explore.Replay)
            else f"schedule {runs} of the {strategy.name} search, {plan.preemptions} preemption(s)"
        )
        command = shlex.join([*self.replay, f"--kata-schedule={token}"])
        diverged = ""
        if isinstance(strategy, explore.Replay) and strategy.diverged:
            diverged = "\n\n" + strategy.summary(1)
        failure = fail_as(
            kind,
            f"{problem}\n\nThe interleaving that shows it ({how}; one {run.unit} ran at a "
            f"time, switching only where shown):\n{table}{diverged}\n\nReplay this exact "
            "schedule: "
            f"{command}",
        )
        failure.seed = self.session_seed
        failure.traced = True
        raise failure


@final
@dataclasses.dataclass
class _Run:
    """One controlled run, as the scheduler of threads or the coordinator of processes saw
    it: whichever had more than one task to schedule."""

    log: list[control.Step]
    labels: list[str]
    unit: str
    lost: str | None
    deadlock: list[tuple[int, str, int]] | None

    @classmethod
    def of(cls, sched: control.Scheduler, coordinator: coordinate.Coordinator | None) -> _Run:
        lost = sched.lost or (coordinator.lost if coordinator is not None else None)
        if coordinator is not None and len(coordinator.tasks) > 1:
            labels = ["test"] + [f"process {t.index}" for t in coordinator.tasks[1:]]
            return cls(coordinator.log, labels, "process", lost, coordinator.deadlock)
        if lost is None and len(sched.tasks) > 1 and remote.active() is not None:
            # Only the test's own threads were scheduled here; the learner's run free.
            lost = (
                "the threads of your code run in a process of their own, apart from the "
                "test's, where the plugin does not schedule them"
            )
        return cls(sched.log, _labels(sched), "thread", lost, sched.deadlock)


def _learner_pid() -> int | None:
    """The learner process, when the test body runs apart from learner code."""
    learner = remote.active()
    return learner.pid if learner is not None else None


def _stop_children() -> None:
    """After a deadlock the learner's processes wait for ever: end them (ours, by object)."""
    import multiprocessing

    for child in multiprocessing.active_children():
        child.kill()
        child.join(5)


def _labels(sched: control.Scheduler) -> list[str]:
    """Names that are the same in every run: the main thread, then threads by start order
    (a thread's own name has a counter that grows from run to run)."""
    labels = []
    for task in sched.tasks:
        if task.index == 0:
            labels.append("test")
            continue
        name = task.name
        target = name[name.index("(") :] if name.startswith("Thread-") and "(" in name else ""
        own = not name.startswith("Thread-")
        labels.append(name if own else f"thread {task.index} {target}".rstrip())
    return labels


def _line_of(site: int) -> tuple[str, int] | None:
    files = channel.learner_files()
    index, line = divmod(site, trace.SITE_BASE)
    if 0 <= index < len(files):
        return files[index].rsplit("/", 1)[-1], line
    return None


def _deadlock(run: _Run) -> str:
    lines = []
    for index, waits, site in run.deadlock or ():
        where = _line_of(site) if site >= 0 else None
        at = f" (line {where[1]} of {where[0]})" if where is not None else ""
        waits = re.sub(r"#(\d+)", lambda m: run.labels[int(m.group(1))], waits)
        lines.append(f"  - {run.labels[index]} waits in {waits}{at}")
    waits = "\n".join(lines)
    return (
        f"Deadlock: every {run.unit} is waiting and none can go on, so the program would "
        f"hang for ever here:\n{waits}"
    )


def _key(outcome: Any) -> str:
    text = repr(outcome)
    return text if len(text) <= 200 else text[:197] + "..."
