"""The learner's progress store: ``.katas/`` at the repository root, next to ``katas/``.

Every pytest run over the learner's own katas (the controller of a run whose target is
``katas``) records its results here at the end of the session, so that ``katas list`` and
``katas next`` answer without rerunning anything. The folder is plain, visible and safe to
delete (it is in ``.gitignore``)::

    .katas/
      progress.json     the last results, per kata (see below)
      hints.json        how far each task's hints were read: {"pipe": {"2": 1}} (1 shown)
      backup/           learners' files saved by ``katas reset``: <kata>-<timestamp>.py
      stubs/            pristine stubs taken from git, for ``katas reset`` without git

``progress.json``::

    {"version": 1,
     "katas": {"pipe": {
        "when": "2025-01-01T12:00:00+00:00",   # the last run that ran a test of it
        "sha256": "...",                       # of katas/pipe/pipe.py when that run began
        "score": 4, "max_score": 10,
        "partial": false,                      # that run did not run all of its tests
        "tasks": {"1": {"status": "done", "failing": null, "when": "...", "sha256": "..."},
                  "2": {"status": "failing", "failing": "LOST", "when": "...", ...}}}}}

A task's status is ``done`` (every test of it ran and passed), ``failing`` (a test of it
failed; ``failing`` is the first failure's class: TODO, HANG, ...) or ``partial`` (some of
its tests ran and passed, the others did not run). A partial run (``-k``, a node id,
``-x``, Ctrl-C) updates only the tasks it ran tests of; the others keep their earlier
result, with the ``sha256`` of the file they were run on. Only tests that finished count.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, final

from pytest_katas.catalog import Kata
from pytest_katas.messages import N_, _

if TYPE_CHECKING:
    import pytest

    from pytest_katas.grading import Gradebook, KataGrade, TestGrade

__all__ = [
    "STORE",
    "HintStore",
    "KataResult",
    "RunRecorder",
    "TaskResult",
    "backup",
    "file_sha256",
    "forget",
    "load",
    "pristine_stub",
    "save_pristine",
]

STORE: Final = ".katas"
PROGRESS: Final = "progress.json"
HINTS: Final = "hints.json"
VERSION: Final = 1
DONE: Final = "done"
FAILING: Final = "failing"
PARTIAL: Final = "partial"
_FINISHED_PHASES: Final = frozenset({"teardown", "???"})  # "???": xdist's crashed worker
# What the learner reads, in English (the msgids): translated with _() where it is shown.
SAVE_FAILED: Final = N_("katas: could not save your progress in {where}: {why}")
UNREADABLE: Final = N_("{path} cannot be read ({error}); delete it to start afresh")
README_TEXT: Final = N_(
    "This folder is kept by the `katas` command and by every pytest run over your katas.\n"
    "  progress.json  your last results per kata (read by `katas list` and `katas next`)\n"
    "  hints.json     how many hints of each task you have read (`katas hint KATA TASK "
    "--reset`)\n"
    "  backup/        your files, saved by `katas reset` before it put the stub back\n"
    "  stubs/         the original stubs, taken from git, for `katas reset`\n"
    "It is safe to delete: you lose only the list's memory of your last runs.\n"
)


def store_dir(root: Path) -> Path:
    return Path(root) / STORE


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


# -- files ----------------------------------------------------------------------------------


def _ensure(root: Path) -> Path:
    folder = store_dir(root)
    folder.mkdir(exist_ok=True)
    readme = folder / "README.txt"
    if not readme.exists():
        readme.write_text(_(README_TEXT), encoding="utf-8")  # in the language of its maker
    return folder


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[Path]:
    """The store, locked against another process's read-modify-write (pytest runs at once)."""
    folder = _ensure(root)
    with open(folder / ".lock", "a+b") as handle:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not on Linux: no lock, writes stay atomic
            yield folder
            return
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield folder
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; {} if there is none; ValueError if it is not one."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def _write_json(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temporary, path)


# -- results --------------------------------------------------------------------------------


@final
@dataclasses.dataclass(frozen=True)
class TaskResult:
    status: str  # done, failing or partial
    failing: str | None  # the first failure's class, when failing
    when: str
    sha256: str | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskResult:
        return cls(
            status=str(data.get("status", PARTIAL)),
            failing=data.get("failing"),
            when=str(data.get("when", "")),
            sha256=data.get("sha256"),
        )


@final
@dataclasses.dataclass(frozen=True)
class KataResult:
    when: str
    sha256: str | None
    score: int
    max_score: int
    partial: bool
    tasks: dict[int, TaskResult]

    def done(self, task_id: int) -> bool:
        result = self.tasks.get(task_id)
        return result is not None and result.status == DONE

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["tasks"] = {str(k): dataclasses.asdict(v) for k, v in sorted(self.tasks.items())}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KataResult:
        tasks = data.get("tasks") or {}
        return cls(
            when=str(data.get("when", "")),
            sha256=data.get("sha256"),
            score=int(data.get("score", 0)),
            max_score=int(data.get("max_score", 0)),
            partial=bool(data.get("partial", False)),
            tasks={int(k): TaskResult.from_json(v) for k, v in tasks.items()},
        )


