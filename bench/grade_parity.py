"""Every mutant and correct variant gets the same verdict from ``katas grade`` as from pytest.

For each file in tests/mutants/<kata>/ and tests/variants/<kata>/, a submission folder is
built in a temporary directory (``katas/<kata>/<kata>.py`` = the file). All submissions of a
kata are graded by ONE ``katas grade ... --kata <kata> -n 2`` call (in its box, learner code
as nobody where the host allows it), and each file also runs in pytest mode, as the
self-check runs it (``pytest katas/<kata> --kata-target=<file>``, but without ``-x``, so every
test runs), ``--jobs`` at a time. Both modes use the same ``--kata-seed`` and start method.

A verdict is the set of tests that did not pass, each with its failure class (a test the
other mode did not report at all counts as ``missing``; a skipped test counts as not
passed with no class, as the grader's reports have it). The two verdicts of every file
must be equal.

Usage::

    python bench/grade_parity.py [--kata pipe] [--jobs 2] [--start-method spawn]

Prints a table (and writes it to bench/out/grade_parity.md, every message to
grade_parity.json); exits 1 if any file's verdicts differ.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "out"
TESTS = ROOT / "tests"
SETS = {"mutant": TESTS / "mutants", "variant": TESTS / "variants"}
PYTEST_TIMEOUT = 900.0  # one pytest run of one file; katas grade has its own deadline
GRADE_TIMEOUT = 3600.0  # one katas grade call (a whole kata's files)
_KIND = re.compile(r"^([A-Z]+): ")

Verdict = dict[str, str | None]  # failing (or missing) test -> its class


@dataclasses.dataclass
class Sample:
    kata: str
    role: str  # mutant or variant
    path: Path
    expect: str = ""

    @property
    def name(self) -> str:
        return f"{self.role}-{self.path.stem}"


@dataclasses.dataclass
class Side:
    """One mode's answer for one file."""

    tests: dict[str, tuple[str, str | None, str]] = dataclasses.field(default_factory=dict)
    problem: str | None = None  # no usable answer at all: why
    seconds: float = 0.0
    extra: dict[str, object] = dataclasses.field(default_factory=dict)

    def failing(self) -> Verdict:
        return {n: kind for n, (status, kind, _) in self.tests.items() if status != "pass"}


def katas() -> list[str]:
    return sorted(p.parent.name for p in (ROOT / "katas").glob("*/kata.toml"))


def expected(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines()[:10]:
        if line.startswith("expect:"):
            return line.removeprefix("expect:").strip()
    return ""


def samples(only: list[str]) -> list[Sample]:
    found = []
    for kata in katas():
        if only and kata not in only:
            continue
        for role, folder in SETS.items():
            for path in sorted((folder / kata).glob("*.py")):
                found.append(Sample(kata, role, path, expected(path) if role == "mutant" else ""))
    return found


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}


def _run(command: list[str], cwd: Path, timeout: float) -> tuple[int | None, str, float]:
    """Run ``command`` in its own session; on timeout kill that session (ours alone)."""
    started = time.monotonic()
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        text=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        code = None
    return code, output, time.monotonic() - started


# -- pytest mode -----------------------------------------------------------------------------


def _junit(path: Path) -> dict[str, tuple[str, str | None, str]]:
    tests: dict[str, tuple[str, str | None, str]] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        status, text = "pass", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                status = {"failure": "fail", "error": "error", "skipped": "skip"}[tag]
                text = (node.text or "") or node.get("message", "")
                break
        match = _KIND.match(text)
        kind = match.group(1).lower() if match and status != "skip" else None
        name = case.get("name", "")
        if name in tests and tests[name][0] != "pass":  # a test reported twice: keep the failure
            continue
        tests[name] = (status, kind, text)
    return tests


def pytest_mode(sample: Sample, workdir: Path, args: argparse.Namespace) -> Side:
    junit = workdir / f"junit-{sample.kata}-{sample.name}.xml"
    command = [
        sys.executable,
        "-m",
        "pytest",
        f"katas/{sample.kata}",
        f"--kata-target={sample.path}",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        "-p",
        "no:run-parallel",
        "-q",
        f"--junitxml={junit}",
        "-o",
        "junit_logging=no",
        f"--kata-seed={args.seed}",
    ]
    if args.start_method:
        command.append(f"--kata-start-method={args.start_method}")
    code, output, seconds = _run(command, ROOT, PYTEST_TIMEOUT)
    side = Side(seconds=seconds, extra={"exit": code})
    if code is None:
        side.problem = f"pytest did not end in {PYTEST_TIMEOUT:.0f} s"
    elif not junit.exists():
        side.problem = f"pytest exited {code} without a JUnit file: {output[-300:]!r}"
    else:
        try:
            side.tests = _junit(junit)
        except ET.ParseError as exc:
            side.problem = f"pytest exited {code} with a garbled JUnit file: {exc}"
        if not side.tests and not side.problem:
            side.problem = f"pytest exited {code} and ran no test: {output[-300:]!r}"
    return side


# -- grade mode ------------------------------------------------------------------------------


