"""Detection of thread races: the controlled scheduler's strategies against schedule noise,
plain repetition, pytest-run-parallel and frontrun, side by side in one run.

Five counters, each with ``increment(by=1)`` and a read-only ``value``, kept in
bench/cases/explore/: three wrong ones (``wrong_*.py``) and two correct ones (``right_*.py``).
Each is tested ``--runs`` times in every mode, a fresh pytest each time with a new seed:

- ``dfs``, ``pct``, ``random``: this plugin's controlled scheduler with that strategy, on a
  throwaway kata whose one test runs 2 threads x 2 increments under ``kata_stress``;
- ``noise``: the same test under the plugin's schedule noise (``--kata-scheduler=noise
  --kata-trace=off``), 8 threads x 500 increments, for the stress budget;
- ``repeat``: the same without the noise (``--kata-noise=off``): plain repetition;
- ``run-parallel``: ``repeat``, with the test run in 4 threads at once by pytest-run-parallel
  (as bench/compare.py does);
- ``frontrun-dpor``, ``frontrun-random``: a frontrun test per counter
  (bench/cases/explore/frontrun_template.py, 2 workers x 2 increments), run through the
  ``frontrun`` command wrapper; DPOR has no seed, so its runs differ only in timing.

For each run: the verdict (a timeout or a broken run is "no verdict"), the test's own time
(its call phase, from the JUnit XML), the whole command's wall time, how many schedules (or
runs) it tried, and, for a failure of dfs/pct/random, whether running the printed
``--kata-schedule=`` replay shows the very same interleaving table, byte for byte.

Usage::

    pip install -e "./plugin[dev]" -r bench/requirements.txt
    python bench/explore.py [--runs 20] [--quick] [--modes dfs,noise] [--cases wrong_unlocked]

Writes bench/out/explore.md (the tables), explore.json (every run) and explore.png (median time
to detection per mode, if matplotlib is installed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import random
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
CASES = BENCH / "cases" / "explore"
OUT = BENCH / "out"
KATA = "tally"
TEST = "test_no_increment_is_lost"

OURS = {
    "dfs": ["--kata-scheduler=controlled", "--kata-explore=dfs"],
    "pct": ["--kata-scheduler=controlled", "--kata-explore=pct"],
    "random": ["--kata-scheduler=controlled", "--kata-explore=random"],
    "noise": ["--kata-scheduler=noise", "--kata-noise=on", "--kata-trace=off"],
    "repeat": ["--kata-scheduler=noise", "--kata-noise=off", "--kata-trace=off"],
    "run-parallel": [
        "--kata-scheduler=noise",
        "--kata-noise=off",
        "--kata-trace=off",
        "--parallel-threads=4",
    ],
}
FRONTRUN = {"frontrun-dpor": "dpor", "frontrun-random": "random"}
MODES = [*OURS, *FRONTRUN]
CONTROLLED = ("dfs", "pct", "random")

_CLASS = re.compile(r"^([A-Z]+): ", re.MULTILINE)
_REPLAY = re.compile(r"^Replay this exact schedule: (pytest .*)$", re.MULTILINE)
_SCHEDULE_K = re.compile(r"\(schedule (\d+) of the \w+ search")
_RUN_N = re.compile(r"\(run (\d+) of a stress test")
_COUNT = re.compile(r"(\d+) (?:\w+ )?(?:schedule|run)\(s\)")
_DIVERGED = "did not fit this code"

_KATA_TOML = f"""title = "A tally for bench/explore.py"
order = 1
timeout = 30

