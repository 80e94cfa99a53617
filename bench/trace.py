"""What the trace costs and what it buys, measured on the project's own katas.

Three tables, each written to bench/out/trace-<name>.md and printed:

- ``overhead``: every solution's whole test run (``pytest katas/<kata>
  --kata-target=solutions``) with the trace on and off, median of several runs, under each
  start method asked for (goal: at most 1.5x for the process katas);
- ``hang``: how long each failing test of the hanging pipe mutants takes, with the trace
  (a deadlock is called as it happens) and without it (the deadline decides);
- ``lines``: how many lines each mutant's failures print, trace on and off.

Usage::

    .venv/bin/python bench/trace.py overhead [--runs 3] [--methods fork spawn]
    .venv/bin/python bench/trace.py hang
    .venv/bin/python bench/trace.py lines
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "out"
KATAS = sorted(p.parent.name for p in (ROOT / "katas").glob("*/kata.toml"))
PROCESS_KATAS = {"pipe", "manager", "pool"}
HANGING = ["pipe/end_left_open", "pipe/one_sentinel"]
_SECTION = re.compile(r"^_{3,} (test_\w+.*?) _{3,}$", re.MULTILINE)


def _pytest(kata: str, target: str, *args: str) -> tuple[float, Path, str]:
    junit = Path(tempfile.mkdtemp(prefix="bench-trace-")) / "junit.xml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            f"katas/{kata}",
            f"--kata-target={target}",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={junit}",
            *args,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return time.monotonic() - started, junit, done.stdout


def _write(name: str, rows: list[str]) -> None:
    OUT.mkdir(exist_ok=True)
    (OUT / f"trace-{name}.md").write_text("\n".join(rows) + "\n", encoding="utf-8")
    print("\n".join(rows))


def overhead(runs: int, methods: list[str]) -> None:
    rows = [
        "| kata | start method | trace off (median) | trace on (median) | overhead |",
        "|---|---|---|---|---|",
    ]
    for kata in KATAS:
        for method in methods:
            times: dict[str, list[float]] = {"off": [], "on": []}
            for _ in range(runs):
                for mode in ("off", "on"):
                    seconds, _, _ = _pytest(
                        kata,
                        "solutions",
                        f"--kata-trace={mode}",
                        f"--kata-start-method={method}",
                        "--kata-stress-budget=0.5",
                    )
                    times[mode].append(seconds)
            off, on = statistics.median(times["off"]), statistics.median(times["on"])
            rows.append(f"| {kata} | {method} | {off:.2f} s | {on:.2f} s | {on / off:.2f}x |")
            print(rows[-1], flush=True)
    _write("overhead", rows)


def _durations(junit: Path) -> list[tuple[str, float, str]]:
    found = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        failed = case.find("failure")
        kind = (failed.text or "").split(":", 1)[0] if failed is not None else "pass"
        found.append((case.get("name", ""), float(case.get("time", 0)), kind))
    return found


def hang() -> None:
    rows = [
        "| mutant | failing tests | with the trace: slowest test | class "
        "| without: slowest test | class |",
        "|---|---|---|---|---|---|",
    ]
    for mutant in HANGING:
        kata = mutant.split("/")[0]
        target = str(ROOT / "tests" / "mutants" / f"{mutant}.py")
        cells = []
        for mode in ("on", "off"):
            _, junit, _ = _pytest(kata, target, f"--kata-trace={mode}")
            failed = [(n, t, k) for n, t, k in _durations(junit) if k != "pass"]
            worst = max((t for _, t, _ in failed), default=0.0)
            kinds = ",".join(sorted({k for _, _, k in failed}))
            cells.append((len(failed), worst, kinds))
        (n_on, t_on, k_on), (_, t_off, k_off) = cells
        rows.append(f"| {mutant} | {n_on} | {t_on:.2f} s | {k_on} | {t_off:.2f} s | {k_off} |")
        print(rows[-1], flush=True)
    _write("hang", rows)


# The board's header: "= kata board =", or "= kata board: <target> (not your progress) =".
_BOARD = re.compile(r"=+ kata board[ :=]")


def _sections(stdout: str) -> list[int]:
    parts = _SECTION.split(stdout)
    return [body.count("\n") for body in parts[2::2]]


def lines() -> None:
    rows = [
        "| mutant | failures | lines per failure, trace on (median / max) "
        "| trace off (median / max) |",
        "|---|---|---|---|",
    ]
    for path in sorted((ROOT / "tests" / "mutants").glob("*/*.py")):
        kata = path.parent.name
        cells = []
        for mode in ("on", "off"):
            _, _, stdout = _pytest(kata, str(path), f"--kata-trace={mode}", "--kata-timeout=5")
            body = _BOARD.split(stdout, maxsplit=1)[0]  # the failures, not the board after
            sizes = _sections(body) or [0]
            cells.append((len(_sections(body)), statistics.median(sizes), max(sizes)))
        (n, med_on, max_on), (_, med_off, max_off) = cells
        rows.append(
            f"| {kata}/{path.stem} | {n} | {med_on:.0f} / {max_on} | {med_off:.0f} / {max_off} |"
        )
        print(rows[-1], flush=True)
    _write("lines", rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["overhead", "hang", "lines"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=["fork"])
    args = parser.parse_args()
    if args.what == "overhead":
        overhead(args.runs, args.methods)
    elif args.what == "hang":
        hang()
    else:
        lines()
    return 0


if __name__ == "__main__":
    sys.exit(main())