def _submission(sample: Sample, folder: Path) -> Path:
    target = folder / sample.name / "katas" / sample.kata / f"{sample.kata}.py"
    target.parent.mkdir(parents=True)
    shutil.copyfile(sample.path, target)
    return folder / sample.name


def grade_mode(kata: str, batch: list[Sample], workdir: Path, args: argparse.Namespace):
    """One ``katas grade`` call for every file of ``kata``: each file's Side."""
    folder = workdir / f"grade-{kata}"
    submissions = [_submission(s, folder / "submissions") for s in batch]
    report = folder / "reports"
    command = [
        sys.executable,
        "-m",
        "pytest_katas.cli",
        "grade",
        *map(str, submissions),
        "--checkout",
        str(ROOT),
        "--report",
        str(report if len(batch) > 1 else report / f"{batch[0].name}.json"),
        "--kata",
        kata,
        "-n",
        str(args.grade_jobs),
        "--seed",
        str(args.seed),
    ]
    if args.start_method:
        command += ["--start-method", args.start_method]
    code, output, seconds = _run(command, folder, GRADE_TIMEOUT)
    times = dict(re.findall(r"^graded (\S+): .* in (\d+) s ", output, re.MULTILINE))
    sides = {}
    for sample in batch:
        side = Side(seconds=float(times.get(sample.name, "nan")), extra={"call": seconds})
        path = report / f"{sample.name}.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            side.problem = f"katas grade exited {code}, no report: {exc}; {output[-300:]!r}"
            sides[sample.name] = side
            continue
        side.extra.update(
            status=data.get("status"),
            score=data.get("score"),
            max_score=data.get("max_score"),
            message=data.get("message"),
            isolation=(data.get("isolation") or {}).get("summary"),
        )
        for test in data.get("tests", []):
            if test.get("kata") != kata:
                continue
            status = test["status"]
            entry = (status, test.get("failure_class"), test.get("message") or "")
            if test["test"] in side.tests and side.tests[test["test"]][0] != "pass":
                continue
            side.tests[test["test"]] = entry
        if not side.tests:
            side.problem = f"report {data.get('status')}: {data.get('message')}"
        sides[sample.name] = side
    return sides, seconds


# -- comparing -------------------------------------------------------------------------------


def verdict(side: Side, other: Side) -> Verdict:
    """``side``'s failing tests, plus the tests only ``other`` reported, as missing."""
    if side.problem:
        return {"(no answer)": side.problem[:60]}
    found = side.failing()
    for name in other.tests.keys() - side.tests.keys():
        found[name] = "missing"
    return found


def show(v: Verdict) -> str:
    if not v:
        return "pass"
    counts: dict[str, int] = {}
    for kind in v.values():
        counts[str(kind)] = counts.get(str(kind), 0) + 1
    return f"{len(v)} fail: " + ", ".join(
        f"{k}" if n == 1 else f"{k} x{n}" for k, n in sorted(counts.items())
    )


def differences(sample: Sample, grade: Side, plain: Side) -> list[str]:
    lines = []
    names = sorted(grade.tests.keys() | plain.tests.keys())
    if grade.problem or plain.problem:
        lines.append(
            f"  grade: {grade.problem or 'answered'}; pytest: {plain.problem or 'answered'}"
        )
    for name in names:
        g = grade.tests.get(name, ("missing", None, ""))
        p = plain.tests.get(name, ("missing", None, ""))
        if not _agree(list(g), list(p)):
            lines.append(f"  {name}: grade {g[0]}/{g[1]}, pytest {p[0]}/{p[1]}")
            for mode, text in (("grade", g[2]), ("pytest", p[2])):
                if text:
                    head = " | ".join(text.strip().splitlines()[:6])
                    lines.append(f"    {mode} said: {head[:700]}")
    return lines


def _agree(grade: list, plain: list) -> bool:
    """One test's (status, class, message) in both modes: passed in both, or failed in both
    with the same class."""
    g = tuple(grade[:2]) if grade else ("missing", None)
    p = tuple(plain[:2]) if plain else ("missing", None)
    return (g[0] == "pass") == (p[0] == "pass") and (g[0] == "pass" or g[1] == p[1])


