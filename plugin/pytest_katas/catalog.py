"""Finding katas and their manifests, and the target switch (katas/, solutions/ or a file).

A run reads and checks every kata.toml it points into once, at session start
(:func:`load_all`), and uses those :class:`Kata` objects from then on, whatever happens to
the files meanwhile. A kata.toml with a mistake loads as a *broken* kata: ``kata.problem``
says what is wrong, where, and what to do, and only that kata's tests fail.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import sys
from collections.abc import Iterable
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
    "amount_problem",
    "bad_amount",
    "find_kata",
    "kata_at",
    "kata_names",
    "list_katas",
    "load_all",
    "load_kata",
    "resolve_target",
    "show_value",
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
    """One kata: its folder under katas/, its manifest, and where its targets live.

    ``problem`` is set when its kata.toml could not be used: the kata is broken, its tests
    fail with that message, and it scores 0. Whatever of the manifest could be read is kept
    (a bad timeout leaves the tasks, so the kata's points still show).
    """

    name: str
    directory: Path
    title: str
    order: int
    timeout: float | None
    tasks: tuple[Task, ...]
    problem: str | None = None
    # Where the test body runs while ``katas grade`` grades: "beside" the learner's code, in
    # its process, or "apart" from it, calling it in a process of its own (see remote.py).
    oracle: str = "beside"

    @property
    def root(self) -> Path:
        """The repository root: the folder holding katas/ and solutions/."""
        return self.directory.parent.parent

    @property
    def manifest(self) -> str:
        """Its kata.toml as the user knows it: ``katas/<kata>/kata.toml``."""
        return f"{self.directory.parent.name}/{self.directory.name}/{KATA_MANIFEST}"

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

    def to_json(self) -> dict[str, Any]:
        """What an xdist worker needs to rebuild this kata exactly (see :func:`install`)."""
        data = dataclasses.asdict(self)
        data["directory"] = str(self.directory)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Kata:
        fields = dict(data)
        tasks = tuple(
            Task(
                id=t["id"],
                title=t["title"],
                points=t["points"],
                tests=tuple(t["tests"]),
                hints=tuple(t["hints"]),
            )
            for t in fields.pop("tasks")
        )
        return cls(**{**fields, "directory": Path(fields["directory"]), "tasks": tasks})


# -- values ---------------------------------------------------------------------------------

ORACLES: Final = ("beside", "apart")


def show_value(value: object) -> str:
    """A value the way the user wrote it in TOML: ``inf``, ``true``, ``"10"``, ``-1``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return repr(value)


def bad_amount(value: object, whole: bool = False) -> str | None:
    """Why ``value`` (a typed value: from TOML or a marker) is no amount above 0, or None.

    An amount is a finite number above 0 (a whole number when ``whole``), never a bool or a
    string. The answer is "" when "is not a number above 0" says it all, else a reason.
    """
    if isinstance(value, bool):
        return "true and false are yes/no values, not numbers"
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return "it is text"
        return "it is in quotes, so it is text: drop the quotes"
    if not isinstance(value, (int, float)):
        return f"it is a {type(value).__name__}"
    if math.isinf(value) and value > 0:
        return "a limit of inf never ends, so a hanging test would hang the whole run"
    if math.isnan(value) or value <= 0 or (whole and not isinstance(value, int)):
        return ""
    return None


def amount_problem(subject: str, what: str, example: str, why: str) -> str:
    """The message for a bad amount: ``<subject> is not <what> above 0; set it to e.g.
    <example>``, with the reason in brackets when there is more to say."""
    reason = f" ({why})" if why else ""
    return f"{subject} is not {what} above 0{reason}; set it to e.g. {example}"


# -- reading kata.toml ----------------------------------------------------------------------


class _Problem(Exception):
    """A mistake in a kata.toml; its message is the whole user-facing sentence."""


_TOML_AT: Final = re.compile(r"^(?P<msg>.*?)\s*\(at line (?P<line>\d+), column (?P<col>\d+)\)$")


def _toml_problem(where: str, exc: tomllib.TOMLDecodeError) -> str:
    text = str(exc)
    match = _TOML_AT.match(text)
    if match is None:
        return f"{where}: not valid TOML: {text}"
    return (
        f"{where}, line {match['line']}: not valid TOML: {match['msg']} "
        f"(column {match['col']}); fix that line"
    )


def _amount(
    data: dict[str, Any], key: str, where: str, what: str, example: str, *, whole: bool
) -> Any:
    value = data[key]
    why = bad_amount(value, whole=whole)
    if why is not None:
        subject = f"{where}: {key} = {show_value(value)}"
        raise _Problem(amount_problem(subject, what, example, why))
    return value


def _text(data: dict[str, Any], key: str, where: str, example: str) -> str:
    if key not in data:
        raise _Problem(f"{where}: the key {key!r} is missing; add e.g. {key} = {example}")
    value = data[key]
    if not isinstance(value, str) or not value.strip():
        raise _Problem(
            f"{where}: {key} = {show_value(value)} is not a text; set it to e.g. {key} = {example}"
        )
    return value


def _texts(data: dict[str, Any], key: str, where: str, example: str) -> tuple[str, ...]:
    if key not in data:
        raise _Problem(f"{where}: the key {key!r} is missing; add e.g. {key} = {example}")
    value = data[key]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise _Problem(
            f"{where}: {key} = {show_value(value)} is not a list of texts with at least one "
            f"entry; set it to e.g. {key} = {example}"
        )
    return tuple(value)


def _whole(data: dict[str, Any], key: str, where: str, what: str, example: str) -> int:
    if key not in data:
        raise _Problem(f"{where}: the key {key!r} is missing; add e.g. {key} = {example}")
    return int(_amount(data, key, where, what, example, whole=True))


def _tasks(data: dict[str, Any], manifest: str) -> tuple[Task, ...]:
    raw = data.get("tasks", [])
    if not isinstance(raw, list) or not raw:
        raise _Problem(
            f"{manifest}: a kata needs at least one [[tasks]] entry, each with id, title, "
            "points, tests and hints"
        )
    tasks: list[Task] = []
    for number, entry in enumerate(raw, 1):
        where = f"{manifest}: [[tasks]] entry {number}"
        if not isinstance(entry, dict):
            raise _Problem(f"{where} is not a table; write it as a [[tasks]] section")
        task_id = _whole(entry, "id", where, "a whole number", str(number))
        if any(t.id == task_id for t in tasks):
            raise _Problem(
                f"{where}: id = {task_id} is taken by an earlier task; "
                "number the tasks 1, 2, 3, ..."
            )
        tasks.append(
            Task(
                id=task_id,
                title=_text(entry, "title", where, '"what this task asks"'),
                points=_whole(entry, "points", where, "a whole number of points", "1"),
                tests=_texts(entry, "tests", where, '["test_name"]'),
                hints=_texts(entry, "hints", where, '["a gentle hint", "a plainer one"]'),
            )
        )
    return tuple(tasks)


def read_kata(directory: Path, text: str | None = None) -> Kata:
    """Read and check ``directory/kata.toml`` (or ``text``, its contents) now.

    Never raises for a mistake in the file: the kata comes back broken, with ``problem``
    saying what is wrong (file and key, or line for invalid TOML) and what to do.
    """
    manifest = f"{directory.parent.name}/{directory.name}/{KATA_MANIFEST}"
    kata = Kata(directory.name, directory, directory.name, 0, None, ())
    try:
        if text is None:
            text = (directory / KATA_MANIFEST).read_text(encoding="utf-8")
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise _Problem(_toml_problem(manifest, exc)) from None
        # What reads well is kept as it goes, so a broken kata still shows its points.
        kata = dataclasses.replace(kata, tasks=_tasks(data, manifest))
        kata = dataclasses.replace(kata, title=_text(data, "title", manifest, '"Pipes"'))
        order = _whole(data, "order", manifest, "a whole number (the kata's place)", "1")
        kata = dataclasses.replace(kata, order=order)
        if "timeout" in data:
            seconds = _amount(data, "timeout", manifest, "a number of seconds", "10", whole=False)
            kata = dataclasses.replace(kata, timeout=float(seconds))
        if "oracle" in data:
            oracle = data["oracle"]
            if oracle not in ORACLES:
                raise _Problem(
                    f"{manifest}: oracle = {show_value(oracle)} is not one of "
                    f'{", ".join(map(repr, ORACLES))}; set it to e.g. oracle = "apart"'
                )
            kata = dataclasses.replace(kata, oracle=oracle)
    except _Problem as exc:
        return dataclasses.replace(kata, problem=str(exc))
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        return dataclasses.replace(kata, problem=f"{manifest}: cannot be read ({why})")
    return kata


# -- the katas of this run ------------------------------------------------------------------

_katas: dict[Path, Kata] = {}  # every kata this process has read, by its resolved folder


def load_all(katas_dirs: Iterable[Path]) -> list[Kata]:
    """Read every kata.toml in these folders (each holds katas, like katas/) now, and keep
    them for the rest of the process: later look-ups never read those files again."""
    found = []
    for folder in sorted({Path(d).resolve() for d in katas_dirs}):
        if not folder.is_dir():
            continue
        for child in sorted(folder.iterdir()):
            if (child / KATA_MANIFEST).is_file():
                child = child.resolve()
                kata = _katas[child] = read_kata(child)
                found.append(kata)
    return found


def snapshot() -> list[dict[str, Any]]:
    """Every kata read so far, for :func:`install` in an xdist worker."""
    return [kata.to_json() for kata in _katas.values()]


def install(katas: Iterable[dict[str, Any]]) -> None:
    """Use these katas (the controller's :func:`snapshot`) instead of reading the files."""
    for data in katas:
        kata = Kata.from_json(data)
        _katas[kata.directory] = kata


def kata_at(directory: Path) -> Kata:
    """The kata in ``directory`` as this run read it (read now if it never was); it may be
    broken: see ``Kata.problem``."""
    folder = Path(directory).resolve()
    kata = _katas.get(folder)
    if kata is None:
        kata = _katas[folder] = read_kata(folder)
    return kata


def load_kata(directory: Path) -> Kata:
    """The kata in ``directory``; raise KataError, naming the file and key, on any mistake."""
    kata = kata_at(directory)
    if kata.problem is not None:
        raise KataError(kata.problem)
    return kata


def find_kata(path: Path) -> Kata | None:
    """The kata a test file belongs to: the nearest folder above it with a kata.toml.

    The kata may be broken (``kata.problem``); :func:`resolve_target` refuses those.
    """
    path = Path(path).resolve()
    for folder in (path, *path.parents) if path.is_dir() else path.parents:
        if folder in _katas:
            return _katas[folder]
        if (folder / KATA_MANIFEST).is_file():
            return kata_at(folder)
    return None


def kata_names(katas_dir: Path) -> list[str]:
    """The names of the katas under ``katas_dir``, in curriculum order; never fails on a
    broken kata.toml (that kata comes first)."""
    found = [read_kata(c) for c in sorted(katas_dir.iterdir()) if (c / KATA_MANIFEST).is_file()]
    return [k.name for k in sorted(found, key=lambda kata: (kata.order, kata.name))]


def list_katas(katas_dir: Path) -> list[Kata]:
    """Every kata under ``katas_dir``, in curriculum order; KataError if one is broken."""
    found = [
        load_kata(child)
        for child in sorted(katas_dir.iterdir())
        if (child / KATA_MANIFEST).is_file()
    ]
    return sorted(found, key=lambda kata: (kata.order, kata.name))


def resolve_target(kata: Kata, target: str) -> Path:
    """The file that implements ``kata`` for ``--kata-target=target``.

    ``katas`` is the learner's stub, ``solutions`` the reference solution; any other value
    is a folder laid out like katas/ (``<folder>/<kata>/<kata>.py``) or a single .py file.
    A broken kata has no target: KataError with its problem.
    """
    if kata.problem is not None:
        raise KataError(kata.problem)
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
