"""Shared helpers for the self-check: running a kata's tests in a fresh pytest and reading
back what happened to each test."""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import os
import re
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KATAS = ROOT / "katas"
MUTANTS = Path(__file__).resolve().parent / "mutants"
ATTACKS = Path(__file__).resolve().parent / "attacks"
VARIANTS = Path(__file__).resolve().parent / "variants"
RUN_TIMEOUT = 600
# Submissions, not tests of ours: an attack's conftest.py must never be loaded here.
collect_ignore_glob = ["attacks/*", "mutants/*", "variants/*"]
_KIND = re.compile(r"^([A-Z]+): ")
# The suite runs as if this environment were activated (as tox does), so the commands the
# plugin prints for a learner are spelled `pytest ...` and `katas ...` whoever runs it.
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
# ... and in English whatever the machine's locale (tests of Chinese output set their own).
for _name in ("LC_ALL", "LC_MESSAGES", "LANGUAGE", "PYTEST_KATA_LANG"):
    os.environ.pop(_name, None)
os.environ["LANG"] = "C.UTF-8"


@dataclasses.dataclass
class Case:
    name: str
    status: str  # passed, failed, error, skipped
    kind: str | None
    text: str


@dataclasses.dataclass
class Run:
    returncode: int
    cases: dict[str, Case]
    output: str

    def failed(self) -> list[Case]:
        return [c for c in self.cases.values() if c.status in ("failed", "error")]

    def explain(self) -> str:
        return self.output[-4000:]


def _cases(junit: Path) -> dict[str, Case]:
    cases = {}
    if not junit.exists():
        return cases
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = case.get("name", "")
        status, text = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                status = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                text = (node.text or "") or node.get("message", "")
                break
        match = _KIND.match(text)
        cases[name] = Case(name, status, match.group(1).lower() if match else None, text)
    return cases


def run_kata(
    kata: str,
    target: str,
    tmp_path: Path,
    *args: str,
    method: str | None = None,
    apart: bool = False,
) -> Run:
    """``pytest katas/<kata> --kata-target=<target>`` in a fresh process, never hanging;
    ``apart``: with the test bodies of pipe, manager and pool apart from learner code, as
    ``katas grade`` runs them."""
    junit = tmp_path / f"junit-{kata}.xml"
    command = [
        sys.executable,
        "-m",
        "pytest",
        f"katas/{kata}",
        f"--kata-target={target}",
        "-p",
        "no:cacheprovider",
        "-q",
        f"--junitxml={junit}",
        "-o",
        "junit_logging=no",
        *args,
    ]
    if method:
        command.append(f"--kata-start-method={method}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    if apart:
        env["PYTEST_KATA_ORACLE_APART"] = "1"
    returncode, output = run_command(
        command, env, what=f"pytest katas/{kata} --kata-target={target}"
    )
    return Run(returncode, _cases(junit), output)


def run_command(
    command: list[str], env: dict[str, str], timeout: float = RUN_TIMEOUT, what: str = ""
) -> tuple[int, str]:
    """``(exit code, output)`` of ``command`` run from the repository root in a session of
    its own, never hanging: at ``timeout`` its whole group is killed and the test fails."""
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        text=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"{what or ' '.join(command)} hung for {timeout:g} s")
    return proc.returncode, output


def katas() -> list[str]:
    return sorted(p.parent.name for p in KATAS.glob("*/kata.toml"))


def kata_test_names(kata: str) -> list[str]:
    """The test functions of ``katas/<kata>/test_<kata>.py``, in file order (read, not run)."""
    tree = ast.parse((KATAS / kata / f"test_{kata}.py").read_text(encoding="utf-8"))
    return [
        n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")
    ]


def samples(folder: Path) -> list[tuple[str, Path]]:
    """``(kata, file)`` for every mutant or variant file kept under ``folder``."""
    return sorted(
        (path.parent.name, path) for path in folder.glob("*/*.py") if path.parent.name in katas()
    )


def expected_kinds(path: Path, key: str = "expect") -> set[str]:
    """The ``expect: a, b`` line of a mutant's docstring (or another ``key:`` line)."""
    for line in path.read_text(encoding="utf-8").splitlines()[:10]:
        if line.startswith(f"{key}:"):
            return {k.strip() for k in line.removeprefix(f"{key}:").split(",") if k.strip()}
    return set()


pytest_plugins = ["pytester"]


def write_kata(
    pytester: pytest.Pytester,
    impl: str,
    tests: str,
    timeout: float = 3,
    name: str = "demo",
    tasks: list[tuple[int, list[str]]] | None = None,
) -> Path:
    """A kata in pytester's folder, implemented by ``impl``; one task for all tests unless
    ``tasks`` gives ``(points, test names)`` per task."""
    folder = pytester.path / "katas" / name
    folder.mkdir(parents=True)
    if tasks is None:
        tasks = [(1, re.findall(r"^def (test_\w+)", tests, re.MULTILINE))]
    toml = f'title = "{name}"\norder = 1\ntimeout = {timeout}\n'
    for number, (points, names) in enumerate(tasks, 1):
        listed = ", ".join(f'"{n}"' for n in names)
        toml += (
            f'\n[[tasks]]\nid = {number}\ntitle = "task {number}"\npoints = {points}\n'
            f'tests = [{listed}]\nhints = ["first hint", "second hint"]\n'
        )
    (folder / "kata.toml").write_text(toml, encoding="utf-8")
    (folder / f"{name}.py").write_text(impl, encoding="utf-8")
    (folder / f"test_{name}.py").write_text(tests, encoding="utf-8")
    (folder / "README.md").write_text(f"# {name}\n", encoding="utf-8")
    return folder


def pids_left(path: Path) -> list[int]:
    """Pids the learner code recorded in ``path`` that are still alive (zombies count)."""
    import psutil

    if not path.exists():
        return []
    pids = [int(line) for line in path.read_text(encoding="utf-8").split()]
    return [pid for pid in pids if psutil.pid_exists(pid)]


@contextlib.contextmanager
def ctrl_c_as_in_a_terminal() -> Iterator[None]:
    """Processes started inside get Ctrl-C (SIGINT) as a learner's terminal gives it.

    A suite started as a background job of a script (``tox &`` with no job control, as a CI
    runner may) has SIGINT ignored, and a child inherits an ignored signal: ``katas watch``
    would then never see the Ctrl-C a test sends it. A handled signal is reset to its default
    in a child, so this handles it here while the child starts (main thread only)."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


# The longest runs start first, so that no worker is left with one at the end while the
# others idle: spawn and forkserver runs of whole katas, then everything else in file order.
_LONGEST_FIRST = ("spawn", "forkserver")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def longest_first(item: pytest.Item) -> int:
        callspec = getattr(item, "callspec", None)
        method = callspec.params.get("method") if callspec is not None else None
        return 0 if method in _LONGEST_FIRST else 1

    items.sort(key=longest_first)
