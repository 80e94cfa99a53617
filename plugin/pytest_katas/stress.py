"""Running a scenario again and again within a time budget, jcstress style, until it breaks."""

from __future__ import annotations

import dataclasses
import hashlib
import shlex
import time
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, Final, final

from pytest_katas import schedule, trace
from pytest_katas.verdict import Kind, fail_as

if TYPE_CHECKING:
    from pytest_katas.findings import Finding

__all__ = ["Stress", "StressReport", "test_seed"]

_SHOWN: Final = 8
# The trace's verdicts do not depend on the schedule, so the first runs say all it can;
# later runs go untraced, to stay fast and within the trace's cap.
TRACED_RUNS: Final = 2


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
    the seed, and the command that replays it.
    """

    def __init__(
        self,
        budget: float,
        session_seed: int,
        nodeid: str,
        replay: list[str],
        noisy: bool = True,
        audit: Callable[[], Finding | None] | None = None,
    ) -> None:
        self.budget = budget
        self.noisy = noisy
        self.session_seed = session_seed
        self.seed = test_seed(session_seed, nodeid)
        self.replay = replay
        self.audit = audit

    def run(
        self,
        scenario: Callable[[], Any],
        check: Callable[[Any], str | None],
        *,
        kind: str | Kind = Kind.RACE,
        budget: float | None = None,
        min_runs: int = 3,
        max_runs: int | None = None,
    ) -> StressReport:
        __tracebackhide__ = True
        budget = self.budget if budget is None else budget
        report = StressReport(0, 0.0, Counter(), {})
        started = time.monotonic()
        try:
            while report.runs < min_runs or time.monotonic() - started < budget:
                if max_runs is not None and report.runs >= max_runs:
                    break
                self._one_run(scenario, check, kind, report, started)
        finally:
            trace.set_tracing(True)
        report.seconds = time.monotonic() - started
        return report

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
        with schedule.noise(self.seed, report.runs) if self.noisy else nullcontext():
            outcome = scenario()
        finding = self.audit() if traced and self.audit is not None else None
        if finding is not None:
            report.runs += 1
            command = shlex.join(self.replay)
            failure = fail_as(
                finding.kind, f"{finding.message}\n\n{finding.details}\n\nReplay: {command}"
            )
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
        command = shlex.join(self.replay)
        return (
            f"{problem} (run {report.runs} of a stress test "
            f"{'under schedule noise' if self.noisy else 'without noise'}, "
            f"seed {self.session_seed})\n\nOutcomes seen:\n{report.table()}\n\n"
            f"Replay: {command}"
        )


def _key(outcome: Any) -> str:
    text = repr(outcome)
    return text if len(text) <= 200 else text[:197] + "..."
