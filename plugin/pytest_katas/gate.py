"""A meeting point that a test hands to learner code running in other processes.

``threading.Barrier`` cannot be pickled and a Manager's Barrier is a server that the test's
process would have to talk to (and unpickle the answers of) after learner code had the key
to it. A gate is a folder: each party that arrives takes the next free number by creating
its file, and waits until the last number is taken. Nothing is read back but file names, so
learner code, whatever user it runs as, can meet at it and can do nothing else with it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from typing import Final, final

from pytest_katas.channel import BLOCKED, RunDir

__all__ = ["Gate"]

_POLL: Final = 0.005
_LOOK_EVERY: Final = 10  # polls between two looks at what the test's threads wait in
_BROKEN: Final = "broken"


@final
class Gate:
    """Like ``threading.Barrier(parties, timeout=timeout)``, across processes, pickled by
    value: ``wait()`` returns this party's arrival number (0 to parties - 1) once all have
    arrived, or raises ``threading.BrokenBarrierError`` for every party once one of them has
    waited ``timeout`` seconds in vain. Copies of a gate are the same gate."""

    def __init__(
        self,
        parties: int,
        timeout: float,
        folder: str | None = None,
        in_vain_while: tuple[str, ...] = (),
    ) -> None:
        if parties < 1:
            raise ValueError("a gate needs at least one party")
        self.parties = parties
        self.timeout = timeout
        # Calls (as the trace names them: "apply", "join") that, while any thread of the
        # test waits in one, mean nobody else will come: the code that would send the other
        # parties is waiting for this one to end. Then the gate breaks at once.
        self.in_vain_while = in_vain_while
        if folder is None:
            folder = tempfile.mkdtemp(prefix="kata-gate-")
            os.chmod(folder, 0o777)  # noqa: S103 - learner code may run as another user
        self.folder = folder

    def _path(self, name: str) -> str:
        return os.path.join(self.folder, name)

    def _take(self, name: str) -> bool:
        try:
            os.close(os.open(self._path(name), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            return False
        return True

    def wait(self) -> int:
        number = next((n for n in range(self.parties) if self._take(str(n))), None)
        if number is None:
            raise threading.BrokenBarrierError  # more parties than the gate was made for
        deadline = time.monotonic() + self.timeout
        last = self._path(str(self.parties - 1))
        polls = 0
        while True:
            if os.path.exists(self._path(_BROKEN)):  # once broken, broken for everyone
                raise threading.BrokenBarrierError
            if os.path.exists(last):
                return number
            polls += 1
            in_vain = polls % _LOOK_EVERY == 0 and self._in_vain()
            if in_vain or time.monotonic() >= deadline:
                self._take(_BROKEN)
                raise threading.BrokenBarrierError
            time.sleep(_POLL)

    def _in_vain(self) -> bool:
        """Whether a thread of the test now waits in one of ``in_vain_while``'s calls."""
        rundir = RunDir.current()
        if not self.in_vain_while or rundir is None:
            return False
        for path in rundir.path.glob("status-*"):
            with contextlib.suppress(ValueError):
                for slot in rundir.read_status(int(path.name.split("-", 1)[1])):
                    if slot.state == BLOCKED and slot.op in self.in_vain_while:
                        return True
        return False

    def arrived(self) -> int:
        """How many parties have arrived so far."""
        return sum(os.path.exists(self._path(str(n))) for n in range(self.parties))

    def __repr__(self) -> str:
        return f"<gate of {self.parties} at {self.folder}>"
