"""``katas grade``: grade untrusted submissions from the instructor's own checkout.

From each submission only the learner files (``katas/<kata>/<kata>.py``) are taken; the
tests, kata.toml files, conftest files and the pytest configuration all come from the
instructor's checkout, copied into a private staging folder. Each submission is graded by
one ``pytest`` run inside a box (see :mod:`pytest_katas.box`), with learner code running as
an unprivileged user where the host allows it. The report is checked strictly and the score
recomputed from the instructor's kata.toml files here, outside the box, before it is written:
a missing, late or garbled answer is an error that scores 0, never a pass.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import math
import os
import random
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, final

import pytest_katas
from pytest_katas import box, catalog, grading, manifest, privilege, waits
from pytest_katas.catalog import Kata, KataError

__all__ = ["GradeOptions", "Graded", "grade_all", "grade_one", "stage"]

LEARNER_FILE_MAX: Final = 256 * 1024  # bytes: a learner's file is a page or two of Python
LEARNER_USER: Final = "nobody"
REPORT_NAME: Final = "report.json"
_STAGED_KATA_FILES: Final = ("kata.toml", "conftest.py", "README.md", "README.zh-CN.md")
_DEFAULT_TIMEOUT: Final = 10.0
_INI: Final = (
    "# Written by katas grade: no configuration of the submission is ever read.\n[pytest]\n"
)


@final
@dataclasses.dataclass(frozen=True)
class GradeOptions:
    """What ``katas grade`` was asked to do, resolved once."""

    checkout: Path  # the instructor's pristine checkout: katas/ and plugin come from here
    fmt: str = "exercism"  # exercism, classroom or junit
    jobs: int = 1
    seed: int = 0
    start_method: str | None = None
    isolation: str = "auto"  # auto, bubblewrap, unshare or none
    only: tuple[str, ...] = ()  # grade only these katas (an assignment of one or two)
    checkout_changes: tuple[str, ...] = ()  # the checkout differs from its own manifest


@final
@dataclasses.dataclass
class Graded:
    """One submission's verdict, as the grader (not the box) states it."""

    submission: Path
    name: str
    report: dict[str, Any]
    output: str
    seconds: float

    @property
    def status(self) -> str:
        return str(self.report.get("status"))

    def line(self) -> str:
        r = self.report
        return (
            f"{self.name}: {r.get('score')}/{r.get('max_score')} {self.status} "
            f"in {self.seconds:.0f} s ({r.get('isolation', {}).get('summary', '?')})"
        )


class StagingError(Exception):
    """The submission cannot be graded as given; the message says why."""


# -- staging -------------------------------------------------------------------------------


def _read_learner_file(path: Path) -> bytes | None:
    """A regular file of at most LEARNER_FILE_MAX bytes, or None (missing: the stub is used).

    No symlink is followed, so a submission cannot make the grader read the instructor's
    files (a solution, a key) as its own."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StagingError(f"{path}: cannot be read as a plain file ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise StagingError(f"{path}: is not a plain file")
        data = handle.read(LEARNER_FILE_MAX + 1)
    if len(data) > LEARNER_FILE_MAX:
        raise StagingError(f"{path}: is over {LEARNER_FILE_MAX // 1024} KiB; a kata needs far less")
    return data


def katas_of(checkout: Path, only: Sequence[str] = ()) -> list[Kata]:
    """The instructor's katas, loaded and checked once, before any submission is read."""
    katas_dir = checkout / "katas"
    if not katas_dir.is_dir():
        raise KataError(f"{checkout}: there is no katas/ folder; run katas grade from the checkout")
    katas = catalog.list_katas(katas_dir)
    unknown = sorted(set(only) - {kata.name for kata in katas})
    if unknown:
        names = ", ".join(kata.name for kata in katas)
        raise KataError(
            f"there is no kata {', '.join(unknown)} in {katas_dir}; the katas are: {names}"
        )
    return [kata for kata in katas if not only or kata.name in only]