def load(root: Path) -> dict[str, KataResult]:
    """The last results per kata; ValueError (saying which file) if the store is unreadable."""
    path = store_dir(root) / PROGRESS
    try:
        data = _read_json(path)
        return {
            name: KataResult.from_json(entry) for name, entry in (data.get("katas") or {}).items()
        }
    except (ValueError, TypeError, AttributeError) as exc:
        where = f"{STORE}/{PROGRESS}"
        raise ValueError(_(UNREADABLE).format(path=where, error=exc))


def _update(root: Path, change: dict[str, KataResult | None]) -> None:
    """Replace (or, for None, drop) these katas' results, under the store's lock."""
    with _locked(root) as folder:
        path = folder / PROGRESS
        try:
            data = _read_json(path)
            katas = dict(data.get("katas") or {})
        except (ValueError, AttributeError):  # a damaged store is replaced, kept aside
            with contextlib.suppress(OSError):
                os.replace(path, path.with_suffix(".json.bad"))
            katas = {}
        for name, result in change.items():
            if result is None:
                katas.pop(name, None)
            else:
                katas[name] = result.to_json()
        _write_json(path, {"version": VERSION, "katas": katas})


def forget(root: Path, kata: str) -> None:
    """Drop ``kata``'s results and hint positions (``katas reset``)."""
    _update(root, {kata: None})
    HintStore(root).reset(kata)


def _finished(test: TestGrade) -> bool:
    return bool(test.phases & _FINISHED_PHASES)


def _blocked_class(reason: str) -> str:
    head = reason.split(":", 1)[0]
    return head if head.isupper() and head.isalpha() else "BLOCKED"


def merge(
    kata: Kata, grades: KataGrade, earlier: KataResult | None, sha: str | None, when: str
) -> KataResult | None:
    """``kata``'s result after this run: the tasks it ran tests of are replaced, the others
    keep ``earlier``'s result. None when no test of it finished in this run."""
    finished = [t for t in grades.tests.values() if _finished(t)]
    if not finished and not grades.blocked:
        return None
    tasks = dict(earlier.tasks) if earlier is not None else {}
    partial = False
    for task in kata.tasks:
        ran = [t for t in finished if t.task_id == task.id]
        names = {t.name.split("[", 1)[0] for t in ran}
        everything = names >= set(task.tests)
        partial = partial or not everything
        if grades.blocked:
            result = TaskResult(FAILING, _blocked_class(grades.blocked[0]), when, sha)
        elif not ran:
            continue
        elif failed := next((t for t in ran if t.status in ("fail", "error")), None):
            why = failed.kind.name if failed.kind is not None else failed.status.upper()
            result = TaskResult(FAILING, why, when, sha)
        elif everything and grades.task_done(task):
            result = TaskResult(DONE, None, when, sha)
        else:
            previous = tasks.get(task.id)
            if previous is not None and previous.status == DONE and previous.sha256 == sha:
                continue  # a part of a task done on this very file: it stays done
            result = TaskResult(PARTIAL, None, when, sha)
        tasks[task.id] = result
    known = {task.id for task in kata.tasks}
    tasks = {k: v for k, v in tasks.items() if k in known}
    score = sum(t.points for t in kata.tasks if t.id in tasks and tasks[t.id].status == DONE)
    max_score = sum(t.points for t in kata.tasks)
    return KataResult(when, sha, score, max_score, partial, tasks)


@final
class RunRecorder:
    """Made at session start by the controller's GradingSession (for a run of the learner's
    own katas only), it notes each learner file's sha256 before any test imports it, and
    writes the results to ``.katas/progress.json`` at session finish."""

    def __init__(self, katas: list[Kata]) -> None:
        self.katas = katas
        self.hashes = {kata.directory: file_sha256(kata.stub) for kata in katas}

    @classmethod
    def begin(cls, config: pytest.Config, katas: Iterable[Kata]) -> RunRecorder | None:
        from pytest_katas import privilege, settings

        try:
            target = settings.of(config).target
        except Exception:  # noqa: BLE001 - a bad option is reported elsewhere; record nothing
            return None
        option = config.option
        if os.environ.get(privilege.ENV_BOXED):  # katas grade: a read-only copy, not a learner's
            return None
        if target != "katas" or any(
            getattr(option, o, False) for o in ("collectonly", "setuponly", "setupplan")
        ):
            return None
        mine = [kata for kata in katas if kata.directory.parent.name == "katas"]
        return cls(mine) if mine else None

    def finish(self, gradebook: Gradebook) -> None:
        when = now()
        by_root: dict[Path, dict[str, KataResult | None]] = {}
        for kata in self.katas:
            grades = gradebook.katas.get(kata.name)
            if grades is None or grades.kata.directory.resolve() != kata.directory.resolve():
                continue
            try:
                earlier = load(kata.root).get(kata.name)
            except ValueError:
                earlier = None
            result = merge(kata, grades, earlier, self.hashes.get(kata.directory), when)
            if result is not None:
                by_root.setdefault(kata.root, {})[kata.name] = result
        for root, change in by_root.items():
            try:
                _update(root, change)
            except OSError as exc:  # a read-only checkout keeps no progress, quietly
                if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                    sys.stderr.write(_(SAVE_FAILED).format(where=root / STORE, why=exc) + "\n")


