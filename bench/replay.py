"""How often the replay command printed with a race reproduces it.

For each race mutant, runs its kata with a fresh seed until the plugin reports a failure,
then runs the printed replay command ``--replays`` times and counts how many fail again.

Usage::

    python bench/replay.py [--seeds 5] [--replays 5] [--only threads,manager]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "out"
REPLAY = re.compile(r"Replay this run's schedule: (pytest .*)$", re.MULTILINE)


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return subprocess.run(
        [sys.executable, "-m", *args, "-p", "no:cacheprovider", "-p", "no:run-parallel"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--replays", type=int, default=5)
    parser.add_argument("--only", default="threads,manager,pipe")
    args = parser.parse_args()
    rows = ["| mutant | seeds that failed | replays that failed again |", "|---|---|---|"]
    for mutant in sorted((ROOT / "tests" / "mutants").glob("*/*.py")):
        text = mutant.read_text(encoding="utf-8")
        if mutant.parent.name not in args.only.split(",") or "race" not in text[:300]:
            continue
        failed_seeds, replays, again = 0, 0, 0
        for _ in range(args.seeds):
            seed = random.randrange(1 << 32)
            first = run(
                [
                    "pytest",
                    f"katas/{mutant.parent.name}",
                    f"--kata-target={mutant}",
                    f"--kata-seed={seed}",
                    "-x",
                    "-q",
                    "-m",
                    "kata_stress",
                ]
            )
            command = REPLAY.search(first.stdout)
            if first.returncode != 1 or command is None:
                continue
            failed_seeds += 1
            for _ in range(args.replays):
                replays += 1
                again += run(shlex.split(command.group(1))).returncode == 1
        name = f"{mutant.parent.name}/{mutant.stem}"
        rows.append(f"| {name} | {failed_seeds}/{args.seeds} | {again}/{replays} |")
        print(rows[-1], flush=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "replay.md").write_text("\n".join(rows) + "\n", encoding="utf-8")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
