"""Detection of every mutant: this plugin's noise against plain repetition and
pytest-run-parallel, side by side in one run.

For each mutant in tests/mutants and each mode, runs the mutant's kata tests ``--runs``
times (a fresh pytest each time, stopping at the first failure) and records whether it was
caught and how long that took. Modes:

- ``controlled``: this plugin's controlled scheduler (the default), with the trace off, so
  that only a schedule that shows the bug counts;
- ``plugin``: this plugin's schedule noise (``--kata-scheduler=noise``);
- ``plain``: the same stress loops without noise, which is what repeating a test with
  pytest-repeat's ``--count`` amounts to within the same time budget;
- ``run-parallel``: pytest-run-parallel's thread mode (4 threads), noise off, on the
  threads kata's Counter test, the only one written to run in several threads at once.

Usage::

    pip install -r bench/requirements.txt
    python bench/compare.py [--runs 20] [--only threads] [--modes plugin,plain]

Writes bench/out/compare.md (the table), compare.json (every run) and compare.png
(detection probability against time budget, for the race mutants).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "out"
MODES = {
    "controlled": ["--kata-trace=off"],
    "plugin": ["--kata-scheduler=noise", "--kata-noise=on"],
    "plain": ["--kata-scheduler=noise", "--kata-noise=off"],
    "run-parallel": ["--kata-scheduler=noise", "--kata-noise=off", "--parallel-threads=4"],
}
PARALLEL_TESTS = {"threads": "test_increment_loses_no_update_when_threads_add_at_once"}


def mutants(only: str | None) -> list[Path]:
    found = sorted((ROOT / "tests" / "mutants").glob("*/*.py"))
    return [m for m in found if only is None or m.parent.name in only.split(",")]


def expected(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines()[:10]:
        if line.startswith("expect:"):
            return line.removeprefix("expect:").strip()
    return ""


def one_run(mutant: Path, mode: str, timeout: float) -> dict[str, object]:
    kata = mutant.parent.name
    args = [
        sys.executable,
        "-m",
        "pytest",
        f"katas/{kata}",
        f"--kata-target={mutant}",
        "-x",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--kata-timeout={timeout}",
        *MODES[mode],
    ]
    if mode == "run-parallel":
        args += ["-k", PARALLEL_TESTS[kata]]
    else:  # pytest-run-parallel 0.10 registers itself as "run-parallel"
        args += ["-p", "no:run-parallel"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    started = time.monotonic()
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    seconds = time.monotonic() - started
    kinds = [
        line.split(":", 1)[0]
        for line in proc.stdout.splitlines()
        if line.split(":", 1)[0]
        in {
            "RACE",
            "LOST",
            "HANG",
            "LEAK",
            "CRASH",
            "SLOW",
            "WRONG",
            "ORDER",
            "CAP",
            "TODO",
            "BROKEN",
        }
    ]
    return {
        "caught": proc.returncode == 1,
        "seconds": seconds,
        "class": kinds[0] if kinds else None,
    }


def summarize(runs: list[dict[str, object]]) -> tuple[float, float | None]:
    caught = [r for r in runs if r["caught"]]
    rate = len(caught) / len(runs)
    times = [float(r["seconds"]) for r in caught]  # type: ignore[arg-type]
    median = statistics.median(times) if times else None
    return rate, median


def plot(results: dict[str, dict[str, list[dict[str, object]]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    races = [m for m, modes in results.items() if "race" in modes.get("_expect", "")]  # type: ignore[operator]
    if not races:
        return
    columns = min(3, len(races))
    rows = -(-len(races) // columns)
    figure, grid = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    axes = [axis for row in grid for axis in row]
    for axis in axes[len(races) :]:
        axis.set_visible(False)
    budgets = [b / 10 for b in range(1, 151)]
    for axis, mutant in zip(axes, races, strict=False):
        for mode, runs in results[mutant].items():
            if mode.startswith("_"):
                continue
            times = [float(r["seconds"]) for r in runs if r["caught"]]  # type: ignore[arg-type]
            curve = [sum(t <= b for t in times) / len(runs) for b in budgets]
            axis.plot(budgets, curve, label=mode)
        axis.set_title(mutant, fontsize=9)
        axis.set_xlabel("time budget per run (s)")
        axis.set_ylim(-0.02, 1.02)
    for row in grid:
        row[0].set_ylabel("P(caught)")
    axes[0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--only", help="comma-separated katas")
    parser.add_argument("--races", action="store_true", help="only mutants that expect a race")
    parser.add_argument("--modes", default="controlled,plugin,plain,run-parallel")
    parser.add_argument("--timeout", type=float, default=10.0, help="--kata-timeout per run")
    args = parser.parse_args()
    results: dict[str, dict[str, list[dict[str, object]]]] = {}
    rows = [
        "| mutant | expect | mode | caught | median time to detection | detections/s |",
        "|---|---|---|---|---|---|",
    ]
    for mutant in mutants(args.only):
        if args.races and "race" not in expected(mutant):
            continue
        name = f"{mutant.parent.name}/{mutant.stem}"
        results[name] = {"_expect": expected(mutant)}  # type: ignore[dict-item]
        for mode in args.modes.split(","):
            applies = mutant.parent.name in PARALLEL_TESTS and "race" in expected(mutant)
            if mode == "run-parallel" and not applies:
                continue
            runs = [one_run(mutant, mode, args.timeout) for _ in range(args.runs)]
            results[name][mode] = runs
            rate, median = summarize(runs)
            total = sum(float(r["seconds"]) for r in runs)  # type: ignore[arg-type]
            caught = sum(bool(r["caught"]) for r in runs)
            per_second = caught / total
            rows.append(
                f"| {name} | {expected(mutant)} | {mode} | {rate:.0%} ({caught}/{len(runs)}) "
                f"| {f'{median:.2f} s' if median is not None else '-'} | {per_second:.3f} |"
            )
            print(rows[-1], flush=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "compare.md").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (OUT / "compare.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    plot(results, OUT / "compare.png")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
