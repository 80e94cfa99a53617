"""How long a learner waits: each kata's tests, run as a learner runs them (``pytest
katas/<kata>``, no ``-x``), on the reference solution and on every known mistake
(tests/mutants/<kata>/), under each start method.

The target is 10 s or less for every row, right or wrong. Usage::

    python bench/kata_times.py [--kata pipe ...] [--method fork ...] [--limit 10]

Prints one line per run; writes bench/out/kata_times.md (the worst time per kata and start
method, then every run). Exits 1 if any run took longer than ``--limit``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "out"


def _targets(kata: str) -> list[str]:
    mutants = sorted((ROOT / "tests" / "mutants" / kata).glob("*.py"))
    return ["solutions", *(str(m.relative_to(ROOT)) for m in mutants)]


def _time(kata: str, target: str, method: str) -> tuple[float, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    command = [
        sys.executable,
        "-m",
        "pytest",
        f"katas/{kata}",
        f"--kata-target={target}",
        f"--kata-start-method={method}",
        "-q",
        "-p",
        "no:cacheprovider",
    ]
    started = time.monotonic()
    code = subprocess.run(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=600,
        check=False,
    ).returncode
    return time.monotonic() - started, code


def main() -> int:
    katas = sorted(p.parent.name for p in (ROOT / "katas").glob("*/kata.toml"))
    methods = [
        m for m in ("fork", "spawn", "forkserver") if m in multiprocessing.get_all_start_methods()
    ]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kata", action="append", choices=katas)
    parser.add_argument("--method", action="append", choices=methods)
    parser.add_argument("--limit", type=float, default=10.0)
    parser.add_argument("--solutions-only", action="store_true", help="no mutants")
    parser.add_argument("--out", default="kata_times.md", help="file name in bench/out/")
    args = parser.parse_args()
    rows, worst = [], {}
    for kata in args.kata or katas:
        for method in args.method or methods:
            for target in _targets(kata)[:1] if args.solutions_only else _targets(kata):
                took, code = _time(kata, target, method)
                name = "solution" if target == "solutions" else Path(target).stem
                verdict = "green" if code == 0 else f"exit {code}"
                rows.append(f"| {kata} | {method} | {name} | {verdict} | {took:.1f} s |")
                print(rows[-1], flush=True)
                key = (kata, method)
                if took > worst.get(key, (0.0, ""))[0]:
                    worst[key] = (took, name)
    OUT.mkdir(exist_ok=True)
    load = os.getloadavg()[0]
    text = [
        f"Each kata's tests as a learner runs them, per target and start method "
        f"(load average {load:.1f} on {os.cpu_count()} cores at the end; limit {args.limit:g} s).",
        "",
        "| kata | start method | slowest | time |",
        "|---|---|---|---|",
        *(f"| {k} | {m} | {n} | {t:.1f} s |" for (k, m), (t, n) in worst.items()),
        "",
        "| kata | start method | target | result | time |",
        "|---|---|---|---|---|",
        *rows,
    ]
    (OUT / args.out).write_text("\n".join(text) + "\n", encoding="utf-8")
    over = [(k, m, n, t) for (k, m), (t, n) in worst.items() if t > args.limit]
    for kata, method, name, took in over:
        print(f"over {args.limit:g} s: {kata} under {method}, {name}: {took:.1f} s")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
