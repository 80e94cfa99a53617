"""Finding katas and their manifests, and the target switch (katas/, solutions/ or a file)."""

from __future__ import annotations

import dataclasses
import os
import sys
from functools import cache
from pathlib import Path
from typing import Any, Final, final

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = [
    "KATA_MANIFEST",
    "Kata",
    "KataError",
    "Task",
    "find_kata",
    "list_katas",
    "resolve_target",
]

KATA_MANIFEST: Final = "kata.toml"
BUILTIN_TARGETS: Final = ("katas", "solutions")


class KataError(Exception):
    """A problem with a kata's files that the user must fix; the message says how."""


@final
@dataclasses.dataclass(frozen=True)
class Task:
    id: int
    title: str
    points: int
    tests: tuple[str, ...]
    hints: tuple[str, ...]


@final
@dataclasses.dataclass(frozen=True)
class Kata:
    """One kata: its folder under katas/, its manifest, and where its targets live."""

    name: str
    directory: Path
    title: str
    order: int
    timeout: float | None
    tasks: tuple[Task, ...]

    @property
    def root(self) -> Path:
        """The repository root: the folder holding katas/ and solutions/."""
        return self.directory.parent.parent

    @property
    def stub(self) -> Path:
        return self.directory / f"{self.name}.py"

    @property
    def lesson(self) -> Path:
        return self.directory / "README.md"

    @property
    def module_name(self) -> str:
        """The name learner code is imported under, in the test process and every child."""
        return f"kata_{self.name}"

    def task_of(self, test_name: str) -> Task | None:
        base = test_name.split("[", 1)[0]
        for task in self.tasks:
            if base in task.tests:
                return task
        return None

    def relpath(self, path: Path | str) -> str:
        """A path as the user knows it: relative to the repository root where possible."""
        try:
            return str(Path(path).resolve().relative_to(self.root.resolve()))
        except ValueError:
            return str(path)


def _require(data: dict[str, Any], key: str, kind: type, where: Path) -> Any:
    if key not in data:
        raise KataError(f"{where}: the key {key!r} is missing")
    value = data[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise KataError(f"{where}: {key!r} must be a {kind.__name__}, not {value!r}")
    return value


def _load_task(raw: Any, where: Path) -> Task:
    if not isinstance(raw, dict):
        raise KataError(f"{where}: every [[tasks]] entry must be a table")
    hints = _require(raw, "hints", list, where)
    tests = _require(raw, "tests", list, where)
    return Task(
        id=_require(raw, "id", int, where),
        title=_require(raw, "title", str, where),
        points=_require(raw, "points", int, where),
        tests=tuple(str(t) for t in tests),
        hints=tuple(str(h) for h in hints),
    )


@cache
def load_kata(directory: Path) -> Kata:
    """Read ``directory/kata.toml``; raise KataError naming the file on any mistake."""
    manifest = directory / KATA_MANIFEST
    try:
        data = tomllib.loads(manifest.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise KataError(f"{manifest}: not valid TOML: {exc}") from None
    timeout = data.get("timeout")
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
        raise KataError(f"{manifest}: 'timeout' must be a positive number of seconds")
    tasks = tuple(_load_task(raw, manifest) for raw in data.get("tasks", []))
    if not tasks:
        raise KataError(f"{manifest}: a kata needs at least one [[tasks]] entry")
    return Kata(
        name=directory.name,
        directory=directory,
        title=_require(data, "title", str, manifest),
        order=_require(data, "order", int, manifest),
        timeout=float(timeout) if timeout is not None else None,
        tasks=tasks,
    )


def find_kata(path: Path) -> Kata | None:
    """The kata a test file belongs to: the nearest folder above it with a kata.toml."""
    for folder in (path, *path.parents) if path.is_dir() else path.parents:
        if (folder / KATA_MANIFEST).is_file():
            return load_kata(folder.resolve())
    return None


def list_katas(katas_dir: Path) -> list[Kata]:
    """Every kata under ``katas_dir``, in curriculum order."""
    found = [
        load_kata(child.resolve())
        for child in sorted(katas_dir.iterdir())
        if (child / KATA_MANIFEST).is_file()
    ]
    return sorted(found, key=lambda kata: (kata.order, kata.name))


def resolve_target(kata: Kata, target: str) -> Path:
    """The file that implements ``kata`` for ``--kata-target=target``.

    ``katas`` is the learner's stub, ``solutions`` the reference solution; any other value
    is a folder laid out like katas/ (``<folder>/<kata>/<kata>.py``) or a single .py file.
    """
    if target == "katas":
        candidate = kata.stub
    elif target == "solutions":
        candidate = kata.root / "solutions" / kata.name / f"{kata.name}.py"
    else:
        given = Path(os.path.expanduser(target))
        candidate = given if given.suffix == ".py" else given / kata.name / f"{kata.name}.py"
    if not candidate.is_file():
        raise KataError(
            f"--kata-target={target}: there is no {kata.relpath(candidate)} to test "
            f"the {kata.name} kata against. It should mirror {kata.relpath(kata.stub)}."
        )
    return candidate.resolve()


def check_target_option(value: str) -> str:
    """Validate ``--kata-target`` early, so a typo fails before any test runs."""
    if value in BUILTIN_TARGETS:
        return value
    path = Path(os.path.expanduser(value))
    if path.suffix == ".py" and path.is_file() or path.is_dir():
        return value
    raise KataError(
        f"--kata-target={value}: expected 'katas' (your code, the default), 'solutions' "
        "(the reference), a folder laid out like katas/, or a .py file; "
        f"{value!r} is none of these"
    )
