"""A small process that outlives pytest by a moment, to end any test process group that
pytest could not: when pytest dies (SIGKILL, pytest-timeout's thread method, a crash)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import final

__all__ = ["Watchdog"]


def _serve(reader: int) -> None:
    """Remember the groups pytest announces; when pytest's end of the pipe closes, end them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is pytest's to handle
    os.setsid()  # and no terminal signal reaches us
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
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - the watchdog's own life
            try:
                os.close(self._writer)
                devnull = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(devnull, fd)
                os.closerange(3, reader)
                os.closerange(reader + 1, 65536)
                _serve(reader)
            finally:
                os._exit(0)
        os.close(reader)

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
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            done, _ = os.waitpid(self.pid, os.WNOHANG)
            if done:
                return
            time.sleep(0.01)