def stage(checkout: Path, katas: Sequence[Kata], submission: Path, into: Path) -> list[str]:
    """Build ``into``: the instructor's katas with the submission's learner files in them.

    Returns notes about the submission (a learner file missing, so the stub was used)."""
    notes = []
    repo = into / "repo"
    (repo / "katas").mkdir(parents=True)
    for kata in katas:
        folder = repo / "katas" / kata.name
        folder.mkdir()
        for source in sorted(kata.directory.iterdir()):
            if source.is_file() and (source.name in _STAGED_KATA_FILES or _is_test(source)):
                shutil.copyfile(source, folder / source.name)
        learner = _read_learner_file(submission / "katas" / kata.name / f"{kata.name}.py")
        if learner is None:  # a folder laid out like solutions/ will do too
            learner = _read_learner_file(submission / kata.name / f"{kata.name}.py")
        if learner is None:
            notes.append(f"katas/{kata.name}/{kata.name}.py is missing: graded as the stub")
            learner = kata.stub.read_bytes()
        (folder / f"{kata.name}.py").write_bytes(learner)
    (repo / "pytest.ini").write_text(_INI, encoding="utf-8")
    # The staged tests are the instructor's, whatever the checkout's manifest says (an
    # instructor may edit tests); the manifest written here lets the run check that the
    # staged files stay as staged.
    manifest.write(repo)
    for path in (into, *into.rglob("*")):  # readable by the learner's user, writable by none
        path.chmod(0o755 if path.is_dir() else 0o644)
    return notes


def _is_test(path: Path) -> bool:
    return path.name.startswith("test_") and path.suffix == ".py"


# -- the run in the box ----------------------------------------------------------------------


def _world_reachable(path: Path) -> bool:
    """Whether a user with no rights of its own can reach ``path`` (every folder on the
    way is searchable by others)."""
    for folder in (path, *path.parents):
        try:
            mode = folder.stat().st_mode
        except OSError:
            return False
        if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
            return False
    return True


def _unreachable_ancestors(paths: Sequence[Path]) -> list[Path]:
    """The highest folders the learner's user cannot search that lie above ``paths``: the
    box masks them with an empty folder and binds ``paths`` back, read-only."""
    masks = set()
    for path in paths:
        for folder in reversed(path.parents):
            if folder != Path("/") and not _world_reachable(folder):
                masks.add(folder)
                break
    return sorted(masks)


def _deadline(katas: Sequence[Kata]) -> float:
    """Every test at its deadline (stretched as far as a busy machine stretches it), plus
    room to start: a run that outlasts this is stuck."""
    total = 0.0
    for kata in katas:
        tests = sum(len(task.tests) for task in kata.tasks)
        total += (kata.timeout or _DEFAULT_TIMEOUT) * tests
    return total * waits.STRETCH_MAX * 1.5 + 120.0


def _box_spec(workdir: Path, out: Path, user: str | None, checkout: Path) -> box.BoxSpec:
    # The box binds the interpreter itself; the learner's user must also get through the
    # folders above it (a private home holding pyenv, say).
    masks = _unreachable_ancestors([*box.python_paths(), workdir]) if user else []
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",  # noqa: S108 - the box's own private tmpfs
        "TMPDIR": "/tmp",  # noqa: S108 - the same
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        privilege.ENV_BOXED: "1",
    }
    if user:
        env[privilege.ENV_USER] = user
    return box.BoxSpec(
        readonly=[workdir / "repo"],
        writable=[out],
        hidden=[*masks, checkout / "solutions"],
        env=env,
        cwd=workdir / "repo",
    )


def _pytest_argv(options: GradeOptions, workdir: Path, out: Path) -> list[str]:
    repo = workdir / "repo"
    argv = [
        sys.executable,
        "-I",
        "-m",
        "pytest",
        str(repo / "katas"),
        "-c",
        str(repo / "pytest.ini"),
        "--rootdir",
        str(repo),
        "-p",
        "pytest_katas.plugin",
        "-p",
        "no:cacheprovider",
        "-q",
        "-rN",
        "--color=no",
        f"--kata-report={out / REPORT_NAME}",
        "--kata-report-format=exercism",
        f"--kata-seed={options.seed}",
    ]
    if options.start_method:
        argv.append(f"--kata-start-method={options.start_method}")
    return argv


def _run_boxed(
    options: GradeOptions,
    katas: Sequence[Kata],
    workdir: Path,
    out: Path,
    user: str | None,
    isolation: box.Isolation,
) -> tuple[int | None, str, box.Isolation]:
    spec = _box_spec(workdir, out, user, options.checkout)
    log = out / "pytest.log"
    deadline = _deadline(katas)
    with box.Box(spec, isolation) as boxed, open(log, "wb") as output:
        process = boxed.popen(
            _pytest_argv(options, workdir, out), stdout=output, stderr=subprocess.STDOUT
        )
        code = _wait(process, deadline)
        boxed.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
    text = log.read_bytes()[-200_000:].decode("utf-8", errors="replace")
    if code is None:
        text += f"\nkatas grade: the run was stopped after {deadline:.0f} s\n"
    return code, text, boxed.isolation


