"""The forked process a kata test body runs in, so learner code can never hurt pytest itself."""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import sys
import time
import traceback
import types
from typing import TYPE_CHECKING, Final, NoReturn

import pytest

from pytest_katas import boot, findings, integrity, leaks, remote, stress
from pytest_katas.channel import ResultRecord, RunDir, RunState
from pytest_katas.loader import KataTarget, TargetImportError, describe_not_implemented
from pytest_katas.messages import _
from pytest_katas.verdict import KataFailure, Kind, Outcome

if TYPE_CHECKING:
    from pytest_katas.box import TestGroup

__all__ = ["INSIDE", "SandboxSpec", "run_sandbox"]

INSIDE = False  # true in the sandbox, where the test body runs for real


class SandboxSpec:
    """What the sandbox needs to know, fixed before the fork."""

    def __init__(
        self,
        target: KataTarget,
        start_method: str,
        rundir: RunDir,
        replay: list[str],
        tracing: bool = True,
        test_name: str = "",
    ) -> None:
        self.target = target
        self.start_method = start_method
        self.rundir = rundir
        self.tracing = tracing
        self.test_name = test_name
        self.modules = {target.kata.module_name: str(target.path)}
        self.env = rundir.environment(self.modules)
        self.replay = replay
        # The test body runs apart from learner code, which runs in a process of its own.
        self.apart = remote.wanted(target.kata.oracle)
        # Proves that the result came from this sandbox's own code. The supervisor makes it
        # after the fork and sends it down a pipe that the sandbox reads only when it writes
        # the result, so it is in no memory that learner code can read when the test body
        # runs apart (and a learner file that writes a result of its own does not know it).
        self.nonce: str | None = None
        self.nonce_fd: int | None = None

    @property
    def files(self) -> tuple[str, ...]:
        """The learner's files, numbered as the trace numbers them."""
        return tuple(self.modules.values())


def _use_stdio(out_fd: int, err_fd: int) -> None:
    """Send fd 1/2 (and so every child's output) through the supervisor's counted pipes."""
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    os.close(out_fd)
    os.close(err_fd)
    sys.stdout = open(1, "w", encoding="utf-8", errors="replace", buffering=1, closefd=False)
    sys.stderr = open(2, "w", encoding="utf-8", errors="replace", buffering=1, closefd=False)


def _stand_in_main() -> None:
    """Let spawn and forkserver children boot through our module instead of pytest's main."""
    spec = importlib.util.find_spec("pytest_katas._childmain")
    main = types.ModuleType("__main__")
    main.__spec__ = spec
    sys.modules["__main__"] = main


def _prepare(spec: SandboxSpec) -> None:
    os.environ.update(spec.env)
    spec.rundir.write_state(RunState(trace=spec.tracing))
    _stand_in_main()
    multiprocessing.set_start_method(spec.start_method, force=True)
    # The forkserver imports the plugin once, and each of its children runs the stand-in
    # main (a two-line module) itself. Preloading the stand-in main too would make runpy
    # warn in every child that it was imported before it ran.
    multiprocessing.set_forkserver_preload(["pytest_katas.boot"])
    boot.install()
    if not spec.apart:  # else the learner process is the test's process for the trace
        boot.register("test process", role="test")


def _classify(item: pytest.Function, spec: SandboxSpec, exc: BaseException) -> Outcome:
    target = spec.target
    if isinstance(exc, TargetImportError):
        return Outcome("failed", Kind.BROKEN, str(exc))
    if isinstance(exc, remote.LearnerTodo):
        return Outcome("failed", Kind.TODO, str(exc))
    if isinstance(exc, remote.LearnerGone):
        return Outcome("failed", Kind.CRASH, str(exc), _short_traceback(exc, spec, item, False))
    if isinstance(exc, NotImplementedError):
        text = describe_not_implemented(target.kata, target.path, exc.__traceback__, item.name)
        if text is not None:
            return Outcome("failed", Kind.TODO, text)
    details = _short_traceback(exc, spec, item)
    if isinstance(exc, KataFailure):
        headline, _sep, rest = str(exc).partition("\n")
        rest = rest.strip("\n")
        outcome = Outcome("failed", exc.kind, headline, rest or details, seed=exc.seed)
        outcome.traced = exc.traced
        return outcome
    if isinstance(exc, AssertionError):
        headline, _sep, rest = str(exc).strip().partition("\n")
        explained = "\n".join(rest.splitlines()[:_EXPLANATION_LINES])
        headline = headline or _("an assertion about the result failed")
        return Outcome("failed", Kind.WRONG, headline, f"{explained}\n\n{details}".strip("\n"))
    if isinstance(exc, MemoryError):
        return Outcome("failed", Kind.CAP, _("the code ran out of memory (MemoryError)"), details)
    where = boot.learner_site(_tb_frames(exc))
    at = _(" at {where}").format(where=target.kata.relpath(where)) if where else ""
    raised = _("{exception} was raised{at}: {message}")
    message = raised.format(exception=_type_name(exc), at=at, message=exc)
    return Outcome("failed", Kind.CRASH, message, details)


def _type_name(exc: BaseException) -> str:
    return exc.type_name if isinstance(exc, remote.LearnerError) else type(exc).__name__


