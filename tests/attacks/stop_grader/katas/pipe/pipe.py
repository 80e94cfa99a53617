"""Attack: stop pytest (SIGSTOP) so that the run hangs until someone gives up."""

import os
import signal

try:
    os.kill(os.getppid(), signal.SIGSTOP)
except OSError:
    pass


def relay(items):
    raise NotImplementedError


def fan_out(items, consumers=3):
    raise NotImplementedError
