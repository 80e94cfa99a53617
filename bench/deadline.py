"""How fast a hang becomes a verdict, and how fast nothing of the test is left.

Runs purpose-built hanging katas under each start method and measures, from the moment
the deadline passes:

- to the verdict (the test's report reaching pytest), and
- to the moment no process the test started is alive any more.

Usage::

    .venv/bin/python bench/deadline.py [--runs 5] [--timeout 2]

Prints a table and writes it to bench/out/deadline.md. The goal is at most 2 s for both.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import psutil

OUT = Path(__file__).resolve().parent / "out"

RECORD = """
import os, time
def record(path, what):
    with open(path, "a") as f:
        f.write(f"{what} {os.getpid()} {time.time()}\\n")
"""

SCENARIOS = {
    "parent blocked in recv, child too": """
import multiprocessing
def _child(conn):
    record(LOG, "pid")
    conn.recv()
def hang():
    a, b = multiprocessing.Pipe()
    p = multiprocessing.Process(target=_child, args=(b,))
    p.start()
    a.recv()
""",
    "10 consumers blocked in recv": """
import multiprocessing
def _child(conn):
    record(LOG, "pid")
    conn.recv()
def hang():
    a, b = multiprocessing.Pipe()
    ps = [multiprocessing.Process(target=_child, args=(b,)) for _ in range(10)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
""",
    "two-lock deadlock": """
import multiprocessing, time
def _one(x, y):
    record(LOG, "pid")
    with x:
        time.sleep(0.2)
        with y:
            pass
def hang():
    a, b = multiprocessing.Lock(), multiprocessing.Lock()
    ps = [multiprocessing.Process(target=_one, args=(a, b)),
          multiprocessing.Process(target=_one, args=(b, a))]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
""",
    "Manager and Pool workers stuck": """
import multiprocessing, time
def _stuck(n):
    record(LOG, "pid")
    time.sleep(600)
def hang():
    manager = multiprocessing.Manager()
    record_pid = manager._process.pid
    with open(LOG, "a") as f:
        f.write(f"pid {record_pid} 0\\n")
    with multiprocessing.Pool(4) as pool:
        pool.map(_stuck, range(4))
""",
}

TEST = """
def test_hangs(kata):
    kata.hang()
"""

CONFTEST = """
import time
def pytest_runtest_call(item):
    with open(LOG, "a") as f:
        f.write(f"start 0 {time.time()}\\n")
def pytest_runtest_logreport(report):
    if report.when == "call":
        with open(LOG, "a") as f:
            f.write(f"verdict 0 {time.time()}\\n")
"""


def _kata(root: Path, impl: str, log: Path, timeout: float) -> None:
    folder = root / "katas" / "hang"
    folder.mkdir(parents=True)
    header = f"LOG = {str(log)!r}\n" + RECORD
    (folder / "hang.py").write_text(header + textwrap.dedent(impl))
    (folder / "test_hang.py").write_text(TEST)
    (folder / "README.md").write_text("# hang\n")
    (root / "conftest.py").write_text(f"LOG = {str(log)!r}\n" + CONFTEST)
    (folder / "kata.toml").write_text(
        f'title = "hang"\norder = 1\ntimeout = {timeout}\n[[tasks]]\nid = 1\ntitle = "h"\n'
        'points = 1\ntests = ["test_hangs"]\nhints = ["a", "b"]\n'
    )


def _recorded(log: Path) -> list[tuple[int, float]]:
    return [
        (int(line.split()[1]), float(line.split()[2]))
        for line in _lines(log)
        if line.startswith("pid")
    ]


def _watch(log: Path, stop: threading.Event, gone: list[float]) -> None:
    """Poll the recorded pids until every one of them is gone."""
    while not stop.is_set():
        pids = _recorded(log)
        if pids and _verdict(log) and not any(_alive(pid, at) for pid, at in pids):
            gone.append(time.time())
            return
        time.sleep(0.005)


def _alive(pid: int, recorded_at: float) -> bool:
    """Alive, and the same process: pids are reused fast when pid_max is 32768."""
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and proc.create_time() <= recorded_at + 1
    except psutil.Error:
        return False


def _lines(log: Path) -> list[str]:
    """Complete records only: a line being written has fewer than three fields."""
    text = log.read_text() if log.exists() else ""
    return [line for line in text.splitlines() if len(line.split()) == 3]


def _verdict(log: Path) -> list[float]:
    return [float(line.split()[2]) for line in _lines(log) if line.startswith("verdict")]


def measure(impl: str, method: str, timeout: float) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        log = root / "log"
        _kata(root, impl, log, timeout)
        stop, gone = threading.Event(), []
        watcher = threading.Thread(target=_watch, args=(log, stop, gone))
        watcher.start()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "katas",
                "-q",
                "-p",
                "no:cacheprovider",
                f"--kata-start-method={method}",
            ],
            cwd=root,
            capture_output=True,
            timeout=120,
            env={k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")},
        )
        watcher.join(timeout=10)
        stop.set()
        leftovers = [pid for pid, at in _recorded(log) if _alive(pid, at)]
        if leftovers:
            print(f"LEFT BEHIND: {leftovers}", file=sys.stderr)
        start = min(float(row.split()[2]) for row in _lines(log) if row.startswith("start"))
        deadline = start + timeout
        verdict = _verdict(log)[0]
        return verdict - deadline, (gone[0] if gone else float("nan")) - deadline


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args()
    rows = [
        "| scenario | start method | to verdict (median / max) "
        "| to no process left (median / max) |",
        "|---|---|---|---|",
    ]
    for name, impl in SCENARIOS.items():
        for method in ("fork", "spawn", "forkserver"):
            samples = [measure(impl, method, args.timeout) for _ in range(args.runs)]
            verdicts = [s[0] for s in samples]
            gones = [s[1] for s in samples]
            rows.append(
                f"| {name} | {method} "
                f"| {statistics.median(verdicts):.2f} s / {max(verdicts):.2f} s "
                f"| {statistics.median(gones):.2f} s / {max(gones):.2f} s |"
            )
            print(rows[-1], flush=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "deadline.md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