# Set when katas grade is asked to stop (SIGTERM, SIGHUP, Ctrl-C): every box is ended.
STOP: Final = threading.Event()


def _wait(process: subprocess.Popen[bytes], deadline: float) -> int | None:
    """The run's exit code, or None if it outlasted ``deadline`` or we were stopped."""
    ends = time.monotonic() + deadline
    while not STOP.is_set() and time.monotonic() < ends:
        try:
            return process.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            continue
    return None


def grade_one(options: GradeOptions, katas: Sequence[Kata], submission: Path, name: str) -> Graded:
    """Grade one submission. Never raises for anything the submission did."""
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="katas-grade-"))
    out = workdir / "out"
    try:
        out.mkdir(mode=0o700)
        try:
            notes = stage(options.checkout, katas, submission, workdir)
        except StagingError as exc:
            report = error_report(katas, f"the submission could not be graded: {exc}")
            return Graded(submission, name, report, "", time.monotonic() - started)
        isolation = box.probe(prefer=options.isolation)
        user = LEARNER_USER if isolation.learner_user else None  # the probe tried it
        if user and isolation.tool == "none":
            blocked = [p for p in box.python_paths() if not _world_reachable(p)]
            if blocked:  # without a box nothing can open them to the learner's user
                user = None
                why = f"learner code ran as the grader's user: {blocked[0]} is private"
                isolation = dataclasses.replace(
                    isolation, learner_user=None, notes=(*isolation.notes, why)
                )
        code, output, isolation = _run_boxed(options, katas, workdir, out, user, isolation)
        report = checked_report(katas, out / REPORT_NAME, code)
        report["isolation"] = {**isolation.to_json(), "summary": isolation.describe()}
        if notes:
            report["notes"] = notes
        if options.checkout_changes:  # the tests themselves cannot be trusted
            _void(
                report,
                "the grader's checkout differs from its katas/manifest.json: "
                + "; ".join(options.checkout_changes),
            )
        report["submission"] = name
        report["grader"] = {"plugin_version": pytest_katas.__version__, "seed": options.seed}
        return Graded(submission, name, report, output, time.monotonic() - started)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# -- the report, checked -------------------------------------------------------------------

_TEST_FIELDS: Final[dict[str, tuple[type, ...]]] = {
    "name": (str,),
    "test": (str,),
    "status": (str,),
    "kata": (str,),
}


def _exact(value: Any, *types: type) -> bool:
    return type(value) in types


def error_report(katas: Sequence[Kata], message: str) -> dict[str, Any]:
    """What a submission scores when no trustworthy answer came back: nothing."""
    return {
        "version": 3,
        "status": "error",
        "message": message,
        "score": 0,
        "max_score": sum(task.points for kata in katas for task in kata.tasks),
        "katas": {
            kata.name: {
                "score": 0,
                "max_score": sum(t.points for t in kata.tasks),
                "tasks_done": 0,
                "tasks": len(kata.tasks),
                "status": "error",
                "message": message,
                "task_scores": grading.task_scores(kata, ()),
            }
            for kata in katas
        },
        "tests": [],
    }


def _void(report: dict[str, Any], message: str) -> None:
    """Turn ``report`` into an error that scores nothing, keeping what the tests said."""
    report["status"], report["message"], report["score"] = "error", message, 0
    for kata in report["katas"].values():
        kata["score"], kata["tasks_done"] = 0, 0
        kata["status"], kata["message"] = "error", message
        for task in kata.get("task_scores", []):
            task["score"] = 0
    for test in report["tests"]:
        test["score"] = 0


def _valid_tests(data: Any) -> list[dict[str, Any]] | None:
    if not _exact(data, list):
        return None
    for test in data:
        if not _exact(test, dict):
            return None
        for key, types in _TEST_FIELDS.items():
            if not _exact(test.get(key), *types):
                return None
        if test["status"] not in ("pass", "fail", "error"):
            return None
    return list(data)