[[tasks]]
id = 1
title = "no increment is lost"
points = 1
tests = ["{TEST}"]
hints = ["one lock", "around the read and the write"]
"""
_STUB = '''"""The stub: bench/explore.py tests the cases with --kata-target."""


class Counter:
    def increment(self, by: int = 1) -> None:
        raise NotImplementedError

    @property
    def value(self) -> int:
        raise NotImplementedError
'''


@dataclasses.dataclass
class Result:
    case: str
    mode: str
    run: int
    seed: int
    verdict: str  # fail, pass, timeout, error
    wall: float
    seconds: float | None = None  # the test's call phase
    schedules: int | None = None
    kind: str | None = None
    replay: str | None = None  # same, differs, passed, none (controlled failures only)
    replay_diverged: bool = False
    note: str = ""

    @property
    def verdict_given(self) -> bool:
        return self.verdict in ("fail", "pass")


def cases(only: str | None) -> list[Path]:
    found = sorted(CASES.glob("wrong_*.py")) + sorted(CASES.glob("right_*.py"))
    return [p for p in found if only is None or p.stem in only.split(",")]


def is_wrong(case: str) -> bool:
    return case.startswith("wrong_")


def build(workdir: Path, case_files: list[Path]) -> None:
    """The throwaway kata (for our modes) and one frontrun test folder per case."""
    kata = workdir / "katas" / KATA
    kata.mkdir(parents=True)
    (kata / "kata.toml").write_text(_KATA_TOML, encoding="utf-8")
    (kata / f"{KATA}.py").write_text(_STUB, encoding="utf-8")
    shutil.copy(CASES / "kata_template.py", kata / f"test_{KATA}.py")
    (kata / "README.md").write_text(f"# {KATA}\n", encoding="utf-8")
    for case in case_files:
        folder = workdir / "frontrun" / case.stem
        folder.mkdir(parents=True)
        shutil.copy(case, folder / "counter.py")
        shutil.copy(CASES / "frontrun_template.py", folder / f"test_{case.stem}.py")


# Where the copy of the plugin taken at the start lives: the subprocesses import it first, so
# the whole benchmark measures one version even while someone edits plugin/.
_FROZEN: list[Path] = []


def freeze(workdir: Path) -> None:
    target = workdir / "plugin"
    shutil.copytree(
        ROOT / "plugin" / "pytest_katas",
        target / "pytest_katas",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    _FROZEN.append(target)
    where = subprocess.run(
        [sys.executable, "-c", "import pytest_katas; print(pytest_katas.__file__)"],
        env=environment(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not where.startswith(str(target)):
        raise SystemExit(f"the copy of the plugin is not the one imported ({where})")


def environment(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "FRONTRUN_")) and k != "LD_PRELOAD"
    }
    if _FROZEN:
        env["PYTHONPATH"] = os.pathsep.join(
            [str(_FROZEN[0]), *filter(None, [env.get("PYTHONPATH")])]
        )
    env.update(extra)
    return env


def _kill_tree(proc: subprocess.Popen[str]) -> None:
    """Everything the timed-out command started (the plugin's sandboxes have their own
    process groups), then its own group."""
    import psutil

    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def launch(
    command: list[str], cwd: Path, env: dict[str, str], timeout: float
) -> tuple[int | None, str, float]:
    started = time.monotonic()
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        _kill_tree(proc)
        output, _ = proc.communicate()
        code = None
    return code, output, time.monotonic() - started


@dataclasses.dataclass
class Junit:
    status: str  # passed, failed, skipped, missing
    seconds: float | None
    text: str
    properties: dict[str, str]


def read_junit(path: Path) -> Junit:
    if not path.exists():
        return Junit("missing", None, "", {})
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        return Junit("missing", None, "", {})
    cases = list(root.iter("testcase"))
    if len(cases) != 1:
        return Junit("missing", None, "", {})
    case = cases[0]
    status, text = "passed", ""
    for tag in ("failure", "error", "skipped"):
        node = case.find(tag)
        if node is not None:
            status = "skipped" if tag == "skipped" else "failed"
            text = (node.text or "") or node.get("message", "")
            break
    properties = {p.get("name", ""): p.get("value", "") for p in case.iter("property")}
    seconds = float(case.get("time", "nan"))
    return Junit(status, seconds, text, properties)


def pytest_flags(junit: Path, *disabled: str) -> list[str]:
    flags = ["-q", "-p", "no:cacheprovider", f"--junitxml={junit}"]
    flags += ["-o", "junit_duration_report=call", "-o", "junit_logging=no"]
    for plugin in disabled:
        flags += ["-p", f"no:{plugin}"]
    return flags


def _verdict(code: int | None, junit: Junit) -> str:
    if code is None:
        return "timeout"
    if code == 0 and junit.status == "passed":
        return "pass"
    if code == 1 and junit.status == "failed":
        return "fail"
    return "error"


def table_of(text: str) -> str | None:
    """The interleaving table of a controlled failure: the lines under its heading, up to the
    first blank line."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("The interleaving that shows it"):
            block = []
            for row in lines[index + 1 :]:
                if not row.strip():
                    break
                block.append(row)
            return "\n".join(block)
    return None