# -- hints ----------------------------------------------------------------------------------


@final
class HintStore:
    """How many hints of each task the learner has read, in ``.katas/hints.json``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.path = store_dir(root) / HINTS

    @property
    def shown_path(self) -> str:
        return f"{STORE}/{HINTS}"

    def _all(self) -> dict[str, Any]:
        try:
            return _read_json(self.path)
        except (ValueError, OSError):
            return {}

    def position(self, kata: str, task: int) -> int:
        """How many hints of the task were shown (the last one shown is that number)."""
        value = self._all().get(kata, {}).get(str(task), 0)
        return value if isinstance(value, int) and value >= 0 else 0

    def _set(self, kata: str, task: int | None, shown: int) -> None:
        with _locked(self.root):
            data = self._all()
            entry = data.get(kata)
            entry = dict(entry) if isinstance(entry, dict) else {}
            if task is None:
                entry = {}
            elif shown:
                entry[str(task)] = shown
            else:
                entry.pop(str(task), None)
            if entry:
                data[kata] = entry
            else:
                data.pop(kata, None)
            _write_json(self.path, data)

    def step(self, kata: str, task: int, count: int, how: str = "next") -> list[int]:
        """The indexes (0-based) of the hints to show now, and keep the new position.

        ``next`` the one after the last shown (the last again at the end), ``again`` the
        last shown, ``back`` the one before it, ``all`` every one."""
        shown = min(self.position(kata, task), count)
        if how == "all":
            indexes = list(range(count))
        elif how == "again":
            indexes = [max(shown - 1, 0)]
        elif how == "back":
            indexes = [max(shown - 2, 0)]
        else:
            indexes = [min(shown, count - 1)]
        self._set(kata, task, indexes[-1] + 1)
        return indexes

    def reset(self, kata: str, task: int | None = None) -> None:
        if self.path.exists():
            self._set(kata, task, 0)


# -- reset: backups and the pristine stub ----------------------------------------------------


def _stamp() -> str:
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S")


def backup(root: Path, kata: Kata) -> Path:
    """Copy the learner's file to ``.katas/backup/<kata>-<timestamp>.py``; its path."""
    folder = _ensure(root) / "backup"
    folder.mkdir(exist_ok=True)
    target = folder / f"{kata.name}-{_stamp()}.py"
    number = 1
    while target.exists():
        number += 1
        target = folder / f"{kata.name}-{_stamp()}-{number}.py"
    target.write_bytes(kata.stub.read_bytes())
    return target


def _relative(root: Path, path: Path) -> str:
    return path.resolve().relative_to(Path(root).resolve()).as_posix()


def committed_stub(root: Path, kata: Kata) -> bytes | None:
    """The kata's file as committed (``git show HEAD:<path>``), or None: no git, not a
    checkout, or the file is not tracked."""
    try:
        relative = _relative(root, kata.stub)
        done = subprocess.run(  # noqa: S603 - fixed arguments, no shell
            ["git", "-C", str(root), "show", f"HEAD:./{relative}"],  # noqa: S607
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _stub_copy(root: Path, kata: Kata) -> tuple[Path, Path]:
    folder = store_dir(root) / "stubs"
    return folder / f"{kata.name}.py", folder / f"{kata.name}.py.sha256"


def save_pristine(root: Path, katas: Iterable[Kata]) -> None:
    """Keep a copy of each kata's committed stub in ``.katas/stubs/`` (with its sha256),
    once, for ``katas reset`` where git is gone later. Never fails."""
    for kata in katas:
        copy, digest = _stub_copy(root, kata)
        if copy.exists() and digest.exists():
            continue
        content = committed_stub(root, kata)
        if content is None:
            continue
        with contextlib.suppress(OSError):
            _ensure(root)
            copy.parent.mkdir(exist_ok=True)
            copy.write_bytes(content)
            digest.write_text(hashlib.sha256(content).hexdigest() + "\n", encoding="utf-8")


def pristine_stub(root: Path, kata: Kata) -> tuple[bytes, str] | None:
    """The stub to put back, and where it came from: git's HEAD, else the copy kept in
    ``.katas/stubs/`` if it still matches the sha256 noted when it was taken. None if
    there is no copy to trust."""
    content = committed_stub(root, kata)
    if content is not None:
        return content, "git HEAD"
    copy, digest = _stub_copy(root, kata)
    try:
        data = copy.read_bytes()
        expected = digest.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    if hashlib.sha256(data).hexdigest() != expected:
        return None
    return data, f"{STORE}/stubs/{copy.name}"