def checked_report(katas: Sequence[Kata], path: Path, exit_code: int | None) -> dict[str, Any]:
    """The box's report, believed only as far as it checks out: the score is recomputed
    from the instructor's kata.toml files and the tests' statuses."""
    if exit_code is None:
        why = "grading was stopped" if STOP.is_set() else "the run did not finish in time"
        return error_report(katas, f"{why}; nothing it said is used")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return error_report(
            katas, f"the run ended (exit code {exit_code}) without a readable report"
        )
    tests = _valid_tests(data.get("tests")) if _exact(data, dict) else None
    if tests is None or data.get("status") not in ("pass", "fail", "error"):
        return error_report(katas, "the run's report is not in the expected form")
    status = str(data["status"])
    message = data.get("message") if _exact(data.get("message"), str) else None
    if status == "pass" and exit_code != 0:
        status = "error"
        message = f"pytest exited with code {exit_code}, yet its report said pass"
    tests = [_clean_test(t) for t in tests]
    scored = rescore(katas, tests)
    if status == "pass" and scored["score"] != scored["max_score"]:
        status, message = "fail", message or "not every task is done"
    return {
        "version": 3,
        "status": status,
        "message": message,
        **scored,
        "tests": tests,
    }


def _clean_test(test: dict[str, Any]) -> dict[str, Any]:
    """Only the fields a report has, each of its exact type or None."""
    out: dict[str, Any] = {}
    for key in ("name", "test", "status", "kata"):
        out[key] = test[key]
    for key in ("message", "output", "test_code", "failure_class"):
        out[key] = test.get(key) if _exact(test.get(key), str) else None
    out["task_id"] = test.get("task_id") if _exact(test.get("task_id"), int) else None
    out["seed"] = test.get("seed") if _exact(test.get("seed"), int) else None
    for key in ("score", "max_score"):
        value = test.get(key)
        finite = isinstance(value, (int, float)) and math.isfinite(value)
        out[key] = value if finite and type(value) in (int, float) else 0
    return out


def rescore(katas: Sequence[Kata], tests: list[dict[str, Any]]) -> dict[str, Any]:
    """Score per kata from kata.toml: a task counts when every one of its tests is in the
    report and passed (every time it ran). Each test's score and max_score are set to
    agree, since GitHub Classroom's reporter adds up the tests' scores."""
    per_kata = {}
    for kata in katas:
        mine = [t for t in tests if t["kata"] == kata.name]
        statuses: dict[str, set[str]] = {}
        for test in mine:
            statuses.setdefault(test["test"].split("[", 1)[0], set()).add(test["status"])
        done = {
            task.id
            for task in kata.tasks
            if all(statuses.get(name) == {"pass"} for name in task.tests)
        }
        for test in mine:
            task = kata.task_of(test["test"])
            share = round(task.points / max(len(task.tests), 1), 2) if task else 0
            test["max_score"] = share
            test["score"] = share if task is not None and task.id in done else 0
        per_kata[kata.name] = {
            "score": sum(t.points for t in kata.tasks if t.id in done),
            "max_score": sum(t.points for t in kata.tasks),
            "tasks_done": len(done),
            "tasks": len(kata.tasks),
            "task_scores": grading.task_scores(kata, done),
        }
    for test in tests:
        if test["kata"] not in per_kata:  # a test of no kata the instructor has
            test["score"] = test["max_score"] = 0
    return {
        "score": sum(k["score"] for k in per_kata.values()),
        "max_score": sum(k["max_score"] for k in per_kata.values()),
        "katas": per_kata,
    }


# -- many submissions ------------------------------------------------------------------------


def names(submissions: Sequence[Path]) -> list[str]:
    """A report name per submission: its folder's name, numbered when two share one."""
    names: list[str] = []
    for path in submissions:
        base = path.resolve().name or "submission"
        name, n = base, 2
        while name in names:
            name, n = f"{base}-{n}", n + 1
        names.append(name)
    return names


def grade_all(
    options: GradeOptions,
    katas: Sequence[Kata],
    submissions: Sequence[Path],
    on_done: Callable[[Graded], None] = lambda graded: None,
) -> list[Graded]:
    """Grade every submission against ``katas`` (from :func:`katas_of`), ``options.jobs``
    at a time, in the order given."""
    changes = tuple(manifest.changed_files(options.checkout))
    if changes:
        options = dataclasses.replace(options, checkout_changes=changes)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(options.jobs, 1)) as pool:
        futures = [
            pool.submit(grade_one, options, katas, path, name)
            for path, name in zip(submissions, names(submissions), strict=True)
        ]
        try:
            for future in concurrent.futures.as_completed(futures):
                on_done(future.result())
        except BaseException:  # Ctrl-C or a signal: end every box before unwinding
            STOP.set()
            raise
        return [future.result() for future in futures]


def new_seed() -> int:
    return random.SystemRandom().randrange(1 << 32)
