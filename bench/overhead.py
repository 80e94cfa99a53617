"""Schedule noise's cost on correct code: each solution's stress scenario, timed with the
noise off and on (goal: at most 3x).

Usage::

    python bench/overhead.py [--repeat 5]

Runs in this process, the way the sandbox does: the solution is imported under its kata
module name, and noise is switched on around each run exactly as kata_stress does.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "out"


def scenarios(kata: Any, name: str) -> Callable[[], Any] | None:
    table: dict[str, Callable[[], Any]] = {
        "threads": lambda: kata.hammer(kata.Counter(), threads=8, per_thread=5000),
        "manager": lambda: kata.tally(["a", "b", "c", "a"] * 25, workers=4),
        "pipe": lambda: kata.fan_out(list(range(100)), consumers=3),
        "pool": lambda: kata.squares(list(range(50)), processes=2),
    }
    return table.get(name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    modules = {
        f"kata_{path.parent.name}": str(path)
        for path in sorted((ROOT / "solutions").glob("*/*.py"))
    }
    import importlib

    from pytest_katas import boot, schedule
    from pytest_katas.channel import RunDir

    os.environ.update(RunDir.create().environment(modules))

    boot.install()
    rows = [
        "| kata scenario | plain (median) | with noise (median) | overhead |",
        "|---|---|---|---|",
    ]
    for module_name in modules:
        name = module_name.removeprefix("kata_")
        kata = importlib.import_module(module_name)
        scenario = scenarios(kata, name)
        if scenario is None:
            continue
        timings: dict[bool, list[float]] = {False: [], True: []}
        for run in range(args.repeat):
            for noisy in (False, True):
                started = time.perf_counter()
                with schedule.noise(1234, run) if noisy else nullcontext():
                    scenario()
                timings[noisy].append(time.perf_counter() - started)
        plain, noisy_time = statistics.median(timings[False]), statistics.median(timings[True])
        rows.append(f"| {name} | {plain:.3f} s | {noisy_time:.3f} s | {noisy_time / plain:.2f}x |")
        print(rows[-1], flush=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "overhead.md").write_text("\n".join(rows) + "\n", encoding="utf-8")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