def _caught(v: Verdict, expect: str) -> bool:
    kinds = {k.strip() for k in expect.split(",") if k.strip()}
    return bool(v) and set(v.values()) <= kinds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kata", action="append", default=[], help="only this kata (repeatable)")
    parser.add_argument("--jobs", type=int, default=2, help="pytest-mode runs at once")
    parser.add_argument("--grade-jobs", type=int, default=2, help="katas grade's -n")
    parser.add_argument("--start-method", choices=("fork", "spawn", "forkserver"), default=None)
    parser.add_argument("--seed", type=int, default=1, help="the one schedule seed of both modes")
    parser.add_argument(
        "--serial",
        action="store_true",
        help="grade first, pytest after (default: both at once, the grade calls in turn)",
    )
    args = parser.parse_args()
    unknown = set(args.kata) - set(katas())
    if unknown:
        parser.error(f"no kata {', '.join(sorted(unknown))}; the katas are {', '.join(katas())}")
    todo = samples(args.kata)
    by_kata: dict[str, list[Sample]] = {}
    for sample in todo:
        by_kata.setdefault(sample.kata, []).append(sample)
    print(
        f"grade_parity: {len(todo)} files ({sum(s.role == 'mutant' for s in todo)} mutants) in "
        f"{len(by_kata)} katas, seed {args.seed}, start method {args.start_method or 'default'}, "
        f"pytest x{args.jobs}, katas grade -n {args.grade_jobs}",
        flush=True,
    )
    started = time.monotonic()
    grades: dict[tuple[str, str], Side] = {}
    plains: dict[tuple[str, str], Side] = {}
    calls: dict[str, float] = {}
    phase: dict[str, float] = {}
    lock = threading.Lock()
    with tempfile.TemporaryDirectory(prefix="grade-parity-") as tmp:
        workdir = Path(tmp)

        def grade_all() -> None:
            t0 = time.monotonic()
            for kata, batch in by_kata.items():
                sides, seconds = grade_mode(kata, batch, workdir, args)
                with lock:
                    calls[kata] = seconds
                    for name, side in sides.items():
                        grades[kata, name] = side
                print(f"  katas grade --kata {kata}: {len(batch)} files in {seconds:.0f} s")
            phase["grade"] = time.monotonic() - t0

        def plain_all() -> None:
            t0 = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
                futures = {pool.submit(pytest_mode, s, workdir, args): s for s in todo}
                for future in concurrent.futures.as_completed(futures):
                    sample = futures[future]
                    with lock:
                        plains[sample.kata, sample.name] = future.result()
            phase["pytest"] = time.monotonic() - t0

        if args.serial:
            grade_all()
            plain_all()
        else:
            thread = threading.Thread(target=grade_all)
            thread.start()
            plain_all()
            thread.join()
    wall = time.monotonic() - started

    rows, details, records = [], [], []
    for sample in todo:
        key = (sample.kata, sample.name)
        grade, plain = grades.get(key, Side(problem="not graded")), plains[key]
        g, p = verdict(grade, plain), verdict(plain, grade)
        same = g == p
        rows.append(
            f"| {sample.kata} | {sample.path.stem} | {sample.role} | {show(g)} | {show(p)} | "
            f"{'yes' if same else '**NO**'} |"
        )
        if not same:
            details.append(f"{sample.kata}/{sample.path.stem} ({sample.role}):")
            details.extend(differences(sample, grade, plain))
        records.append(
            {
                "kata": sample.kata,
                "file": str(sample.path.relative_to(ROOT)),
                "role": sample.role,
                "expect": sample.expect,
                "same": same,
                "grade": {"verdict": g, **grade.extra, "seconds": grade.seconds},
                "pytest": {"verdict": p, **plain.extra, "seconds": plain.seconds},
                "tests": {
                    n: {
                        "grade": list(grade.tests.get(n, ())),
                        "pytest": list(plain.tests.get(n, ())),
                    }
                    for n in sorted(grade.tests.keys() | plain.tests.keys())
                },
            }
        )
    differ = sum(not r["same"] for r in records)
    tests = sum(len(r["tests"]) for r in records)
    tests_differ = sum(
        not _agree(t["grade"], t["pytest"]) for r in records for t in r["tests"].values()
    )
    mutants = [s for s in todo if s.role == "mutant"]
    variants = [s for s in todo if s.role == "variant"]
    caught = sum(
        _caught(verdict(grades.get(k, Side(problem="?")), plains[k]), s.expect)
        and _caught(verdict(plains[k], grades.get(k, Side(problem="?"))), s.expect)
        for s in mutants
        for k in [(s.kata, s.name)]
    )
    passed = sum(
        not verdict(g, plains[k])
        and not verdict(plains[k], g)
        and g.extra.get("score") == g.extra.get("max_score")
        for s in variants
        for k in [(s.kata, s.name)]
        for g in [grades.get(k, Side(problem="?"))]
    )
    lines = [
        "| kata | file | kind | katas grade | pytest mode | same? |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"{len(records) - differ} of {len(records)} files the same, {differ} different; "
        f"{wall:.0f} s in all (katas grade calls {sum(calls.values()):.0f} s: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in calls.items())
        + f"; pytest runs {phase.get('pytest', 0):.0f} s wall, "
        f"{sum(s.seconds for s in plains.values()):.0f} s summed)",
        f"{tests - tests_differ} of {tests} test outcomes the same, {tests_differ} different",
        f"mutants failed in both modes, only with classes their docstring expects: "
        f"{caught} of {len(mutants)}",
        f"variants passed in both modes (katas grade: full marks): {passed} of {len(variants)}",
    ]
    if details:
        lines += ["", "Differences:", *details]
    text = "\n".join(lines)
    print(text)
    OUT.mkdir(exist_ok=True)
    (OUT / "grade_parity.md").write_text(text + "\n", encoding="utf-8")
    (OUT / "grade_parity.json").write_text(json.dumps(records, indent=2) + "\n", encoding="utf-8")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