def _tb_frames(exc: BaseException) -> traceback.StackSummary:
    """Where ``exc`` was raised, innermost last: in the learner process too, when it was
    raised there (below the test body's call into it)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if isinstance(exc, remote.LearnerError):
        frames = traceback.StackSummary.from_list([*frames, *exc.frames])
    return frames


_EXPLANATION_LINES: Final = 8
_TRACEBACK_FRAMES: Final = 6


def _short_traceback(
    exc: BaseException, spec: SandboxSpec, item: pytest.Function, raised: bool = True
) -> str:
    """Where it failed, in the test's and the learner's files only (>> marks the learner's),
    innermost last, a few frames deep."""
    mine = set(spec.files)
    shown = {str(item.path), *mine}
    frames = [f for f in _tb_frames(exc) if f.filename in shown][-_TRACEBACK_FRAMES:]
    relpath = spec.target.kata.relpath
    lines = []
    for frame in frames:
        mark = ">>" if frame.filename in mine else "  "
        lines.append(f"  {mark} {relpath(frame.filename)}:{frame.lineno} in {frame.name}")
        if frame.line:
            lines.append(f"  {mark}     {frame.line.strip()}")
    if raised and not isinstance(exc, AssertionError):
        lines.append(f"  {_type_name(exc)}: {exc}".rstrip())
    return _("Where (innermost last):") + "\n" + "\n".join(lines) if frames else ""


def _run_test(item: pytest.Function, spec: SandboxSpec) -> Outcome:
    started = time.perf_counter()
    try:
        item.runtest()
    except pytest.skip.Exception as exc:
        outcome = Outcome("skipped", message=str(exc.msg))
        outcome.skip = (str(item.path), (item.location[1] or 0) + 1, f"Skipped: {exc.msg}")
    except BaseException as exc:  # noqa: BLE001 - every failure is reported, none escapes
        outcome = _classify(item, spec, exc)
    else:
        outcome = Outcome("passed")
    outcome.duration = time.perf_counter() - started
    outcome.explored = stress.take_summaries()
    return outcome


_UNTRACED: Final = (Kind.TODO, Kind.BROKEN, Kind.TAMPERED)


def _add_leaks(outcome: Outcome, found: list[leaks.Leak]) -> None:
    """A test that passed fails as LEAK; after a failure, what is left is a consequence
    (the test stopped early) and would only blur the failure."""
    if outcome.status != "passed":
        return
    outcome.status, outcome.kind = "failed", Kind.LEAK
    outcome.message, outcome.details = leaks.summary(found)


def _watched_modules(item: pytest.Function, spec: SandboxSpec) -> list[types.ModuleType]:
    """The test's module and the kata's conftest files: the oracle, which learner code
    must leave as it found it."""
    folder = str(spec.target.kata.directory)
    found = [item.module] if item.module is not None else []
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None) or ""
        if path.startswith(folder) and os.path.basename(path) == "conftest.py":
            found.append(module)
    return found


def _tampered(changes: list[str]) -> Outcome:
    shown = "\n".join(f"  - {change}" for change in changes[:10])
    return Outcome(
        "failed",
        Kind.TAMPERED,
        "the code changed the test or the plugin while the test ran",
        f"Seen after the test returned:\n{shown}\n\nA kata's code must not touch the tests, "
        "the plugin, builtins or the trace; the test's verdict cannot be trusted.",
    )


def _read_nonce(spec: SandboxSpec) -> str:
    if spec.nonce_fd is None:
        return ""
    data = b""
    while chunk := os.read(spec.nonce_fd, 64):
        data += chunk
    return data.decode("ascii", "replace")


def run_sandbox(
    item: pytest.Function,
    spec: SandboxSpec,
    out_fd: int,
    err_fd: int,
    group: TestGroup | None = None,
) -> NoReturn:
    """The sandbox's whole life: run the test, check for leaks, report, exit."""
    global INSIDE
    INSIDE = True
    code = 0
    try:
        _use_stdio(out_fd, err_fd)
        _prepare(spec)
        baseline = leaks.Baseline.take()
        learner = None
        if spec.apart:
            learner = remote.LearnerProcess(spec, group)
            boot.forbid_learner_code()
        snapshot = integrity.Snapshot.take(_watched_modules(item, spec), spec.tracing)
        outcome = _run_test(item, spec)
        spec.rundir.mark_body_done()
        changes = snapshot.changes()
        if changes:
            outcome = _tampered(changes)
        if (
            spec.tracing
            and outcome.status != "skipped"
            and outcome.kind not in _UNTRACED
            and not outcome.traced
        ):
            finding = findings.audit(spec.rundir, spec.files, spec.target.kata.relpath)
            if finding is not None:
                findings.apply(outcome, finding)
        if outcome.status != "skipped":
            if learner is not None:  # what learner code left is in the learner process
                found = learner.finish()
            else:
                found = leaks.find_leaks(baseline, set(), spec.rundir, spec.target.kata.relpath)
            if found:
                _add_leaks(outcome, found)
        spec.rundir.write_result(ResultRecord(outcome.to_json(), _read_nonce(spec)))
    except BaseException:  # noqa: BLE001 - the supervisor reports a sandbox that died silently
        traceback.print_exc()
        code = os.EX_SOFTWARE
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
    os._exit(code)
