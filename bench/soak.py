"""The soak: the solutions' stress tests, 200 runs in a row, each with a new seed.

Every run must be green: a stress verdict on correct code that ever fails is a false alarm.

Usage::

    python bench/soak.py [--runs 200] [--start-method fork] [-- extra pytest args]

Prints one line per run and a summary; writes bench/out/soak.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "out"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--start-method", default="fork")
    parser.add_argument("extra", nargs="*", help="more pytest arguments")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "katas",
        "--kata-target=solutions",
        "-m",
        "kata_stress",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:run-parallel",
        f"--kata-start-method={args.start_method}",
        *args.extra,
    ]
    failures: list[str] = []
    started = time.monotonic()
    for run in range(1, args.runs + 1):
        proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "(no output)"
        print(f"run {run:>3}/{args.runs}: exit {proc.returncode}: {last}", flush=True)
        if proc.returncode != 0:
            failures.append(f"run {run}:\n{proc.stdout[-3000:]}")
    minutes = (time.monotonic() - started) / 60
    summary = (
        f"soak: {args.runs - len(failures)}/{args.runs} green runs of the solutions' stress "
        f"tests under {args.start_method} in {minutes:.1f} min"
    )
    print(summary)
    for failure in failures:
        print(failure)
    OUT.mkdir(exist_ok=True)
    (OUT / "soak.md").write_text(summary + "\n" + "\n".join(failures), encoding="utf-8")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