def _first_int(pattern: re.Pattern[str], text: str) -> int | None:
    match = pattern.search(text)
    return int(match.group(1)) if match else None


def run_ours(
    workdir: Path, case: Path, mode: str, run: int, seed: int, args: argparse.Namespace
) -> Result:
    junit = workdir / "junit.xml"
    junit.unlink(missing_ok=True)
    disabled = ["frontrun"] if mode == "run-parallel" else ["frontrun", "run-parallel"]
    command = [
        sys.executable,
        "-m",
        "pytest",
        f"katas/{KATA}",
        f"--kata-target={case}",
        f"--kata-seed={seed}",
        *OURS[mode],
        *pytest_flags(junit, *disabled),
    ]
    if args.budget is not None:
        command.append(f"--kata-stress-budget={args.budget}")
    code, output, wall = launch(command, workdir, environment(), args.timeout)
    report = read_junit(junit)
    result = Result(case.stem, mode, run, seed, _verdict(code, report), wall, report.seconds)
    if result.verdict == "fail":
        kind = _CLASS.search(report.text)
        result.kind = kind.group(1) if kind else report.text.strip().splitlines()[0][:80]
        result.schedules = _first_int(_SCHEDULE_K, report.text) or _first_int(_RUN_N, report.text)
        if mode in CONTROLLED:
            _replay(workdir, report.text, result, args)
    elif result.verdict == "pass":
        explored = report.properties.get("kata_explored", "")
        counts = [int(n) for n in _COUNT.findall(explored)]
        result.schedules = sum(counts) if counts else None
    if not result.verdict_given or (result.verdict == "fail" and not is_wrong(case.stem)):
        result.note = (report.text or output)[-3000:]
    return result


def _replay(workdir: Path, text: str, result: Result, args: argparse.Namespace) -> None:
    """Run the printed replay command; compare its interleaving table with the original's."""
    printed = _REPLAY.search(text)
    original = table_of(text)
    if printed is None or original is None:
        result.replay = "none"
        return
    words = shlex.split(printed.group(1))
    junit = workdir / "replay.xml"
    junit.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        *words,
        *pytest_flags(junit, "frontrun", "run-parallel"),
    ]
    code, output, _ = launch(command, workdir, environment(), args.timeout)
    report = read_junit(junit)
    verdict = _verdict(code, report)
    result.replay_diverged = _DIVERGED in report.text
    if verdict == "fail":
        result.replay = "same" if table_of(report.text) == original else "differs"
    else:
        result.replay = "passed" if verdict == "pass" else "none"
    if result.replay != "same":
        result.note = f"replay: {printed.group(1)}\n{(report.text or output)[-3000:]}"


def frontrun_command() -> str:
    beside = Path(sys.executable).parent / "frontrun"
    found = str(beside) if beside.exists() else shutil.which("frontrun")
    if found is None:
        raise SystemExit("frontrun is not installed: pip install -r bench/requirements.txt")
    return found


def run_frontrun(
    workdir: Path, case: Path, mode: str, run: int, seed: int, args: argparse.Namespace
) -> Result:
    junit = workdir / "junit.xml"
    numbers = workdir / "frontrun.json"
    junit.unlink(missing_ok=True)
    numbers.unlink(missing_ok=True)
    command = [
        frontrun_command(),
        "pytest",
        f"frontrun/{case.stem}",
        *pytest_flags(junit, "katas", "run-parallel"),
    ]
    env = environment(
        BENCH_FRONTRUN_STRATEGY=FRONTRUN[mode], BENCH_SEED=str(seed), BENCH_OUT=str(numbers)
    )
    code, output, wall = launch(command, workdir, env, args.timeout)
    report = read_junit(junit)
    result = Result(case.stem, mode, run, seed, _verdict(code, report), wall, report.seconds)
    facts = json.loads(numbers.read_text(encoding="utf-8")) if numbers.exists() else {}
    result.schedules = facts.get("explored")
    if result.verdict == "fail":
        result.kind = "RACE" if "Race condition found" in report.text else None
        if result.kind is None:
            first = report.text.strip().splitlines()
            result.kind = first[0][:80] if first else "?"
        if facts.get("attempts"):
            result.replay = "same" if facts["reproduced"] == facts["attempts"] else "differs"
            result.note = f"frontrun reproduced {facts['reproduced']}/{facts['attempts']}"
    if not result.verdict_given or (result.verdict == "fail" and not is_wrong(case.stem)):
        result.note = (report.text or output)[-3000:]
    return result


