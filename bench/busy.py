"""The whole suite on a busy machine: a command (by default `tox`, the README's second
command), run again and again while CPU hogs keep every core busy, until it is green so many
times in a row.

A suite that fails when the machine is busy blocks every change from landing: CI runs on
whatever machine is free. This is how we show ours does not.

Usage::

    python bench/busy.py [--green 5] [--attempts 8] [--hogs N] [--fresh-clone] [-- command ...]

SIGINT or SIGTERM stops it, the command's whole process tree and the hogs with it.
``--hogs`` defaults to the number of cores; each hog is a Python process spinning forever,
started by us and killed by PID at the end (whatever happens). ``--fresh-clone`` runs in a new
``git clone`` of this repository's HEAD (made once, in a temporary folder removed at the
end), as CI does. Prints one line per run and writes bench/out/busy.md (each run's output
is kept in bench/out/busy-N.log); exits 0 once the command was green ``--green``
times in a row, 1 if ``--attempts`` runs were used up first.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "out"
SPIN = "while True:\n    pass\n"
# What a failing run printed that says what failed: pytest's summary lines and tox's verdicts.
_FAILURE = re.compile(r"^(FAILED |ERROR |\s*\w+: FAIL|.*INTERNALERROR)")


def _hogs(count: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(count)]


def _stop(hogs: list[subprocess.Popen[bytes]]) -> None:
    for hog in hogs:
        hog.kill()
    for hog in hogs:
        hog.wait()


def _run(command: list[str], where: Path, sink: IO[str]) -> int:
    """The command's exit code; stopped (SIGINT or SIGTERM to us), it ends with its whole
    tree of processes (tox, pytest, xdist workers), killed by PID."""
    import psutil

    process = subprocess.Popen(command, cwd=where, stdout=sink, stderr=subprocess.STDOUT)
    try:
        return process.wait()
    except BaseException:
        tree = [process]
        with contextlib.suppress(psutil.NoSuchProcess):
            tree += psutil.Process(process.pid).children(recursive=True)
        for member in tree:
            with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
                member.kill()
        process.wait()
        raise


def _stopped(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _clone() -> Path:
    """A fresh clone of HEAD, outside this checkout (so that no tool here walks into it)."""
    where = Path(tempfile.mkdtemp(prefix="katas-busy-")) / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(where)], check=True)
    return where


def _default_command() -> list[str]:
    tox = Path(sys.executable).parent / "tox"
    return [str(tox) if tox.exists() else shutil.which("tox") or "tox"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--green", type=int, default=5, help="green runs in a row to stop at")
    parser.add_argument("--attempts", type=int, default=8, help="most runs to make")
    parser.add_argument("--hogs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--fresh-clone", action="store_true")
    parser.add_argument("command", nargs="*", help="the command (default: tox)")
    args = parser.parse_args()
    # Started in the background by a shell without job control, SIGINT is ignored: stop on
    # SIGINT and SIGTERM alike, whatever we inherited.
    signal.signal(signal.SIGINT, _stopped)
    signal.signal(signal.SIGTERM, _stopped)
    OUT.mkdir(exist_ok=True)
    where = _clone() if args.fresh_clone else ROOT
    command = args.command or _default_command()
    rows: list[str] = []
    streak = 0
    hogs = _hogs(args.hogs)
    try:
        for attempt in range(1, args.attempts + 1):
            log = OUT / f"busy-{attempt}.log"
            started = time.monotonic()
            with log.open("w", encoding="utf-8") as sink:
                code = _run(command, where, sink)
            took = time.monotonic() - started
            failures = [
                line.rstrip()
                for line in log.read_text(encoding="utf-8", errors="replace").splitlines()
                if _FAILURE.match(line)
            ]
            streak = streak + 1 if code == 0 else 0
            verdict = "green" if code == 0 else f"exit {code}"
            rows.append(f"| {attempt} | {verdict} | {took:.0f} s | {'; '.join(failures[:6])} |")
            print(rows[-1], flush=True)
            if streak >= args.green:
                break
    finally:
        _stop(hogs)
        if args.fresh_clone:
            shutil.rmtree(where.parent, ignore_errors=True)
    table = [
        f"`{' '.join(command)}` in {where}, with {args.hogs} CPU hogs on "
        f"{os.cpu_count()} cores; {streak} green in a row at the end.",
        "",
        "| run | result | wall time | what failed |",
        "|---|---|---|---|",
        *rows,
    ]
    (OUT / "busy.md").write_text("\n".join(table) + "\n", encoding="utf-8")
    return 0 if streak >= args.green else 1


if __name__ == "__main__":
    sys.exit(main())
