"""A small process that outlives pytest by a moment, to end any test process group that
pytest could not: when pytest dies (SIGKILL, a crash, an os._exit).

It is a fresh interpreter running this file (``python -I -S watchdog.py FD``), not a fork
of pytest: pytest has threads (xdist's, pytest-timeout's), and a fork of a threaded process
may deadlock in the child (Python 3.12 warns of it). So this file imports nothing but the
standard library.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from typing import final

__all__ = ["Watchdog"]


def _serve(reader: int) -> None:
    """Remember the groups pytest announces; when pytest's end of the pipe closes, end them."""
    groups: set[int] = set()
    pending = b""
    while True:
        try:
            data = os.read(reader, 4096)
        except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for clarity
            continue
        if not data:
            break
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            pgid = int(line[1:])
            (groups.add if line.startswith(b"+") else groups.discard)(pgid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pgid in groups:
            with contextlib.suppress(OSError):
                os.killpg(pgid, sig)
        if groups:
            time.sleep(0.2)


@final
class Watchdog:
    """Started once per pytest process, on the first kata test."""

    def __init__(self) -> None:
        reader, self._writer = os.pipe()
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-S", __file__, str(reader)],
                pass_fds=(reader,),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # no terminal signal (Ctrl-C is pytest's) reaches it
            )
        finally:
            os.close(reader)
        self.pid = self._process.pid

    def forget(self) -> None:
        """In a forked test process: drop our copy of the pipe, or pytest's death would
        go unnoticed while the test holds it open."""
        os.close(self._writer)

    def guard(self, pgid: int) -> None:
        os.write(self._writer, b"+%d\n" % pgid)

    def release(self, pgid: int) -> None:
        os.write(self._writer, b"-%d\n" % pgid)

    def close(self) -> None:
        os.close(self._writer)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=2)


if __name__ == "__main__":  # pragma: no cover - the watchdog's own interpreter
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _serve(int(sys.argv[1]))