# -- the tables ------------------------------------------------------------------------------


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _count(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _replays(runs: list[Result], mode: str) -> str:
    if mode in FRONTRUN:  # its own check: the failing schedule replayed 10 times, all fail
        tried = [r for r in runs if r.replay is not None]
        same = sum(r.replay == "same" for r in tried)
        return f"{same}/{len(tried)} (its own 10x)" if tried else "-"
    if mode not in CONTROLLED:
        return "n/a"
    tried = [r for r in runs if r.replay is not None]
    if not tried:
        return "-"
    same = sum(r.replay == "same" for r in tried)
    diverged = sum(r.replay_diverged for r in tried)
    text = f"{same}/{len(tried)}"
    return text + (f" ({diverged} 'did not fit')" if diverged else "")


def _kinds(runs: list[Result]) -> str:
    seen: dict[str, int] = {}
    for r in runs:
        if r.verdict == "fail" and r.kind:
            seen[r.kind] = seen.get(r.kind, 0) + 1
    return ", ".join(f"{k} {n}" for k, n in sorted(seen.items())) or "-"


def tables(results: list[Result], modes: list[str], names: list[str]) -> list[str]:
    by: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        by.setdefault((r.mode, r.case), []).append(r)
    wrong = [n for n in names if is_wrong(n)]
    right = [n for n in names if not is_wrong(n)]
    rows = [
        "Every mode, the three wrong counters pooled, then the two correct ones:",
        "",
        "| mode | wrong counters caught | median test time to detection | median wall time "
        "to detection | correct counters failed (false alarms) | median wall time of a pass "
        "| no verdict | replay shows the same table |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode in modes:
        bad = [r for n in wrong for r in by.get((mode, n), [])]
        good = [r for n in right for r in by.get((mode, n), [])]
        if not bad and not good:
            continue
        caught = [r for r in bad if r.verdict == "fail"]
        alarms = [r for r in good if r.verdict == "fail"]
        passes = [r for r in good if r.verdict == "pass"]
        silent = sum(not r.verdict_given for r in bad + good)
        rows.append(
            f"| {mode} | {len(caught)}/{len(bad)} ({len(caught) / max(len(bad), 1):.0%}) "
            f"| {_seconds(_median([r.seconds for r in caught if r.seconds is not None]))} "
            f"| {_seconds(_median([r.wall for r in caught]))} "
            f"| {len(alarms)}/{len(good)} ({len(alarms) / max(len(good), 1):.0%}) "
            f"| {_seconds(_median([r.wall for r in passes]))} | {silent} "
            f"| {_replays(bad + good, mode)} |"
        )
    rows += [
        "",
        "Each counter and mode. Times and schedules are those of the failures for a wrong "
        "counter, of the passes for a correct one; schedules: the failing schedule's number, "
        "or how many a pass tried (for noise, repeat and run-parallel: runs of the scenario, "
        "summed over run-parallel's 4 threads; for frontrun: its num_explored):",
        "",
        "| counter | mode | failed | median test time | median wall time | median schedules "
        "| classes | replay |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in wrong + right:
        for mode in modes:
            runs = by.get((mode, name), [])
            if not runs:
                continue
            failed = [r for r in runs if r.verdict == "fail"]
            timed = failed if is_wrong(name) else [r for r in runs if r.verdict == "pass"]
            silent = sum(not r.verdict_given for r in runs)
            counts = [float(r.schedules) for r in timed if r.schedules is not None]
            rows.append(
                f"| {name} | {mode} | {len(failed)}/{len(runs)}"
                f"{f' ({silent} no verdict)' if silent else ''} "
                f"| {_seconds(_median([r.seconds for r in timed if r.seconds is not None]))} "
                f"| {_seconds(_median([r.wall for r in timed]))} "
                f"| {_count(_median(counts))} | {_kinds(runs)} | {_replays(runs, mode)} |"
            )
    return rows


def plot(results: list[Result], modes: list[str], names: list[str], path: Path) -> bool:
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wrong = [n for n in names if is_wrong(n)]
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    width = 0.8 / max(len(wrong), 1)
    for panel, (axis, field, title) in enumerate(
        zip(
            axes,
            ("seconds", "wall"),
            ("test time to detection (median)", "whole command (median)"),
            strict=True,
        )
    ):
        for offset, name in enumerate(wrong):
            heights, xs = [], []
            for x, mode in enumerate(modes):
                times = [
                    getattr(r, field)
                    for r in results
                    if r.case == name
                    and r.mode == mode
                    and r.verdict == "fail"
                    and getattr(r, field) is not None
                ]
                if times:
                    xs.append(x + (offset - (len(wrong) - 1) / 2) * width)
                    heights.append(statistics.median(times))
            axis.bar(xs, heights, width, label=name if panel == 0 else None)
        axis.set_yscale("log")
        axis.set_xticks(range(len(modes)), modes, rotation=35, ha="right", fontsize=8)
        axis.set_title(title, fontsize=9)
        axis.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("seconds (log); no bar: never caught")
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return True


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def plugin_state() -> str:
    def git(*words: str) -> str:
        proc = subprocess.run(["git", *words], cwd=ROOT, capture_output=True, text=True)
        return proc.stdout.strip()

    dirty = [line for line in git("status", "--porcelain", "plugin").splitlines() if line]
    return git("rev-parse", "--short", "HEAD") + (
        f" with {len(dirty)} uncommitted change(s) under plugin/" if dirty else ""
    )


def header(args: argparse.Namespace, seconds: float, state: str) -> list[str]:
    budget = args.budget if args.budget is not None else "the default (2 s)"
    return [
        f"# bench/explore.py, {time.strftime('%Y-%m-%d')}",
        "",
        f"{args.runs} run(s) per cell, a new seed each; Python {platform.python_version()}, "
        f"{os.cpu_count()} cores; plugin as of {state} (copied at the start); "
        f"frontrun {_version('frontrun')}, pytest-run-parallel {_version('pytest-run-parallel')}; "
        f"stress budget {budget}; "
        f"timeout {args.timeout:g} s per command; the whole benchmark took {seconds / 60:.1f} min.",
        "",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="3 runs per cell: a smoke test")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--cases", help="comma-separated case names (file stems)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per command")
    parser.add_argument("--budget", type=float, help="--kata-stress-budget (default: the plugin's)")
    parser.add_argument("--seed", type=int, help="the seed the runs' seeds are drawn from")
    args = parser.parse_args()
    if args.quick:
        args.runs = 3
    modes = [m for m in args.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(sorted(unknown))}; choose from {MODES}")
    case_files = cases(args.cases)
    names = [c.stem for c in case_files]
    draw = random.Random(args.seed)
    seeds = [draw.randrange(1, 1 << 32) for _ in range(args.runs)]
    OUT.mkdir(exist_ok=True)
    results: list[Result] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-explore-") as temp:
        workdir = Path(temp)
        state = plugin_state()
        freeze(workdir)
        build(workdir, case_files)
        # Run by run, every cell in turn: a slow minute on a shared machine then touches
        # every mode alike, not one of them.
        for run, seed in enumerate(seeds):
            line = []
            for case in case_files:
                for mode in modes:
                    runner = run_frontrun if mode in FRONTRUN else run_ours
                    result = runner(workdir, case, mode, run, seed, args)
                    results.append(result)
                    line.append({"fail": "F", "pass": ".", "timeout": "T"}.get(result.verdict, "E"))
            elapsed = time.monotonic() - started
            print(f"run {run + 1}/{args.runs}  {''.join(line)}  {elapsed:.0f} s", flush=True)
            (OUT / "explore.json").write_text(
                json.dumps([dataclasses.asdict(r) for r in results], indent=1), encoding="utf-8"
            )
    seconds = time.monotonic() - started
    rows = header(args, seconds, state) + tables(results, modes, names)
    text = "\n".join(rows) + "\n"
    (OUT / "explore.md").write_text(text, encoding="utf-8")
    if plot(results, modes, names, OUT / "explore.png"):
        rows.append(f"\n(plot: {OUT / 'explore.png'})")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
