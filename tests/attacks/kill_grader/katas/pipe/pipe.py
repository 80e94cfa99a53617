"""Attack: kill the process that runs the test's parent (pytest) at import."""

import os
import signal

for pid in {os.getppid(), os.getpgid(0)}:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def relay(items):
    raise NotImplementedError


def fan_out(items, consumers=3):
    raise NotImplementedError
